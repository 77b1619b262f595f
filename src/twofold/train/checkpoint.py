"""Atomic, complete, verified training checkpoints.

A checkpoint is a directory `ROOT/{step:09d}` or `ROOT/{step:09d}-{tag}` (the step first, so
names sort in training order without opening anything):

    model.safetensors      full (unsharded) weights by parameter name, tied ones stored once
    optimizer.safetensors  optimizer tensors, keyed `state/{parameter name}/{name}`
    rng.safetensors        torch (and CUDA) and numpy generator arrays
    state.json             the rest: step, tag, progress (schedule position), data-loader
                           state, optimizer scalars and param groups, python RNG, config,
                           recipe, twofold version
    checksums.json         sha256 of every file above, written last

States are taken and put back with `torch.distributed.checkpoint.state_dict` in their full
form, so a checkpoint written by one process, by DDP ranks or by FSDP2 shards is the same
file set and resumes under any of them.

A checkpoint is written into a temporary directory beside its final place, every file and
the directory fsynced, then renamed, so a crash leaves either the old set of checkpoints or
the new one. Nothing is pickled. Loading verifies the checksums first; `load_latest` falls back
past a corrupt or truncated checkpoint to the newest intact one, with a warning naming it.

Tags: a phase's checkpoints are `{prefix}{N}`, written by the step that closes the N-th
checkpoint interval of the phase (or ends the phase inside it): `step1` closes the first
8.5B tokens of Ettin's pretraining, and `step1` of a run at `--scale 1e-6` closes its first
8.5K, so a tag names the same point of a recipe at any scale.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from twofold._version import __version__
from twofold.errors import TwofoldError
from twofold.files import fsync_path, read_json, save_safetensors, sha256_file

FORMAT = 1
CHECKSUMS = "checksums.json"
_TEMP = ".tmp-"


class CorruptCheckpoint(TwofoldError):
    """A checkpoint whose files are missing, truncated or altered."""


class CheckpointWarning(UserWarning):
    """Resume had to skip a corrupt checkpoint."""


@dataclass(frozen=True)
class States:
    """Full CPU state dicts of a model and its optimizer, keyed by parameter names."""

    model: dict
    optimizer: dict | None = None
    tied: dict = field(default_factory=dict)  # parameter name -> the name it shares its tensor with


def capture(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> States:
    """The states to checkpoint. Under FSDP2 every rank calls it and rank 0 gets them whole."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    if optimizer is None:
        return States(get_model_state_dict(model, options=options), tied=_tied_parameters(model))
    return States(*get_state_dict(model, optimizer, options=options), tied=_tied_parameters(model))


def _tied_parameters(model: nn.Module) -> dict[str, str]:
    """Names that share a parameter with an earlier name. FSDP2's full state dict gathers each
    name into its own tensor, so tied weights are recognised here, on the model, not by storage."""
    first: dict[int, str] = {}
    tied = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        tied_to = first.setdefault(id(parameter), name)
        if tied_to != name:
            tied[name] = tied_to
    return tied


def restore(states: States, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
            where: str = "checkpoint") -> None:
    """Put full states back into a (possibly sharded) model and its optimizer; every rank calls it."""
    options = StateDictOptions(full_state_dict=True, strict=True)
    try:
        set_model_state_dict(model, states.model, options=options)
    except (RuntimeError, KeyError, ValueError) as error:
        raise TwofoldError(f"{where} does not fit the model ({' '.join(str(error).split())[:300]}); "
                           "check the recipe's model") from None
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, states.optimizer, options=options)


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
    states: States


def checkpoint_tag(prefix: str, tokens_before_step: int, every_tokens: int) -> str:
    """`{prefix}{N}`: N is the interval (1 = the first) in which the checkpointing step began.

    That step closes interval N (`before < N · every <= after`) or ends the phase inside it.
    """
    return f"{prefix}{tokens_before_step // every_tokens + 1}"


def save(root: str | Path, *, step: int, states: States, progress: dict, data: dict, config: dict,
         recipe: dict, tag: str | None = None, keep_last: int = 2) -> Path:
    """Write a checkpoint atomically, then keep the last `keep_last` plus every tagged one.

    `states` come from `capture`; only one process (rank 0) calls `save`.
    """
    root = Path(root)
    final = root / (f"{step:09d}-{tag}" if tag else f"{step:09d}")
    temp = root / f"{_TEMP}{final.name}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(root)
        temp.mkdir()
        weights, tied = _untie(states.model, states.tied)
        save_safetensors(weights, temp / "model.safetensors")
        opt_tensors, opt_rest = _split_optimizer(states.optimizer)
        save_safetensors(opt_tensors, temp / "optimizer.safetensors")
        rng_tensors, rng_rest = _rng_state()
        save_safetensors(rng_tensors, temp / "rng.safetensors")
        state = {"format": FORMAT, "version": __version__, "step": step, "tag": tag,
                 "progress": progress, "data": data, "config": config, "recipe": recipe,
                 "tied": tied, "optimizer": opt_rest, "rng": rng_rest}
        _write_text(temp / "state.json", json.dumps(state, indent=1, sort_keys=True))
        names = sorted(p.name for p in temp.iterdir())
        for name in names:
            if name != "state.json":  # the text files are fsynced as they are written
                fsync_path(temp / name)
        _write_text(temp / CHECKSUMS, json.dumps({n: sha256_file(temp / n) for n in names}, indent=1))
        fsync_path(temp)
        _replace(temp, final)
        fsync_path(root)
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


def tag_of(path: str | Path) -> str | None:
    """The tag of a checkpoint directory (`{step}-{tag}`), None if untagged."""
    return Path(path).name.partition("-")[2] or None


def find_tagged(root: str | Path, tag: str) -> Path:
    for path in list_checkpoints(root):
        if tag_of(path) == tag:
            return path
    tags = [tag_of(p) for p in list_checkpoints(root)]
    raise TwofoldError(f"no checkpoint tagged {tag!r} in {root}; tags: {', '.join(t for t in tags if t) or 'none'}")


def read_state(path: str | Path) -> dict:
    """A checkpoint's state.json (step, tag, progress …) without loading any tensor."""
    return read_json(Path(path) / "state.json", "the checkpoint is damaged; use another one")


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
        if sha256_file(path / name) != digest:
            raise CorruptCheckpoint(f"checkpoint {path}: {name} does not match its checksum (truncated or altered)")


def load(path: str | Path, model: nn.Module | None = None,
         optimizer: torch.optim.Optimizer | None = None, restore_rng: bool = True) -> Checkpoint:
    """Verify, then read; put the states into `model` / `optimizer` and the RNG states back."""
    path = Path(path)
    if not path.is_dir():
        raise TwofoldError(f"{path} is not a checkpoint directory")
    verify(path)
    state = json.loads((path / "state.json").read_text())
    if state.get("format") != FORMAT:
        raise TwofoldError(f"checkpoint {path} has format {state.get('format')}, this twofold reads {FORMAT}")
    weights = load_file(str(path / "model.safetensors"))
    for alias, name in state["tied"].items():
        weights[alias] = weights[name]
    states = States(weights, _join_optimizer(load_file(str(path / "optimizer.safetensors")), state["optimizer"]))
    if model is not None:
        restore(States(states.model, states.optimizer if optimizer is not None else None), model, optimizer,
                where=f"checkpoint {path}")
    if restore_rng:
        _set_rng_state(load_file(str(path / "rng.safetensors")), state["rng"])
    return Checkpoint(path=path, step=state["step"], tag=state["tag"], progress=state["progress"],
                      data=state["data"], config=state["config"], recipe=state["recipe"],
                      version=state["version"], states=states)


def newest_intact(root: str | Path, doing: str = "using") -> Path | None:
    """The newest checkpoint whose files match their checksums, skipping corrupt ones with a
    warning ("{doing} NAME instead: …"); None if there are none."""
    problems = []
    for path in reversed(list_checkpoints(root)):
        try:
            verify(path)
        except CorruptCheckpoint as problem:
            problems.append(str(problem))
            continue
        if problems:
            warnings.warn(f"{doing} {path.name} instead: {'; '.join(problems)}", CheckpointWarning, stacklevel=2)
        return path
    if problems:
        raise TwofoldError(f"no intact checkpoint in {root} ({'; '.join(problems)}); start the run afresh")
    return None


def load_latest(root: str | Path, model: nn.Module | None = None,
                optimizer: torch.optim.Optimizer | None = None, restore_rng: bool = True) -> Checkpoint | None:
    """`load` the newest intact checkpoint (see `newest_intact`); None if there are none."""
    path = newest_intact(root, doing="resuming from")
    return None if path is None else load(path, model, optimizer, restore_rng)


# ---------------------------------------------------------------- files


def _write_text(path: Path, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


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
        if path not in keep and not tag_of(path):  # tagged checkpoints stay forever
            shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- optimizer


def _untie(weights: dict, known: dict | None = None) -> tuple[dict, dict]:
    """Safetensors stores a tensor once: drop the `known` tied names and names that share
    storage with an earlier one."""
    kept, tied, seen = {}, {}, {}
    for name, tensor in weights.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if known and known.get(name) in weights:
            tied[name] = known[name]
        elif key in seen and tensor.numel():
            tied[name] = seen[key]
        else:
            seen[key] = name
            kept[name] = tensor.detach().contiguous()
    return kept, tied


def _split_optimizer(optimizer_state: dict | None) -> tuple[dict, dict]:
    """A full optimizer state dict as safetensors-ready tensors plus JSON for everything else."""
    if optimizer_state is None:
        return {}, {"state": {}, "param_groups": []}
    tensors, scalars = {}, {}
    for param, entry in optimizer_state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{param}/{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param), {})[name] = value
    return tensors, {"state": scalars, "param_groups": optimizer_state["param_groups"]}


def _join_optimizer(tensors: dict, rest: dict) -> dict:
    state: dict = {}
    for key, value in tensors.items():
        _, param, name = key.split("/")
        state.setdefault(param, {})[name] = value
    for param, entry in rest["state"].items():
        state.setdefault(param, {}).update(entry)
    return {"state": state, "param_groups": rest["param_groups"]}


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
