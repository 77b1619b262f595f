"""What `twofold eval PATH` evaluates: Hugging Face model directories and training runs.

PATH may be
- a Hugging Face model directory (config.json + safetensors): that model;
- a member training run (`run.json` + `checkpoints/`, see `twofold.train.loop`): its newest
  intact checkpoint, or with `all_checkpoints` every tagged checkpoint, each labelled with
  its tag and the training tokens it had seen;
- a folder holding such directories (a pair run, a folder of exports): each of them.
Models are found first and loaded one at a time, so a folder of many checkpoints fits in memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twofold.errors import TwofoldError
from twofold.tokenizer import Tokenizer, load_tokenizer

RUN_FILE = "run.json"


@dataclass
class Found:
    name: str
    load: Callable[[], object]  # -> TwofoldModel
    tokenizer: Path | None
    checkpoint: str = ""
    tokens: int | None = None


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def is_run(path: Path) -> bool:
    return (path / RUN_FILE).is_file()


def find_models(path: str | Path, all_checkpoints: bool = False) -> list[Found]:
    path = Path(path)
    if not path.is_dir():
        raise TwofoldError(f"{path}: not a directory; pass a Hugging Face model directory or a training run")
    if is_model_dir(path):
        if all_checkpoints:
            raise TwofoldError(f"{path} is one model; --all-checkpoints needs a training run (a folder with {RUN_FILE})")
        return [_hf_model(path)]
    if is_run(path):
        return _run_checkpoints(path, all_checkpoints)
    children = [c for c in sorted(path.iterdir()) if c.is_dir() and (is_run(c) or (is_model_dir(c) and not all_checkpoints))]
    if not children:
        what = f"training runs (folders with {RUN_FILE})" if all_checkpoints else "model directories or training runs"
        raise TwofoldError(f"{path}: not a model directory (no config.json) and holds no {what}; "
                           "pass a Hugging Face model directory, a `twofold train` run, or a folder of them")
    return [found for child in children for found in find_models(child, all_checkpoints)]


def _hf_model(path: Path) -> Found:
    import twofold

    tokenizer = path if (path / "tokenizer.json").is_file() else None
    return Found(path.name, lambda: twofold.load(path), tokenizer)


def _run_checkpoints(run: Path, all_checkpoints: bool) -> list[Found]:
    from twofold.model import ModelConfig, TwofoldModel
    from twofold.train import checkpoint

    saved = json.loads((run / RUN_FILE).read_text())
    paths = checkpoint.list_checkpoints(run / "checkpoints")
    if all_checkpoints:
        paths = [p for p in paths if "-" in p.name]  # tagged: {step}-{tag}
    else:
        paths = paths[-1:]
    if not paths:
        raise TwofoldError(f"{run}: no {'tagged ' if all_checkpoints else ''}checkpoints yet; train longer or pass another run")

    def loader(path: Path):
        def load():
            model = TwofoldModel(ModelConfig.from_dict(saved["model"]))
            checkpoint.load(path, model, restore_rng=False)
            return model
        return load

    found = []
    for path in paths:
        state = json.loads((path / "state.json").read_text())
        found.append(Found(run.name, loader(path), _run_tokenizer(saved),
                           checkpoint=state.get("tag") or path.name, tokens=state["progress"].get("tokens")))
    return found


def _run_tokenizer(saved: dict) -> Path | None:
    """The tokenizer the run's first token store was made with."""
    stores = saved.get("options", {}).get("stores") or []
    if not stores:
        return None
    manifest = Path(stores[0]) / "manifest.json"
    if not manifest.is_file():
        return None
    path = json.loads(manifest.read_text()).get("tokenizer", {}).get("path")
    return Path(path) if path and Path(path).exists() else None


def tokenizer_for(found: Found, override: str | Path | None) -> Tokenizer:
    source = override or found.tokenizer
    if source is None:
        raise TwofoldError(f"no tokenizer found for {found.name}; pass --tokenizer DIR (a tokenizer.json or its folder)")
    return load_tokenizer(source)
