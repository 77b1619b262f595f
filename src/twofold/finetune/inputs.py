"""What a fine-tune starts from: a model as `twofold.models` names it (an HF export, a run's
checkpoint, a hub id), or a pair.

Whatever it is, it ends as a Hugging Face directory (config, safetensors weights, the member's
tokenizer) that the libraries load, plus a record of where it came from with checksums.

transformers (optional, the `finetune` extra) is imported only to read a hub model's config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from twofold.errors import TwofoldError
from twofold.files import sha256_file
from twofold.models import CHECKPOINT, HF, HUB, RUN, ModelRef, pair_members
from twofold.models import resolve as resolve_model


@dataclass
class BaseModel:
    path: str  # an HF directory (or a hub id) the libraries load
    name: str  # the label of its results: encoder, decoder, or the directory's name
    causal: bool
    source: dict = field(default_factory=dict)  # where it came from, with checksums


def _checksums(directory: Path) -> dict[str, str]:
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors"))
    return {p.name: sha256_file(p) for p in files}


def _causal_of(config: dict, where: str) -> bool:
    kinds = {"modernbert": False, "modernbert-decoder": True}
    if config.get("model_type") in kinds:
        return kinds[config["model_type"]]
    architectures = " ".join(config.get("architectures") or [])
    if "CausalLM" in architectures:
        return True
    if "MaskedLM" in architectures or config.get("model_type"):
        return False
    raise TwofoldError(f"{where}: config.json names no model_type; is this a Hugging Face model directory?")


def resolve(model: str | Path | ModelRef, scratch: Path, name: str | None = None) -> BaseModel:
    """An HF export, a hub id, or a run's checkpoint (`RUN`, `RUN@TAG`, a checkpoint directory),
    exported into `scratch` (see `twofold.models`)."""
    ref = model if isinstance(model, ModelRef) else resolve_model(model, "model", accept=(HF, RUN, CHECKPOINT, HUB))
    name = name or ref.name
    if ref.kind == HF:
        config = json.loads((ref.path / "config.json").read_text())
        if not (ref.path / "tokenizer.json").is_file():
            raise TwofoldError(f"{ref.path}: no tokenizer.json beside the model; export it with its tokenizer "
                               "(`twofold export` does) so the libraries tokenize as twofold does")
        return BaseModel(str(ref.path), name, _causal_of(config, str(ref.path)),
                         {"kind": "hf", "path": str(ref.path.resolve()), "sha256": _checksums(ref.path)})
    if ref.kind == HUB:  # downloaded by the libraries (needs internet)
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(ref.given).to_dict()
        except OSError as error:
            raise TwofoldError(f"{ref.given}: not a local directory and not loadable from the hub ({error})") from None
        return BaseModel(ref.given, name, _causal_of(config, ref.given), {"kind": "hub", "id": ref.given})
    if ref.tokenizer() is None:
        raise TwofoldError(f"{ref.given}: the run's tokenizer is gone; export the run with --tokenizer first")
    exported = ref.export(scratch / f"{ref.name}-export")
    config = json.loads((exported / "config.json").read_text())
    return BaseModel(str(exported), name, _causal_of(config, str(exported)),
                     {"kind": "run", "path": str(ref.path.resolve()), "checkpoint": ref.checkpoint.name,
                      "sha256": _checksums(exported)})


def resolve_pair(pair: str | Path, scratch: Path) -> tuple[BaseModel, BaseModel]:
    """(encoder, decoder) of a pair run (`pair.json`) or of a folder holding encoder/ and decoder/ exports."""
    refs = pair_members(pair, "--pair")
    encoder, decoder = (resolve(ref, scratch) for ref in refs)
    if encoder.causal or not decoder.causal:
        raise TwofoldError(f"{pair}: encoder/ must be an encoder and decoder/ a decoder")
    return encoder, decoder
