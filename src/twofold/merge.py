"""Merging models of one architecture and tokenizer: `linear` and `ties`.

- `linear`: the weighted average Σ w_i θ_i (weights normalised to sum to 1), computed as
  θ_1 + Σ w_i (θ_i − θ_1) so that merging a model with itself returns it bit for bit.
- `ties` (TIES-Merging, Yadav et al. 2023, arXiv 2306.01708), against a base θ_b:
  task vectors τ_t = θ_t − θ_b; **trim** each to its `density` fraction of largest magnitudes;
  **elect** a sign per parameter, γ = sign(Σ_t w_t τ̂_t); **disjoint mean** over the models whose
  trimmed entry has that sign, τ_m = Σ_{t∈A} w_t τ̂_t / Σ_{t∈A} w_t; result θ_b + λ τ_m. With
  all weights 1 this is the paper's method. Trimming is per tensor (k = max(1, ⌊density·n⌋), as
  mergekit does), where the paper trims the flattened model: that is what lets the merge stream.

Inputs are Hugging Face directories, training runs (their newest intact checkpoint, or
`RUN@TAG`) or checkpoint directories. They are read one tensor at a time (each safetensors file
opened only while a tensor is read from it), so memory holds the merged model plus one tensor
per input. Arithmetic and output are float32 whatever the inputs' dtype. The output is a
Hugging Face directory (`twofold.load` and transformers read it) with `merge.json`: the inputs
and the sha256 of their weight files, the method and its parameters. It is written beside its
final place and renamed into it when complete.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from tqdm import tqdm

from twofold._version import __version__
from twofold.errors import TwofoldError
from twofold.files import atomic_write_text, publish_directory, sha256_file
from twofold.hf import QKV, config_from_hf, our_name, read_mask_token_id, save_pretrained, weight_files
from twofold.model.config import ModelConfig
from twofold.model.transformer import TwofoldModel
from twofold.models import CHECKPOINT, HF, RUN, resolve
from twofold.train import checkpoint
from twofold.train.rundir import RunDir

METHODS = ("linear", "ties")
MERGE_FILE = "merge.json"
# Settings that do not change what the weights mean: models may differ in them (the first one's are kept).
_FREE_FIELDS = ("embedding_dropout", "attention_dropout", "mlp_dropout", "classifier_dropout",
                "initializer_range", "initializer_cutoff_factor", "max_position_embeddings")


# ---------------------------------------------------------------- the arithmetic, one tensor at a time


def linear(tensors: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """Σ w_i θ_i for weights summing to 1, anchored on the first model (exact when all are equal)."""
    anchor = tensors[0]
    merged = anchor.clone()
    for tensor, weight in zip(tensors[1:], weights[1:]):
        merged.add_(tensor - anchor, alpha=weight)
    return merged


def trim(task: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the `density` fraction of entries with the largest magnitude, zero the rest."""
    if density >= 1:
        return task
    k = max(1, int(density * task.numel()))
    keep = torch.zeros(task.numel(), dtype=torch.bool)
    keep[task.abs().flatten().topk(k, sorted=False).indices] = True
    return torch.where(keep.view_as(task), task, torch.zeros_like(task))


def ties(base: torch.Tensor, tensors: list[torch.Tensor], weights: list[float], densities: list[float],
         lam: float = 1.0) -> torch.Tensor:
    """TIES-Merging of one tensor (see the module docstring)."""
    weighted = torch.stack([w * trim(t - base, d) for t, w, d in zip(tensors, weights, densities)])
    elected = torch.sign(weighted.sum(dim=0))
    agree = (torch.sign(weighted) == elected) & (weighted != 0)
    weight_of = torch.tensor(weights, dtype=base.dtype).view(-1, *([1] * base.dim()))
    mass = (weighted * agree).sum(dim=0)
    count = (weight_of * agree).sum(dim=0)
    merged = torch.where(count > 0, mass / count.clamp(min=torch.finfo(base.dtype).tiny), torch.zeros_like(mass))
    return base + lam * merged


# ---------------------------------------------------------------- inputs


@dataclass
class Source:
    """One model to merge, read lazily: our tensor name → where its parts lie."""

    given: str  # as the user wrote it
    kind: str  # "hf" or "checkpoint"
    path: Path  # the HF directory or the checkpoint directory
    config: ModelConfig
    parts: dict[str, list[tuple[Path, str]]]  # ours → [(file, stored name)]; Wqkv may be q, k, v
    checksums: dict[str, str]  # weight file → sha256
    tokenizer: Path | None = None  # tokenizer.json
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def tensor(self, name: str) -> torch.Tensor:
        pieces = []
        for file, stored in self.parts[name]:
            with safe_open(str(file), framework="pt") as handle:  # closed at once: no mapping kept
                pieces.append(handle.get_tensor(stored))
        return (pieces[0] if len(pieces) == 1 else torch.cat(pieces)).float()

    def describe(self) -> dict:
        return {"given": self.given, "kind": self.kind, "path": str(self.path.resolve()),
                "weights_sha256": self.checksums,
                "tokenizer_sha256": sha256_file(self.tokenizer) if self.tokenizer else None}


def open_source(given: str) -> Source:
    """A Hugging Face directory, a run (`RUN`, `RUN@TAG`) or a checkpoint directory (see `twofold.models`)."""
    ref = resolve(given, "merge input", accept=(HF, RUN, CHECKPOINT))
    if ref.kind == HF:
        return _hf_source(given, ref.path)
    return _checkpoint_source(given, ref.checkpoint, ref.run)


def _hf_source(given: str, path: Path) -> Source:
    try:
        hf_config = json.loads((path / "config.json").read_text())
    except ValueError:
        raise TwofoldError(f"{path / 'config.json'}: not valid JSON") from None
    config = config_from_hf(hf_config, path / "config.json")
    if "mask_token_id" not in hf_config and (mask_id := read_mask_token_id(path)) is not None:
        config = config.replace(mask_token_id=mask_id)
    parts: dict[str, list] = {}
    for file in weight_files(path):
        try:
            with safe_open(str(file), framework="pt") as handle:
                for stored in handle.keys():
                    ours, proj = our_name(stored)
                    parts.setdefault(ours, []).append((QKV.index(proj) if proj else 0, file, stored))
        except TwofoldError:
            raise
        except Exception as error:  # safetensors raises its own types
            raise TwofoldError(f"{file}: not a readable safetensors file ({error})") from None
    ordered = {name: [(file, stored) for _, file, stored in sorted(found)] for name, found in parts.items()}
    for name, found in ordered.items():
        if name.endswith("Wqkv.weight") and len(found) not in (1, 3):
            raise TwofoldError(f"{path}: {name} has {len(found)} of q_proj/k_proj/v_proj; the checkpoint is incomplete")
    tokenizer = path / "tokenizer.json"
    return Source(given, "hf", path, config, ordered, {f.name: sha256_file(f) for f in weight_files(path)},
                  tokenizer if tokenizer.is_file() else None)


def _checkpoint_source(given: str, path: Path, run: RunDir | None) -> Source:
    checkpoint.verify(path)  # checksums first: a torn checkpoint is never merged
    state = checkpoint.read_state(path)
    config = ModelConfig.from_dict(state["config"])
    weights = path / "model.safetensors"
    with safe_open(str(weights), framework="pt") as handle:
        names = list(handle.keys())
    tokenizer = run.tokenizer() if run is not None else None
    if tokenizer is not None and tokenizer.is_dir():
        tokenizer = tokenizer / "tokenizer.json"
    checksums = json.loads((path / checkpoint.CHECKSUMS).read_text())
    return Source(given, "checkpoint", path, config, {n: [(weights, n)] for n in names},
                  {"model.safetensors": checksums["model.safetensors"]},
                  tokenizer if tokenizer is not None and tokenizer.is_file() else None)


def _shapes(source: Source) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for name, parts in source.parts.items():
        sizes = []
        for file, stored in parts:
            with safe_open(str(file), framework="pt") as handle:
                sizes.append(tuple(handle.get_slice(stored).get_shape()))
        shapes[name] = sizes[0] if len(sizes) == 1 else (sum(s[0] for s in sizes), *sizes[0][1:])
    return shapes


def check_compatible(sources: list[Source]) -> None:
    """One architecture (config, tensor names and shapes) and one tokenizer; else one line."""
    first = sources[0]
    reference = {k: v for k, v in first.config.to_dict().items() if k not in _FREE_FIELDS}
    first.shapes = _shapes(first)
    for other in sources[1:]:
        theirs = other.config.to_dict()
        differ = [f"{k} {v} vs {theirs[k]}" for k, v in reference.items() if theirs[k] != v]
        if differ:
            raise TwofoldError(f"merge: {other.given} has another shape than {first.given} ({'; '.join(differ[:3])}); "
                               "merge models of one architecture")
        other.shapes = _shapes(other)
        if other.shapes != first.shapes:
            names = sorted(set(other.shapes) ^ set(first.shapes)) or sorted(
                n for n in first.shapes if other.shapes[n] != first.shapes[n])
            raise TwofoldError(f"merge: {other.given} and {first.given} differ in tensors {names[:3]}; "
                               "merge models of one architecture")
    hashes = {s.given: sha256_file(s.tokenizer) for s in sources if s.tokenizer is not None}
    if len(set(hashes.values())) > 1:
        raise TwofoldError(f"merge: the models use different tokenizers ({', '.join(hashes)}); merge models "
                           "trained with one tokenizer")


# ---------------------------------------------------------------- the merge


@dataclass(frozen=True)
class MergeSettings:
    method: str
    weights: tuple[float, ...]  # one per model (linear: normalised to sum 1)
    densities: tuple[float, ...] = ()  # ties: one per model
    lam: float = 1.0  # ties: λ

    @classmethod
    def build(cls, method: str, count: int, weights=None, density=None, lam: float | None = None,
              has_base: bool = False) -> MergeSettings:
        """Checked settings; `lam` None is TIES' default 1 (given to linear, it is refused)."""
        if method not in METHODS:
            raise TwofoldError(f"merge: method {method!r} is unknown; use one of {', '.join(METHODS)}")
        weights = _per_model("weights", weights, count, 1.0)
        if any(not (w > 0 and math.isfinite(w)) for w in weights):
            raise TwofoldError(f"merge: weights must be > 0, got {list(weights)}")
        if method == "linear":
            if has_base:
                raise TwofoldError("merge: linear averages the models and takes no --base (TIES does)")
            if density is not None:
                raise TwofoldError("merge: --density trims task vectors, a TIES setting; drop it or use --method ties")
            if lam is not None:
                raise TwofoldError("merge: --lambda scales TIES' task vector; drop it or use --method ties")
            total = sum(weights)
            return cls(method, tuple(w / total for w in weights))
        if not has_base:
            raise TwofoldError("merge: ties needs --base, the model the task vectors are taken against "
                               "(mmBERT: the mid-training checkpoint the decays started from)")
        densities = _per_model("density", density, count, 1.0)
        bad = [d for d in densities if not 0 < d <= 1]
        if bad:
            raise TwofoldError(f"merge: density must be in (0, 1] (the fraction of each task vector kept), "
                               f"got {bad[0]}")
        lam = 1.0 if lam is None else lam
        if not (lam > 0 and math.isfinite(lam)):
            raise TwofoldError(f"merge: lambda must be > 0, got {lam}")
        return cls(method, tuple(weights), tuple(densities), lam)

    def to_dict(self) -> dict:
        data = {"method": self.method, "weights": list(self.weights)}
        if self.method == "ties":
            data.update(density=list(self.densities), **{"lambda": self.lam})
        return data


def _per_model(what: str, values, count: int, default: float) -> tuple[float, ...]:
    if values is None:
        return (default,) * count
    values = tuple(float(v) for v in values)
    if len(values) == 1:
        return values * count
    if len(values) != count:
        raise TwofoldError(f"merge: {len(values)} {what} for {count} models; give one per model or one for all")
    return values


def merge(models: list[str], out: str | Path, settings: MergeSettings, base: str | None = None,
          progress: bool = True) -> Path:
    """Merge `models` (against `base` for TIES) into the Hugging Face directory `out`."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise TwofoldError(f"merge: {out} exists and is not empty; choose another --out")
    if not models:
        raise TwofoldError("merge: no model given")
    sources = [open_source(m) for m in models]
    base_source = open_source(base) if base is not None else None
    everyone = ([base_source] if base_source else []) + sources
    check_compatible(everyone)
    first = everyone[0]
    merged = {}
    names = list(first.parts)
    for name in tqdm(names, desc="merge", unit="tensor", disable=None if progress else True):
        tensors = [s.tensor(name) for s in sources]
        if settings.method == "linear":
            result = linear(tensors, list(settings.weights))
        else:
            result = ties(base_source.tensor(name), tensors, list(settings.weights), list(settings.densities),
                          settings.lam)
        merged[name] = result  # float32, as the export's config.json says
        del tensors, result
    partial = out.parent / f".{out.name}.merge-partial"
    shutil.rmtree(partial, ignore_errors=True)
    tokenizer = next((s.tokenizer for s in everyone if s.tokenizer is not None), None)
    try:
        _write(merged, first.config, tokenizer, partial)
        atomic_write_text(partial / MERGE_FILE, json.dumps({
            "twofold_version": __version__, **settings.to_dict(),
            "base": base_source.describe() if base_source else None,
            "models": [s.describe() for s in sources],
        }, indent=2) + "\n")
        publish_directory(partial, out)  # `out` is absent or empty, checked above
    except BaseException:  # nothing half-written stays behind
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out


def _write(merged: dict[str, torch.Tensor], config: ModelConfig, tokenizer: Path | None, directory: Path) -> None:
    with torch.device("meta"):  # no second copy of the weights: the merged tensors are assigned
        model = TwofoldModel(config)
    result = model.load_state_dict(merged, strict=False, assign=True)
    missing = [n for n in result.missing_keys if not (n == "decoder.weight" and config.tie_word_embeddings)]
    if missing or result.unexpected_keys:
        raise TwofoldError(f"merge: the inputs' tensors do not make a whole model (missing {missing[:3]}, "
                           f"unexpected {result.unexpected_keys[:3]}); are they complete checkpoints?")
    if config.tie_word_embeddings:  # assigning replaced the embedding: tie the output projection again
        model.decoder.weight = model.model.embeddings.tok_embeddings.weight
    save_pretrained(model, directory, tokenizer=tokenizer)
