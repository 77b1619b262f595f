"""What a fine-tune starts from: an HF export, a training run's final checkpoint, or a pair run.

Whatever it is, it ends as a Hugging Face directory (config, safetensors weights, the member's
tokenizer) that the libraries load, plus a record of where it came from with checksums.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from twofold.errors import TwofoldError
from twofold.files import sha256_file

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


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


def resolve(model: str | Path, scratch: Path, name: str | None = None) -> BaseModel:
    """An HF export, a hub id, or a training run (exported from its newest intact checkpoint into `scratch`)."""
    from twofold.train.rundir import RunDir

    path = Path(model)
    if path.is_dir() and (path / "config.json").is_file():
        config = json.loads((path / "config.json").read_text())
        if not (path / "tokenizer.json").is_file():
            raise TwofoldError(f"{path}: no tokenizer.json beside the model; export it with its tokenizer "
                               "(`twofold export` does) so the libraries tokenize as twofold does")
        return BaseModel(str(path), name or path.name, _causal_of(config, str(path)),
                         {"kind": "hf", "path": str(path.resolve()), "sha256": _checksums(path)})
    if path.is_dir() and RunDir.holds_run(path):
        run = RunDir(path)
        checkpoint = run.checkpoint()
        if run.tokenizer() is None:
            raise TwofoldError(f"{path}: the run's tokenizer is gone; export the run with --tokenizer first")
        exported = run.export(scratch / f"{path.name}-export")
        return BaseModel(str(exported), name or path.name, run.config().causal,
                         {"kind": "run", "path": str(path.resolve()), "checkpoint": checkpoint.name,
                          "sha256": _checksums(exported)})
    if path.exists():
        raise TwofoldError(f"{path}: neither a Hugging Face model directory (config.json) nor a training run "
                           "(run.json); pass an export, a `twofold train` run, or --pair RUN")
    if _HUB_ID.match(str(model)):  # downloaded by the libraries (needs internet)
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(str(model)).to_dict()
        except OSError as error:
            raise TwofoldError(f"{model}: not a local directory and not loadable from the hub ({error})") from None
        return BaseModel(str(model), name or str(model).split("/")[-1], _causal_of(config, str(model)),
                         {"kind": "hub", "id": str(model)})
    raise TwofoldError(f"{model}: no such directory; pass an HF export, a training run or a hub id (org/name)")


def resolve_pair(pair: str | Path, scratch: Path) -> tuple[BaseModel, BaseModel]:
    """(encoder, decoder) of a pair run (`pair.json`) or of a folder holding encoder/ and decoder/ exports."""
    from twofold.train.rundir import PairDir

    path = Path(pair)
    if PairDir.holds_pair(path):
        members = [PairDir(path).member(m).path for m in ("encoder", "decoder")]
    elif all((path / m / "config.json").is_file() for m in ("encoder", "decoder")):
        members = [path / "encoder", path / "decoder"]
    else:
        raise TwofoldError(f"{path}: not a pair run (no pair.json) nor a folder with encoder/ and decoder/ exports")
    encoder, decoder = (resolve(m, scratch, name) for m, name in zip(members, ("encoder", "decoder")))
    if encoder.causal or not decoder.causal:
        raise TwofoldError(f"{path}: encoder/ must be an encoder and decoder/ a decoder")
    return encoder, decoder
