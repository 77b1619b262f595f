"""Hugging Face format: read and write transformers' ModernBERT checkpoints.

Encoder <-> `ModernBertForMaskedLM` (model_type `modernbert`); decoder <->
`ModernBertDecoderForCausalLM` (`modernbert-decoder`). Our state dict already uses the
encoder's names; the decoder differs only in `q_proj/k_proj/v_proj` (our fused `Wqkv`) and
`lm_head` (our `head`). Both config generations load: v5 (`layer_types`, `rope_parameters`)
and legacy (`global_attn_every_n_layers`, `global_rope_theta`, `local_rope_theta`).

Weights are safetensors only; pickle files are never opened.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import torch
from safetensors import safe_open

from twofold._version import __version__
from twofold.errors import TwofoldError
from twofold.files import atomic_write, atomic_write_text, read_json, save_safetensors
from twofold.model.config import GLOBAL, LOCAL, SPECIAL_ID_FIELDS, ModelConfig
from twofold.model.heads import SequenceClassifier
from twofold.model.transformer import TwofoldModel

MODEL_TYPES = {"modernbert": False, "modernbert-decoder": True}  # -> causal
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
_SAME_NAME_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "local_attention", "global_attn_every_n_layers", "max_position_embeddings", "norm_eps", "norm_bias",
    "attention_bias", "mlp_bias", "decoder_bias", "classifier_bias", "embedding_dropout", "attention_dropout",
    "attention_output_dropout", "mlp_dropout", "classifier_dropout", "classifier_pooling", "initializer_range",
    "initializer_cutoff_factor", "tie_word_embeddings", "pad_token_id", "bos_token_id", "eos_token_id",
    "cls_token_id", "sep_token_id", "mask_token_id",
)
_MASK_TOKENS = ("[MASK]", "<mask>")


# ----------------------------------------------------------------------------- config

def config_from_hf(hf: dict, source: Path | str = "config.json") -> ModelConfig:
    """Map a transformers config dict (either generation) to a `ModelConfig`."""
    model_type = hf.get("model_type")
    if model_type not in MODEL_TYPES:
        raise TwofoldError(
            f"{source}: model_type {model_type!r} is not supported; twofold loads "
            f"{' and '.join(repr(t) for t in MODEL_TYPES)} checkpoints"
        )
    for key in ("hidden_activation", "classifier_activation"):
        if hf.get(key, "gelu") not in ("gelu", "gelu_python"):
            raise TwofoldError(f"{source}: {key} {hf[key]!r} is not supported (twofold uses exact GELU)")
    fields = {k: hf[k] for k in _SAME_NAME_FIELDS if hf.get(k) is not None}
    if isinstance(fields.get("eos_token_id"), list):
        fields["eos_token_id"] = fields["eos_token_id"][0]
    fields.update(_special_ids_outside_vocab(fields, source))
    fields["causal"] = MODEL_TYPES[model_type]
    if hf.get("layer_types"):
        fields["layer_types"] = tuple(hf["layer_types"])
    rope = hf.get("rope_parameters") or {}
    thetas = {}
    for kind, legacy_key, field in ((GLOBAL, "global_rope_theta", "global_rope_theta"),
                                    (LOCAL, "local_rope_theta", "local_rope_theta")):
        params = rope.get(kind) or {}
        if params.get("rope_type", "default") != "default":
            raise TwofoldError(f"{source}: rope_type {params['rope_type']!r} for {kind} is not supported "
                               "(only 'default')")
        theta = params.get("rope_theta", hf.get(legacy_key))
        if theta is not None:
            thetas[field] = float(theta)
    if hf.get("local_attention") is None and "local_attention" in hf:
        raise TwofoldError(f"{source}: local_attention is null; twofold needs a sliding-window size")
    return ModelConfig(**fields, **thetas)


def _special_ids_outside_vocab(fields: dict, source) -> dict:
    """None for each special id the vocabulary cannot hold (one warning), as transformers tolerates.

    transformers' ModernBertConfig defaults to the 50,368-token ids (mask 50284), so small
    checkpoints made with it carry ids past their vocabulary; they load, and whatever needs
    such an id (e.g. `fill_mask`) must be given it.
    """
    vocab = fields.get("vocab_size", ModelConfig.vocab_size)
    outside = {name: fields.get(name, getattr(ModelConfig, name)) for name in SPECIAL_ID_FIELDS.values()}
    outside = {name: value for name, value in outside.items() if value is not None and not 0 <= value < vocab}
    if outside:
        listed = ", ".join(f"{name} {value}" for name, value in outside.items())
        warnings.warn(f"{source}: {listed} outside the vocabulary of {vocab}; loaded without them "
                      "(pass ids explicitly where they are needed, e.g. fill_mask(mask_token_id=…))", stacklevel=4)
    return dict.fromkeys(outside)


def config_to_hf(config: ModelConfig, num_labels: int | None = None, pooling: str | None = None,
                 labels: list[str] | None = None) -> dict:
    """A transformers config dict (v5 fields, plus the legacy ones older versions read).

    For a classifier, `pooling` is the one it was trained with (written as `classifier_pooling`)
    and `labels` its label names (`id2label`).
    """
    model_type = "modernbert-decoder" if config.causal else "modernbert"
    if num_labels is None:
        arch = "ModernBertDecoderForCausalLM" if config.causal else "ModernBertForMaskedLM"
    else:
        arch = ("ModernBertDecoderForSequenceClassification" if config.causal
                else "ModernBertForSequenceClassification")
    data = {"architectures": [arch], "model_type": model_type}
    # `attention_output_dropout` is ours (transformers drops both with `attention_dropout`); it
    # travels as an extra key that transformers keeps on the config and ignores.
    # A special id of None is written as null: left out, transformers would put its own default
    # (e.g. pad 50283) in, outside a small vocabulary.
    special = set(SPECIAL_ID_FIELDS.values())
    data.update({k: v for k, v in config.to_dict().items() if k != "causal" and (v is not None or k in special)})
    data.update(
        hidden_activation="gelu", classifier_activation="gelu",
        rope_parameters={GLOBAL: {"rope_type": "default", "rope_theta": config.global_rope_theta},
                         LOCAL: {"rope_type": "default", "rope_theta": config.local_rope_theta}},
        dtype="float32", twofold_version=__version__,
    )
    if num_labels is not None:
        names = list(labels) if labels else [f"LABEL_{i}" for i in range(num_labels)]
        if len(names) != num_labels:
            raise TwofoldError(f"{len(names)} label names for a classifier with {num_labels} outputs")
        data["id2label"] = {str(i): name for i, name in enumerate(names)}
        data["label2id"] = {name: i for i, name in enumerate(names)}
        if pooling is not None:
            data["classifier_pooling"] = pooling
    return data


def exported_pooling(classifier: SequenceClassifier) -> str:
    """The pooling a classifier was trained with, if transformers' class for it computes the same.

    ModernBertForSequenceClassification pools `cls` or `mean`; the decoder's class always
    takes the last real token.
    """
    supported = ("last",) if classifier.config.causal else ("cls", "mean")
    if classifier.pooling not in supported:
        member = "a decoder" if classifier.config.causal else "an encoder"
        raise TwofoldError(
            f"{member} classifier trained with {classifier.pooling!r} pooling has no transformers equivalent "
            f"(it supports {' or '.join(supported)}); fine-tune with pooling {supported[-1]!r} to export it")
    return classifier.pooling


# ----------------------------------------------------------------------------- state dict names

def to_hf_names(state: dict[str, torch.Tensor], causal: bool) -> dict[str, torch.Tensor]:
    """Our names -> transformers' names (the decoder splits Wqkv and calls its head lm_head)."""
    if not causal:
        return dict(state)
    out = {}
    for name, tensor in state.items():
        if name.endswith(".attn.Wqkv.weight") or name.endswith(".attn.Wqkv.bias"):
            for proj, part in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3)):
                out[name.replace("Wqkv", proj)] = part.contiguous()
        elif name.startswith("head.") and "classifier.weight" not in state:
            out["lm_head." + name[len("head."):]] = tensor
        else:
            out[name] = tensor
    return out


QKV = ("q_proj", "k_proj", "v_proj")  # the decoder's split of our fused Wqkv, in row order


def our_name(name: str) -> tuple[str, str | None]:
    """transformers' tensor name -> (our name, which of q_proj/k_proj/v_proj it is of our Wqkv, or None)."""
    if not name.startswith(("model.", "head.", "lm_head.", "decoder.", "classifier.")):
        name = "model." + name  # ModernBertModel / ModernBertDecoderModel weights
    for proj in QKV:
        if f".attn.{proj}." in name:
            return name.replace(proj, "Wqkv"), proj
    return ("head." + name[len("lm_head."):] if name.startswith("lm_head.") else name), None


def from_hf_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' names (either member, with or without the `model.` prefix) -> ours."""
    out, split = {}, {}
    for name, tensor in state.items():
        ours, proj = our_name(name)
        if proj is None:
            out[ours] = tensor
        else:
            split.setdefault(ours, {})[proj] = tensor
    for name, parts in split.items():
        if set(parts) != {"q_proj", "k_proj", "v_proj"}:
            raise TwofoldError(f"{name}: found {sorted(parts)} of q_proj/k_proj/v_proj; the checkpoint is incomplete")
        out[name] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]])
    return out


# ----------------------------------------------------------------------------- reading

def _read_json(path: Path) -> dict:
    return read_json(path, "fix or replace the file (is this a Hugging Face model directory?)")


def weight_files(directory: Path) -> list[Path]:
    index = directory / WEIGHTS_INDEX
    if index.exists():
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        missing = [s for s in shards if not (directory / s).exists()]
        if not shards or missing:
            raise TwofoldError(f"{index}: lists shards that are not in the directory: {missing or 'none listed'}")
        return [directory / s for s in shards]
    if (directory / WEIGHTS).exists():
        return [directory / WEIGHTS]
    found = sorted(directory.glob("*.safetensors"))
    if len(found) == 1:
        return found
    pickles = sorted(p.name for p in directory.glob("*.bin")) + sorted(p.name for p in directory.glob("*.pt"))
    if pickles:
        raise TwofoldError(
            f"{directory}: only pickle weights ({', '.join(pickles)}); twofold never unpickles files. "
            "Convert them to safetensors in a trusted environment (e.g. transformers' save_pretrained "
            "with safe_serialization=True)"
        )
    raise TwofoldError(f"{directory}: no {WEIGHTS} (or sharded {WEIGHTS_INDEX}) found")


def read_safetensors(files: list[Path]) -> tuple[dict[str, torch.Tensor], dict[str, Path]]:
    tensors, origin = {}, {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():
                    tensors[name] = handle.get_tensor(name)
                    origin[name] = file
        except Exception as error:  # safetensors raises its own error types
            raise TwofoldError(f"{file}: not a readable safetensors file ({error})") from None
    return tensors, origin


def read_mask_token_id(directory: Path) -> int | None:
    """The mask token's id from tokenizer.json, when the config does not say."""
    path = directory / "tokenizer.json"
    if not path.exists():
        return None
    for token in _read_json(path).get("added_tokens", []):
        if token.get("content") in _MASK_TOKENS:
            return int(token["id"])
    return None


def load(path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> TwofoldModel | SequenceClassifier:
    """Load a transformers-format directory of a ModernBERT encoder or decoder.

    Returns a `TwofoldModel` (or a `SequenceClassifier` for *ForSequenceClassification
    checkpoints). Base-model weights without a head load with a freshly initialised head,
    with a warning.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise TwofoldError(f"{directory}: not a directory; pass a folder with config.json and model.safetensors")
    config_path = directory / "config.json"
    if not config_path.exists():
        raise TwofoldError(f"{directory}: no config.json; is this a Hugging Face model directory?")
    hf_config = _read_json(config_path)
    config = config_from_hf(hf_config, config_path)
    missing_mask = "mask_token_id" not in hf_config or config.mask_token_id is None
    if missing_mask and (mask_id := read_mask_token_id(directory)) is not None:
        config = config.replace(mask_token_id=mask_id)
    tensors, origin = read_safetensors(weight_files(directory))
    state = from_hf_names(tensors)
    if "classifier.weight" in state:
        model = SequenceClassifier(config, num_labels=state["classifier.weight"].shape[0])
    else:
        model = TwofoldModel(config)
    _load_state(model, state, origin, directory)
    return model.to(dtype)


def _load_state(model: torch.nn.Module, state: dict, origin: dict, directory: Path) -> None:
    expected = model.state_dict()
    tied = getattr(model, "decoder", None) is not None and model.config.tie_word_embeddings
    if tied:
        state.pop("decoder.weight", None)
        expected.pop("decoder.weight", None)
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise TwofoldError(
            f"{directory}: weights {unexpected[:5]}{'…' if len(unexpected) > 5 else ''} do not belong to a "
            "ModernBERT model; is config.json the right one for these weights?"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            file = origin.get(name) or origin.get(name.replace("Wqkv", "q_proj"), directory)
            raise TwofoldError(
                f"{file}: tensor {name} has shape {tuple(tensor.shape)} but config.json implies "
                f"{tuple(expected[name].shape)}"
            )
    missing = sorted(set(expected) - set(state))
    optional = ("head.", "decoder.bias", "classifier.")
    required = [name for name in missing if not name.startswith(optional)]
    if required:
        raise TwofoldError(f"{directory}: weights missing from the checkpoint: {required[:5]}")
    if missing:
        warnings.warn(f"{directory}: no weights for {missing}; they keep their fresh initialisation", stacklevel=3)
    model.load_state_dict(state, strict=False)


# ----------------------------------------------------------------------------- writing

def save_pretrained(model: TwofoldModel | SequenceClassifier, path: str | os.PathLike, tokenizer=None,
                    max_shard_bytes: int | None = None, labels: list[str] | None = None) -> Path:
    """Write a directory that transformers' Auto classes load with no missing or unexpected keys.

    `tokenizer`: a tokenizer directory (its files are copied, `tokenizer.json` with the member's
    template: the decoder's adds BOS only) or an object with `save_pretrained(dir)`. A classifier
    is written with the pooling it was trained with and `labels` as its label names. Files appear
    whole or not at all (each is written then renamed).
    """
    config = model.config
    classifier = isinstance(model, SequenceClassifier)
    num_labels = model.num_labels if classifier else None
    pooling = exported_pooling(model) if classifier else None
    hf_config = config_to_hf(config, num_labels, pooling, labels)
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    if config.tie_word_embeddings:
        state.pop("decoder.weight", None)  # transformers ties it back to the embeddings
    state = to_hf_names(state, config.causal)
    _write_weights(state, directory, max_shard_bytes)
    atomic_write_text(directory / "config.json", json.dumps(hf_config, indent=2) + "\n")
    if tokenizer is not None:
        _save_tokenizer(tokenizer, directory, config.causal)
    return directory


def _write_weights(state: dict, directory: Path, max_shard_bytes: int | None) -> None:
    metadata = {"format": "pt"}
    sizes = {name: t.numel() * t.element_size() for name, t in state.items()}
    if max_shard_bytes is None or sum(sizes.values()) <= max_shard_bytes:
        atomic_write(directory / WEIGHTS, lambda tmp: save_safetensors(state, tmp, metadata=metadata))
        return
    shards, current, used = [], {}, 0
    for name in state:
        if current and used + sizes[name] > max_shard_bytes:
            shards.append(current)
            current, used = {}, 0
        current[name] = state[name]
        used += sizes[name]
    shards.append(current)
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        atomic_write(directory / file, lambda tmp, shard=shard: save_safetensors(shard, tmp, metadata=metadata))
        weight_map.update({name: file for name in shard})
    index = {"metadata": {"total_size": sum(sizes.values())}, "weight_map": weight_map}
    atomic_write_text(directory / WEIGHTS_INDEX, json.dumps(index, indent=2) + "\n")


def _save_tokenizer(tokenizer, directory: Path, causal: bool) -> None:
    """Copy a tokenizer directory, with the member's template (`twofold.data.tokenizer.for_member`)."""
    if isinstance(tokenizer, (str, os.PathLike)):
        from twofold.data.tokenizer import for_member, load_tokenizer

        source = Path(tokenizer)
        folder = source.parent if source.is_file() else source  # tokenizer.json: take its siblings too
        if not (folder / "tokenizer.json").exists():
            raise TwofoldError(f"{source}: no tokenizer.json to copy into the export")
        loaded = load_tokenizer(folder)
        backend = for_member(loaded.backend, loaded.special, causal)
        atomic_write(directory / "tokenizer.json", lambda tmp: backend.save(tmp))
        for name in TOKENIZER_FILES[1:]:
            if (folder / name).exists():
                atomic_write(directory / name, lambda tmp, file=folder / name: shutil.copyfile(file, tmp))
    elif hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(str(directory))
    else:
        raise TwofoldError(f"cannot save tokenizer of type {type(tokenizer).__name__}; pass its directory")
