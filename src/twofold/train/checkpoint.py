"""Atomic, complete, verified training checkpoints.

A checkpoint is a directory `ROOT/{step:09d}` or `ROOT/{step:09d}-{tag}` (the step first, so
names sort in training order without opening anything):

    model.safetensors      full (unsharded) weights by parameter name, tied ones stored once
    optimizer.safetensors  optimizer tensors, keyed `state/{parameter name}/{name}`
    rng.safetensors        every rank's torch (and GPU) and numpy generator arrays,
                           keyed `rank{r}/{generator}`
    state.json             the rest: step, tag, progress (schedule position), data-loader
                           state, optimizer scalars and param groups, each rank's python
                           RNG, config, recipe, twofold version
    checksums.json         sha256 of every file above, written last

States are taken and put back with `torch.distributed.checkpoint.state_dict` in their full
form, so a checkpoint written by one process, by DDP ranks or by FSDP2 shards is the same
file set and resumes under any of them (on another number of ranks, the RNG streams follow
the policy of `twofold.train.rng`).

A checkpoint is written into a temporary directory beside its final place, every file and
the directory fsynced, then renamed, so a crash leaves either the old set of checkpoints or
the new one. Nothing is pickled. Loading verifies the checksums first; `load_latest` falls back
past a corrupt or truncated checkpoint to the newest intact one, with a warning naming it.

Tags: a phase's checkpoints are `{prefix}{N}` where N is the optimizer steps taken in the
phase when it was written, as the published Ettin checkpoints are named (`step599525`; their
later phases restart the count, `reset_time: true` in jhu-clsp/ettin-encoder-vs-decoder
pretraining/configs/standard/*/{de_decay,prolong_decay}/*.yaml). They are written by the step
that closes a `checkpoint_every_tokens` interval of the phase, and by its last step.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

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
from twofold.train import rng

FORMAT = 2  # 2: one RNG state per rank
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
    rng: list  # one `rng.Streams` per rank that wrote it, in rank order


def checkpoint_tag(prefix: str, phase_steps: int) -> str:
    """`{prefix}{N}`, N the optimizer steps taken in the phase (`step599525`, `decay4` …)."""
    return f"{prefix}{phase_steps}"


def save(root: str | Path, *, step: int, states: States, progress: dict, data: dict, config: dict,
         recipe: dict, tag: str | None = None, keep_last: int = 2, streams: list | None = None) -> Path:
    """Write a checkpoint atomically, then keep the last `keep_last` plus every tagged one.

    `states` come from `capture`, `streams` (every rank's RNG, `rng.gather`) default to this
    process's; only one process (rank 0) calls `save`.
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
        rng_tensors, rng_rest = _join_streams(streams or [rng.capture()])
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
    """Verify, then read; put the states into `model` / `optimizer` and, with `restore_rng`,
    rank 0's RNG streams into this process (the trainer restores each rank's own instead)."""
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
    streams = _split_streams(load_file(str(path / "rng.safetensors")), state["rng"])
    if restore_rng:
        rng.restore(streams[0])
    return Checkpoint(path=path, step=state["step"], tag=state["tag"], progress=state["progress"],
                      data=state["data"], config=state["config"], recipe=state["recipe"],
                      version=state["version"], states=states, rng=streams)


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


def _join_streams(streams: list) -> tuple[dict, dict]:
    """Per-rank `rng.Streams` -> one tensor dict keyed `rank{r}/{name}` plus JSON per rank."""
    tensors = {f"rank{r}/{name}": t.cpu().contiguous() for r, (ts, _) in enumerate(streams) for name, t in ts.items()}
    return tensors, {"ranks": [rest for _, rest in streams]}


def _split_streams(tensors: dict, rest: dict) -> list:
    ranks: list[dict] = [{} for _ in rest["ranks"]]
    for key, tensor in tensors.items():
        rank, _, name = key.partition("/")
        ranks[int(rank.removeprefix("rank"))][name] = tensor
    return list(zip(ranks, rest["ranks"]))
