"""`ModelConfig`: the shape of one member of an encoder/decoder pair, and named presets.

Field names follow transformers' ModernBERT config wherever they mean the same thing, so a
config.json maps onto this dataclass almost one to one (see `twofold.hf`). The only switch
between the encoder and the decoder is `causal`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from twofold.errors import TwofoldError

GLOBAL = "full_attention"
LOCAL = "sliding_attention"
# A tokenizer's special tokens (as `twofold.data` records them) -> the config fields of their ids.
SPECIAL_ID_FIELDS = {"cls": "cls_token_id", "sep": "sep_token_id", "pad": "pad_token_id",
                     "mask": "mask_token_id", "bos": "bos_token_id", "eos": "eos_token_id"}
# The annotated types that __post_init__ checks (a JSON or YAML value of another type is refused).
_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}
DROPOUT_FIELDS = ("embedding_dropout", "attention_dropout", "attention_output_dropout", "mlp_dropout",
                  "classifier_dropout")
VOCAB_MULTIPLE = 64  # embedding rows are padded to a multiple of 64 (ModernBERT: 50,280 -> 50,368)


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 50368
    hidden_size: int = 768
    intermediate_size: int = 1152
    num_hidden_layers: int = 22
    num_attention_heads: int = 12
    causal: bool = False
    # Alternating attention: layer i is global iff i % global_attn_every_n_layers == 0,
    # unless `layer_types` lists each layer explicitly (transformers v5 configs do).
    local_attention: int = 128
    global_attn_every_n_layers: int = 3
    layer_types: tuple[str, ...] | None = None
    global_rope_theta: float = 160_000.0
    local_rope_theta: float = 10_000.0
    max_position_embeddings: int = 8192
    norm_eps: float = 1e-5
    norm_bias: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    decoder_bias: bool = True
    classifier_bias: bool = False
    embedding_dropout: float = 0.0
    attention_dropout: float = 0.0  # on the attention probabilities (and the output, unless set below)
    # On the attention output (after Wo). None: `attention_dropout`, as in transformers'
    # ModernBERT, whose one `attention_dropout` drops both. FlexBERT, Ettin's trainer, keeps two
    # (attention_probs_dropout_prob 0.0, attn_out_dropout_prob 0.1); this field is the second.
    attention_output_dropout: float | None = None
    mlp_dropout: float = 0.0
    classifier_dropout: float = 0.0
    classifier_pooling: str = "cls"
    initializer_range: float = 0.02
    initializer_cutoff_factor: float = 2.0
    tie_word_embeddings: bool = True
    # Special ids; None where a checkpoint's config names an id outside its vocabulary (see `twofold.hf`).
    pad_token_id: int | None = 50283
    bos_token_id: int | None = 50281
    eos_token_id: int | None = 50282
    cls_token_id: int | None = 50281
    sep_token_id: int | None = 50282
    mask_token_id: int | None = 50284

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            accepted = _TYPES.get(spec.type)
            value = getattr(self, spec.name)
            if accepted and (not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted)):
                raise TwofoldError(f"model config: {spec.name} is {value!r}; it must be {spec.type}")
        if self.hidden_size % self.num_attention_heads:
            raise TwofoldError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                f"{self.num_attention_heads}; choose sizes whose ratio is the head dimension"
            )
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "local_attention", "global_attn_every_n_layers"):
            if getattr(self, name) <= 0:
                raise TwofoldError(f"model config: {name} must be positive, got {getattr(self, name)}")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id", "mask_token_id"):
            if getattr(self, name) is not None and not 0 <= getattr(self, name) < self.vocab_size:
                raise TwofoldError(
                    f"model config: {name} {getattr(self, name)} is outside the vocabulary [0, {self.vocab_size}); "
                    "take the special ids from the tokenizer"
                )
        for name in DROPOUT_FIELDS:
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1:
                raise TwofoldError(f"model config: {name} = {value} must be in [0, 1)")
        for name in ("global_rope_theta", "local_rope_theta"):
            if not getattr(self, name) > 0:
                raise TwofoldError(f"model config: {name} = {getattr(self, name)} must be positive")
        if self.layer_types is None:
            types = tuple(
                GLOBAL if i % self.global_attn_every_n_layers == 0 else LOCAL
                for i in range(self.num_hidden_layers)
            )
            object.__setattr__(self, "layer_types", types)
        else:
            object.__setattr__(self, "layer_types", tuple(self.layer_types))
        if len(self.layer_types) != self.num_hidden_layers or not set(self.layer_types) <= {GLOBAL, LOCAL}:
            raise TwofoldError(
                f"model config: layer_types must list {self.num_hidden_layers} entries of "
                f"'{GLOBAL}' or '{LOCAL}', got {list(self.layer_types)}"
            )
        if self.classifier_pooling not in ("cls", "mean", "last"):
            raise TwofoldError(
                f"model config: classifier_pooling must be 'cls', 'mean' or 'last', got {self.classifier_pooling!r}"
            )

    @property
    def output_dropout(self) -> float:
        """The dropout on the attention output that the model applies."""
        return self.attention_dropout if self.attention_output_dropout is None else self.attention_output_dropout

    @property
    def has_dropout(self) -> bool:
        """Whether training draws random numbers in the body (any dropout but the classifier's)."""
        return any((self.embedding_dropout, self.attention_dropout, self.output_dropout, self.mlp_dropout))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def window_radius(self) -> int:
        """Keys a sliding-window query may look back (and, for the encoder, ahead).

        Encoder: |i - j| <= local_attention // 2. Decoder (as transformers'
        ModernBertDecoder does): i - local_attention // 2 < j <= i.
        """
        return self.local_attention // 2

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def for_tokenizer(self, vocab_size: int, special_ids: Mapping[str, int]) -> ModelConfig:
        """This shape sized for a tokenizer (as torchtitan's `update_from_config` does).

        The embedding table covers the tokenizer's `vocab_size` rounded up to a multiple of
        64, and never shrinks below this config's; the special ids are the tokenizer's
        (`cls`, `sep`, `pad`, `mask`, `bos`, `eos`; other keys are ignored).
        """
        rows = max(self.vocab_size, -(-vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE)
        ids = {field: special_ids[name] for name, field in SPECIAL_ID_FIELDS.items() if name in special_ids}
        return self.replace(vocab_size=rows, **ids)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["layer_types"] = list(self.layer_types)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TwofoldError(f"model config: unknown keys {unknown}; valid keys are {sorted(known)}")
        return cls(**data)


def _shape(layers: int, hidden: int, intermediate: int, heads: int, **extra) -> dict:
    return dict(num_hidden_layers=layers, hidden_size=hidden, intermediate_size=intermediate,
                num_attention_heads=heads, **extra)


# Published shapes: Ettin (arXiv 2507.11412; jhu-clsp/ettin-encoder-vs-decoder
# pretraining/configs/standard/*/encoder_*.yaml) and mmBERT (arXiv 2509.06888; jhu-clsp/mmBERT
# configs/mmBERT-{small,base}.yaml). Vocab 50,368 (ModernBERT/OLMo tokenizer) for Ettin;
# 256,000 (Gemma 2) for mmBERT, whose special ids are pad 0, eos/sep/cls 1, bos 2, mask 4.
_MMBERT_IDS = dict(vocab_size=256_000, pad_token_id=0, eos_token_id=1, sep_token_id=1,
                   cls_token_id=1, bos_token_id=2, mask_token_id=4)
_SMALL_IDS = dict(cls_token_id=0, bos_token_id=0, sep_token_id=1, eos_token_id=1, pad_token_id=2,
                  mask_token_id=3)
PRESETS: dict[str, dict] = {
    "ettin-17m": _shape(7, 256, 384, 4),
    "ettin-32m": _shape(10, 384, 576, 6),
    "ettin-68m": _shape(19, 512, 768, 8),
    "ettin-150m": _shape(22, 768, 1152, 12),
    "ettin-400m": _shape(28, 1024, 2624, 16),
    "ettin-1b": _shape(28, 1792, 3840, 28),
    "mmbert-small": _shape(22, 384, 1152, 6, **_MMBERT_IDS),
    "mmbert-base": _shape(22, 768, 1152, 12, **_MMBERT_IDS),
    # Small shapes for tests and the laptop demo. Vocab and special ids normally come from the
    # tokenizer; these defaults follow a BPE trained with [CLS] [SEP] [PAD] [MASK] [UNK] first.
    "tiny": _shape(2, 64, 96, 2, vocab_size=512, local_attention=16, max_position_embeddings=1024, **_SMALL_IDS),
    "demo": _shape(4, 128, 192, 2, vocab_size=4096, local_attention=64, max_position_embeddings=2048, **_SMALL_IDS),
}


def preset(name: str, **overrides) -> ModelConfig:
    """A named shape (`ettin-17m` … `mmbert-base`, `tiny`, `demo`) with optional overrides."""
    if name not in PRESETS:
        raise TwofoldError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    known = [f.name for f in dataclasses.fields(ModelConfig)]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise TwofoldError(f"preset {name!r}: unknown field {', '.join(unknown)}; valid fields: {', '.join(known)}")
    return ModelConfig(**{**PRESETS[name], **overrides})
