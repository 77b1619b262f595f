"""Atomic, complete, verified training checkpoints.

A checkpoint is a directory `ROOT/{step:09d}` or `ROOT/{step:09d}-{tag}` (the step first, so
names sort in training order without opening anything):

    model.safetensors      weights (tied weights stored once)
    optimizer.safetensors  optimizer tensors, keyed `state.{param index}.{name}`
    rng.safetensors        torch (and CUDA) and numpy generator arrays
    state.json             the rest: step, tag, progress (schedule position), data-loader
                           state, optimizer scalars and param groups, python RNG, config,
                           recipe, twofold version
    checksums.json         sha256 of every file above, written last

It is written into a temporary directory beside its final place, every file and the
directory fsynced, then renamed, so a crash leaves either the old set of checkpoints or the
new one. Nothing is pickled. Loading verifies the checksums first; `load_latest` falls back
past a corrupt or truncated checkpoint to the newest intact one, with a warning naming it.

Tags: a phase's checkpoints are `{prefix}{N}`, written by the step that closes the N-th
checkpoint interval of the phase (or ends the phase inside it): `step1` closes the first
8.5B tokens of Ettin's pretraining, and `step1` of a run at `--scale 1e-6` closes its first
8.5K, so a tag names the same point of a recipe at any scale.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from twofold import __version__
from twofold.errors import TwofoldError

FORMAT = 1
CHECKSUMS = "checksums.json"
_TEMP = ".tmp-"


class CorruptCheckpoint(TwofoldError):
    """A checkpoint whose files are missing, truncated or altered."""


class CheckpointWarning(UserWarning):
    """Resume had to skip a corrupt checkpoint."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    tag: str | None
    progress: dict  # where the schedule stands: phase, tokens seen …
    data: dict  # the data loader's resumable state
    config: dict
    recipe: dict
    version: str


def checkpoint_tag(prefix: str, tokens_before_step: int, every_tokens: int) -> str:
    """`{prefix}{N}`: N is the interval (1 = the first) in which the checkpointing step began.

    That step closes interval N (`before < N · every <= after`) or ends the phase inside it.
    """
    return f"{prefix}{tokens_before_step // every_tokens + 1}"


def save(root: str | Path, *, step: int, model: nn.Module, optimizer: torch.optim.Optimizer | None,
         progress: dict, data: dict, config: dict, recipe: dict, tag: str | None = None,
         keep_last: int = 2) -> Path:
    """Write a checkpoint atomically, then keep the last `keep_last` plus every tagged one."""
    root = Path(root)
    final = root / (f"{step:09d}-{tag}" if tag else f"{step:09d}")
    temp = root / f"{_TEMP}{final.name}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(root)
        temp.mkdir()
        save_model(model, str(temp / "model.safetensors"))
        opt_tensors, opt_rest = _split_optimizer(optimizer)
        save_file(opt_tensors, str(temp / "optimizer.safetensors"))
        rng_tensors, rng_rest = _rng_state()
        save_file(rng_tensors, str(temp / "rng.safetensors"))
        state = {"format": FORMAT, "version": __version__, "step": step, "tag": tag,
                 "progress": progress, "data": data, "config": config, "recipe": recipe,
                 "optimizer": opt_rest, "rng": rng_rest}
        _write_text(temp / "state.json", json.dumps(state, indent=1, sort_keys=True))
        names = sorted(p.name for p in temp.iterdir())
        for name in names:
            if name != "state.json":  # the text files are fsynced as they are written
                _fsync(temp / name)
        _write_text(temp / CHECKSUMS, json.dumps({n: _sha256(temp / n) for n in names}, indent=1))
        _fsync(temp)
        _replace(temp, final)
        _fsync(root)
    except OSError as error:
        shutil.rmtree(temp, ignore_errors=True)
        previous = [p.name for p in list_checkpoints(root) if p != final]
        kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
        reason = "disk full" if error.errno == errno.ENOSPC else (error.strerror or str(error))
        raise TwofoldError(f"could not write checkpoint {final}: {reason}; {kept}; "
                           f"free space in {root} and resume") from None
    _retain(root, keep_last)
    return final


def list_checkpoints(root: str | Path) -> list[Path]:
    """Completed checkpoint directories under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name[:9].isdigit())


def find_tagged(root: str | Path, tag: str) -> Path:
    for path in list_checkpoints(root):
        if path.name.partition("-")[2] == tag:
            return path
    tags = [p.name.partition("-")[2] for p in list_checkpoints(root)]
    raise TwofoldError(f"no checkpoint tagged {tag!r} in {root}; tags: {', '.join(t for t in tags if t) or 'none'}")


def verify(path: str | Path) -> None:
    """Raise `CorruptCheckpoint` unless every file matches `checksums.json`."""
    path = Path(path)
    try:
        expected = json.loads((path / CHECKSUMS).read_text())
    except (OSError, ValueError):
        raise CorruptCheckpoint(f"checkpoint {path} has no readable {CHECKSUMS}") from None
    present = sorted(p.name for p in path.iterdir() if p.name != CHECKSUMS)
    if not isinstance(expected, dict) or sorted(expected) != present:
        raise CorruptCheckpoint(f"checkpoint {path} holds files {present}, expected {sorted(expected)}")
    for name, digest in expected.items():
        if _sha256(path / name) != digest:
            raise CorruptCheckpoint(f"checkpoint {path}: {name} does not match its checksum (truncated or altered)")


def load(path: str | Path, model: nn.Module | None = None,
         optimizer: torch.optim.Optimizer | None = None, restore_rng: bool = True) -> Checkpoint:
    """Verify, then load weights into `model`, state into `optimizer`, and the RNG states."""
    path = Path(path)
    if not path.is_dir():
        raise TwofoldError(f"{path} is not a checkpoint directory")
    verify(path)
    state = json.loads((path / "state.json").read_text())
    if state.get("format") != FORMAT:
        raise TwofoldError(f"checkpoint {path} has format {state.get('format')}, this twofold reads {FORMAT}")
    if model is not None:
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False)
        if missing or unexpected:
            raise TwofoldError(f"checkpoint {path} does not fit the model: missing {sorted(missing)[:5]}, "
                               f"unexpected {sorted(unexpected)[:5]}; check the recipe's model")
    if optimizer is not None:
        _load_optimizer(optimizer, load_file(str(path / "optimizer.safetensors")), state["optimizer"])
    if restore_rng:
        _set_rng_state(load_file(str(path / "rng.safetensors")), state["rng"])
    return Checkpoint(path=path, step=state["step"], tag=state["tag"], progress=state["progress"],
                      data=state["data"], config=state["config"], recipe=state["recipe"],
                      version=state["version"])


def load_latest(root: str | Path, model: nn.Module | None = None,
                optimizer: torch.optim.Optimizer | None = None, restore_rng: bool = True) -> Checkpoint | None:
    """The newest intact checkpoint, skipping corrupt ones with a warning; None if there are none."""
    problems = []
    for path in reversed(list_checkpoints(root)):
        try:
            verify(path)
        except CorruptCheckpoint as problem:
            problems.append(str(problem))
            continue
        if problems:
            warnings.warn(f"resuming from {path.name} instead: {'; '.join(problems)}",
                          CheckpointWarning, stacklevel=2)
        return load(path, model, optimizer, restore_rng)
    if problems:
        raise TwofoldError(f"no intact checkpoint in {root} ({'; '.join(problems)}); start the run afresh")
    return None


# ---------------------------------------------------------------- files


def _write_text(path: Path, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _replace(temp: Path, final: Path) -> None:
    """Rename into place; an existing checkpoint of the same name is moved aside first."""
    if final.exists():
        old = final.with_name(f"{_TEMP}old-{final.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        os.rename(temp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(temp, final)


def _remove_stale_temps(root: Path) -> None:
    for path in root.glob(f"{_TEMP}*"):
        shutil.rmtree(path, ignore_errors=True)


def _retain(root: Path, keep_last: int) -> None:
    paths = list_checkpoints(root)
    keep = set(paths[-max(1, keep_last):])
    for path in paths:
        if path not in keep and "-" not in path.name:  # tagged checkpoints stay forever
            shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- optimizer


def _split_optimizer(optimizer: torch.optim.Optimizer | None) -> tuple[dict, dict]:
    """`optimizer.state_dict()` as safetensors-ready tensors plus JSON for everything else."""
    if optimizer is None:
        return {}, {"state": {}, "param_groups": []}
    full = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entry in full["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"state": scalars, "param_groups": full["param_groups"]}


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, rest: dict) -> None:
    state: dict = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, entry in rest["state"].items():
        state.setdefault(int(index), {}).update(entry)
    groups = []
    for saved, current in zip(rest["param_groups"], optimizer.param_groups):
        # JSON turned tuples (betas) into lists; give them back their type.
        groups.append({k: tuple(v) if isinstance(current.get(k), tuple) else v for k, v in saved.items()})
    if len(groups) != len(optimizer.param_groups):
        raise TwofoldError(f"checkpoint optimizer has {len(rest['param_groups'])} parameter groups, "
                           f"this run {len(optimizer.param_groups)}; the model or optimizer changed")
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ---------------------------------------------------------------- RNG


def _rng_state() -> tuple[dict, dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for device, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{device}"] = state
    kind, keys, position, has_gauss, cached = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss_next = random.getstate()
    rest = {"numpy": [kind, int(position), int(has_gauss), float(cached)],
            "python": [version, list(internal), gauss_next]}
    return tensors, rest


def _set_rng_state(tensors: dict, rest: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors)) if f"cuda.{i}" in tensors]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, position, has_gauss, cached = rest["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss_next = rest["python"]
    random.setstate((version, tuple(internal), gauss_next))
