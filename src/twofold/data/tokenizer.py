"""Tokenizers: load a `tokenizer.json` / HF tokenizer directory, or train a byte-level BPE.

Special tokens follow ModernBERT: `[CLS] [SEP] [PAD] [MASK] [UNK]`. The decoder of a pair
uses `[CLS]` as BOS and `[SEP]` as EOS, exactly as ModernBERT's tokenizer does, so encoder and
decoder sequences are made of the same token ids.

What `tokenizer(text)` adds differs per member (`member_template`): the encoder's
`[CLS] text [SEP]`, the decoder's `[CLS] text` (BOS only, as causal LMs' tokenizers do: a
prompt must not end in EOS, and last-token pooling must land on the text). `[MASK]` absorbs
the space before it (`lstrip`), as in ModernBERT's tokenizer, so `"x = [MASK]"` masks the word.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

from twofold.errors import TwofoldError
from twofold.files import as_os_error, check_out, read_json, staged_directory

SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]")
# tokenizer_config.json keys (transformers) that name each special token.
_CONFIG_KEYS = {"cls": "cls_token", "sep": "sep_token", "pad": "pad_token",
                "mask": "mask_token", "unk": "unk_token"}
# Tokenizers of causal LMs (Gemma 2's, which mmBERT's derives from) name only BOS / EOS: they
# stand in for CLS / SEP when a tokenizer_config.json names no cls_token / sep_token.
_FALLBACK_KEYS = {"cls": "bos_token", "sep": "eos_token"}
_DEFAULT_NAMES = dict(zip(("cls", "sep", "pad", "mask", "unk"), SPECIAL_TOKENS))


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the special tokens; the decoder's BOS/EOS are CLS/SEP."""

    cls: int
    sep: int
    pad: int
    mask: int
    unk: int

    @property
    def bos(self) -> int:
        return self.cls

    @property
    def eos(self) -> int:
        return self.sep

    def all(self) -> tuple[int, ...]:
        return tuple(sorted({self.cls, self.sep, self.pad, self.mask, self.unk}))

    def to_dict(self) -> dict[str, int]:
        return asdict(self) | {"bos": self.bos, "eos": self.eos}


@dataclass(frozen=True)
class Tokenizer:
    """A `tokenizers.Tokenizer` plus what twofold needs to know about it."""

    backend: BackendTokenizer
    special: SpecialIds
    source: str = ""

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def hash(self) -> str:
        """Content hash of the tokenizer definition (what the token store records)."""
        return hashlib.sha256(self.backend.to_str().encode()).hexdigest()

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids without special tokens (the batcher adds them per document)."""
        return [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def check_fits(self, model_vocab_size: int, where: str = "model config") -> None:
        """Refuse a tokenizer whose ids would index past the model's embedding table."""
        if self.vocab_size > model_vocab_size:
            raise TwofoldError(
                f"{where}: vocab_size {model_vocab_size} is smaller than the tokenizer's "
                f"{self.vocab_size} tokens ({self.source}); set vocab_size >= {self.vocab_size}"
            )


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a `tokenizer.json` file or a directory that holds one (HF tokenizer directory)."""
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise TwofoldError(
            f"tokenizer not found: {file}; pass a tokenizer.json or a directory holding one "
            "(train one with `twofold data tokenizer train`)"
        )
    try:
        backend = BackendTokenizer.from_file(str(file))
    except Exception as error:  # the Rust side raises a bare Exception
        raise TwofoldError(f"{file}: not a valid tokenizer.json ({error})") from None
    # Libraries save their padding / truncation state into tokenizer.json (Sentence Transformers
    # does); twofold frames, cuts and pads sequences itself.
    backend.no_padding()
    backend.no_truncation()
    names = dict(_DEFAULT_NAMES)
    config = file.parent / "tokenizer_config.json"
    if config.is_file():
        settings = read_json(config, "fix it or remove it (the default names [CLS] [SEP] … are then used)")
        for field, key in _CONFIG_KEYS.items():
            value = _named(settings, key)
            if value is None and field in _FALLBACK_KEYS:
                value = _named(settings, _FALLBACK_KEYS[field])
            if value is not None:
                names[field] = value
    ids = {}
    for field, name in names.items():
        token_id = backend.token_to_id(name)
        if token_id is None:
            raise TwofoldError(
                f"{file}: has no special token {name!r} ({field}); twofold needs "
                f"{', '.join(SPECIAL_TOKENS)} (or their names in tokenizer_config.json)"
            )
        ids[field] = token_id
    return Tokenizer(backend, SpecialIds(**ids), source=str(file))


def _named(settings: dict, key: str) -> str | None:
    """The token a tokenizer_config.json names under `key` ("[CLS]" or {"content": "[CLS]", …})."""
    value = settings.get(key)
    value = value.get("content") if isinstance(value, dict) else value
    return value if isinstance(value, str) else None


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path,
                    min_frequency: int = 2) -> Tokenizer:
    """Train a byte-level BPE with ModernBERT's special tokens and save it as an HF directory
    (a new or empty one; it appears whole or not at all)."""
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise TwofoldError(
            f"vocab_size {vocab_size} is too small for a byte-level BPE; use at least "
            f"{256 + len(SPECIAL_TOKENS)}"
        )
    check_out(out_dir, "tokenizer", holds=lambda path: (path / "tokenizer.json").is_file())
    backend = BackendTokenizer(models.BPE(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    special = SpecialIds(*(backend.token_to_id(t) for t in SPECIAL_TOKENS))
    with staged_directory(out_dir) as staged:
        try:
            save_tokenizer(for_member(backend, special, causal=False), special, staged)
        except Exception as error:  # the Rust side reports a full disk as a bare Exception
            raise as_os_error(error, staged / "tokenizer.json") or error from None
    return load_tokenizer(out_dir)


def member_template(backend: BackendTokenizer, special: SpecialIds, causal: bool) -> processors.TemplateProcessing:
    """What `tokenizer(text)` adds for one member of the pair.

    Encoder (like ModernBERT): `[CLS] a [SEP]`, pairs `[CLS] a [SEP] b [SEP]`. Decoder: BOS only,
    `[CLS] a`, pairs `[CLS] a [SEP] b` — the text's last token ends the sequence.
    """
    cls, sep = backend.id_to_token(special.cls), backend.id_to_token(special.sep)
    if causal:
        single, pair = f"{cls} $A", f"{cls} $A {sep} $B:1"
    else:
        single, pair = f"{cls} $A {sep}", f"{cls} $A {sep} $B:1 {sep}:1"
    return processors.TemplateProcessing(single=single, pair=pair,
                                         special_tokens=[(cls, special.cls), (sep, special.sep)])


def for_member(backend: BackendTokenizer, special: SpecialIds, causal: bool) -> BackendTokenizer:
    """A copy of `backend` with the member's template and a `[MASK]` that absorbs the space before it."""
    definition = json.loads(backend.to_str())
    for token in definition.get("added_tokens", []):
        if token["id"] == special.mask:
            token["lstrip"] = True
    copy = BackendTokenizer.from_str(json.dumps(definition))
    copy.post_processor = member_template(copy, special, causal)
    return copy


def save_tokenizer(backend: BackendTokenizer, special: SpecialIds, out_dir: str | Path) -> None:
    """Write tokenizer.json + tokenizer_config.json so `AutoTokenizer.from_pretrained` loads it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    backend.save(str(out_dir / "tokenizer.json"))
    names = {field: backend.id_to_token(getattr(special, field)) for field in _CONFIG_KEYS}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **{key: names[field] for field, key in _CONFIG_KEYS.items()},
        "bos_token": names["cls"],
        "eos_token": names["sep"],
        "model_max_length": 8192,
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special_map = {key: names[field] for field, key in _CONFIG_KEYS.items()}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")
