"""What `twofold eval PATH` evaluates: Hugging Face model directories and training runs.

PATH may be
- a Hugging Face model directory (config.json + safetensors): that model;
- a member training run (`run.json` + `checkpoints/`, see `twofold.train.rundir`): its newest
  intact checkpoint, or with `all_checkpoints` every tagged checkpoint, each labelled with
  its tag and the training tokens it had seen;
- a folder holding such directories (a pair run, a folder of exports): each of them.
Models are found first and loaded one at a time, so a folder of many checkpoints fits in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twofold.data.tokenizer import Tokenizer, load_tokenizer
from twofold.errors import TwofoldError
from twofold.train.rundir import RUN_FILE, RunDir


@dataclass
class Found:
    name: str
    load: Callable[[], object]  # -> TwofoldModel
    tokenizer: Path | None
    checkpoint: str = ""
    tokens: int | None = None
    directory: Path | None = None  # the Hugging Face directory, when the model is one
    run: RunDir | None = None  # the training run, when the model is one of its checkpoints
    path: Path | None = None  # that checkpoint


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def find_models(path: str | Path, all_checkpoints: bool = False) -> list[Found]:
    path = Path(path)
    if not path.is_dir():
        raise TwofoldError(f"{path}: not a directory; pass a Hugging Face model directory or a training run")
    if is_model_dir(path):
        if all_checkpoints:
            raise TwofoldError(f"{path} is one model; --all-checkpoints needs a training run "
                               f"(a folder with {RUN_FILE})")
        return [_hf_model(path)]
    if RunDir.holds_run(path):
        return _run_checkpoints(RunDir(path), all_checkpoints)
    children = [c for c in sorted(path.iterdir())
                if c.is_dir() and (RunDir.holds_run(c) or (is_model_dir(c) and not all_checkpoints))]
    if not children:
        what = f"training runs (folders with {RUN_FILE})" if all_checkpoints else "model directories or training runs"
        raise TwofoldError(f"{path}: not a model directory (no config.json) and holds no {what}; "
                           "pass a Hugging Face model directory, a `twofold train` run, or a folder of them")
    return [found for child in children for found in find_models(child, all_checkpoints)]


def _hf_model(path: Path) -> Found:
    from twofold.hf import load

    tokenizer = path if (path / "tokenizer.json").is_file() else None
    return Found(path.name, lambda: load(path), tokenizer, directory=path)


def _run_checkpoints(run: RunDir, all_checkpoints: bool) -> list[Found]:
    from twofold.train import checkpoint

    paths = run.checkpoints(tagged_only=True) if all_checkpoints else run.checkpoints()[-1:]
    if not paths:
        raise TwofoldError(f"{run.path}: no {'tagged ' if all_checkpoints else ''}checkpoints yet; "
                           "train longer or pass another run")
    found = []
    for path in paths:
        state = checkpoint.read_state(path)
        found.append(Found(run.path.name, lambda path=path: run.model(path=path), run.tokenizer(),
                           checkpoint=state.get("tag") or path.name, tokens=state["progress"].get("tokens"),
                           run=run, path=path))
    return found


def tokenizer_for(found: Found, override: str | Path | None) -> Tokenizer:
    source = override or found.tokenizer
    if source is None:
        raise TwofoldError(f"no tokenizer found for {found.name}; "
                           "pass --tokenizer DIR (a tokenizer.json or its folder)")
    return load_tokenizer(source)
