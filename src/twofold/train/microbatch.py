"""The micro-batch: how many sequences one forward pass takes, chosen to fit the memory at hand.

A step's batch is split into micro-batches whose gradients accumulate exactly (each piece's
summed loss over the global target count), so the micro-batch changes memory and speed, never
what is learnt. Published recipes take thousands of sequences a step (Ettin: 4,608 × 1,024),
far beyond one forward pass on a laptop or one GPU, so unless `--micro-batch` says otherwise
the trainer chooses:

- from an estimate of the memory a micro-batch needs (`activation_bytes`: the activations the
  backward pass keeps, model shape × tokens × precision, plus the vocabulary projection over
  the predicted rows) against the memory available (`available_memory`: MemAvailable and the
  cgroup limit on CPU, the free memory on a GPU; `TWOFOLD_MEMORY_BYTES` overrides), with a
  margin. On CPU this is all there is: the kernel kills a process that asks for too much
  rather than raising.
- On a GPU the estimate is only the start: a step that runs out of memory is undone and tried
  again with half the micro-batch (`halving`), as Composer's `device_train_microbatch_size:
  auto` and accelerate's `find_executable_batch_size` do, until one passes.

The choice is per phase (sequence lengths differ), logged with every step's metrics and kept
in the checkpoints, so a resumed run keeps it. An explicit `--micro-batch` that the estimate
says cannot fit is refused before anything is written, with the estimate.

The constants are measured on CPU (torch 2.13, ettin-17m and ettin-68m, fp32 and bf16 autocast,
MLM and CLM; peak resident memory of one forward + backward in the trainer's form,
`benchmarks/microbatch_memory.py`): 27 hidden-size floats per token and layer (3.3 bytes each
under bf16 autocast); predicted tokens cost little beyond one chunk of logits.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from twofold.errors import TwofoldError
from twofold.model import TwofoldModel
from twofold.model.loss import chunk_rows
from twofold.train.distributed import World
from twofold.train.recipe import Phase, parse_number

MEMORY_ENV = "TWOFOLD_MEMORY_BYTES"  # bytes this process may use for training; overrides the probe
MARGIN = 0.8  # plan for at most this share of the memory available
BODY_FLOATS = 28  # activations kept per token and layer, in units of hidden_size (measured 27)
HEAD_FLOATS = 8  # per predicted token, in units of hidden_size: the head's activations and stored gradient
LOGIT_COPIES = 3  # fp32 copies of one chunk of logits alive at once: logits, softmax, their gradient
STATE_COPIES = 4  # weights, gradients and two Adam moments, fp32
GiB = 2**30

T = TypeVar("T")


@dataclass(frozen=True)
class Memory:
    """Bytes available for training and where that number comes from."""

    bytes: int
    source: str


def activation_bytes(config, sequences: int, seq_len: int, target_share: float, bf16: bool) -> int:
    """Memory a forward + backward of `sequences` × `seq_len` tokens needs beyond the weights.

    `target_share`: the fraction of tokens predicted (the MLM mask rate, 1 for CLM); only those
    rows go through the head and the vocabulary projection, whose logits exist one chunk of rows
    at a time (`twofold.model.loss`). Under bf16 autocast the body's activations are a mix of
    bf16 and fp32 (norms), about 3.5 bytes each; the loss stays fp32.
    """
    tokens = sequences * seq_len
    targets = tokens * target_share
    body = tokens * config.num_hidden_layers * BODY_FLOATS * config.hidden_size * (3.5 if bf16 else 4)
    head = targets * HEAD_FLOATS * config.hidden_size * 4
    logits = LOGIT_COPIES * min(targets, chunk_rows(config.vocab_size)) * config.vocab_size * 4
    return int(body + head + logits)


def state_bytes(num_parameters: int) -> int:
    return STATE_COPIES * 4 * num_parameters


def parameter_count(config) -> int:
    """Parameters of a model of this shape (built on the meta device: no memory, no time)."""
    with torch.device("meta"):
        return TwofoldModel(config).num_parameters()


def available_memory(device: torch.device) -> Memory | None:
    """What this process may use: `TWOFOLD_MEMORY_BYTES`, else the GPU's free memory, else the
    least of /proc/meminfo's MemAvailable and the cgroup's limit less its usage (None when
    nothing can be read)."""
    knob = os.environ.get(MEMORY_ENV)
    if knob is not None:
        return Memory(_bytes_from_env(knob), MEMORY_ENV)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return Memory(int(free), f"free memory of {device}")
    found = [m for m in (_meminfo(), _cgroup_room()) if m is not None]
    return min(found, key=lambda m: m.bytes) if found else None


def _bytes_from_env(text: str) -> int:
    """24G, 512MiB, 8.5e9, 2_000_000_000 (binary units: G = 2**30)."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    stripped = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = units.get(stripped[-1:], 1)
    number = parse_number(stripped[:-1] if scale > 1 else stripped, suffixes=False)
    if number is None or number <= 0:
        raise TwofoldError(f"{MEMORY_ENV}={text!r} is not a memory size; give bytes, e.g. 8G or 8000000000")
    return int(number * scale)


def _meminfo(path: str = "/proc/meminfo") -> Memory | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return Memory(int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo")
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room(root: str = "/sys/fs/cgroup") -> Memory | None:
    """The cgroup's memory limit less what it uses (v2, then v1); None without a limit."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = (Path(root) / limit_file).read_text().strip()
            usage = int((Path(root) / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # "max" or v1's huge number: no limit
            return Memory(max(0, int(limit) - usage), f"the cgroup limit ({root}/{limit_file})")
    return None


def fitting_sequences(config, seq_len: int, target_share: float, bf16: bool, memory: Memory, limit: int) -> int:
    """The most sequences (up to `limit`) whose micro-batch fits `memory` with the margin; 0 if
    not even one does."""
    room = memory.bytes * MARGIN - state_bytes(parameter_count(config))
    one = activation_bytes(config, 1, seq_len, target_share, bf16)
    return max(0, min(limit, int(room // one)))


def too_big(config, sequences: int, seq_len: int, target_share: float, bf16: bool, memory: Memory,
            usable: float = 1.0) -> str | None:
    """Why `sequences` per forward pass cannot fit in `usable` × the memory (one clause with the
    estimate), or None. An explicit micro-batch gets all of it; a chosen one plans with the margin."""
    need = activation_bytes(config, sequences, seq_len, target_share, bf16) + state_bytes(parameter_count(config))
    if need <= memory.bytes * usable:
        return None
    usable_text = "" if usable == 1 else f"{usable:.0%} of "
    return (f"{sequences} sequence(s) of {seq_len} tokens per forward pass need about {need / GiB:.2f} GiB "
            f"(activations and optimizer state, estimated), more than {usable_text}the {memory.bytes / GiB:.2f} GiB "
            f"available ({memory.source})")


def target_share(phase: Phase, objective: str) -> float:
    """The share of a phase's tokens that are predicted: the mask rate (MLM) or all (CLM)."""
    return phase.mask_rate if objective == "mlm" else 1.0


def rank_share(phase: Phase, world: World) -> int:
    """The most sequences a rank gets in one step of the phase."""
    return -(-phase.batch_sequences // world.world_size)


def memory_for(world: World) -> Memory | None:
    """This process's memory: a GPU's own, or on CPU its share of what the machine's ranks split."""
    memory = available_memory(world.device)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if memory is None or world.device.type == "cuda" or local <= 1:
        return memory
    return Memory(memory.bytes // local, f"{memory.source}, split over {local} local ranks")


def choose(config, phase: Phase, objective: str, bf16: bool, world: World) -> tuple[int | None, str | None]:
    """The micro-batch of a phase (the same on every rank, as FSDP2 needs; None: the whole step
    in one pass, as it fits) and, when it splits the step, a line saying why."""
    share = rank_share(phase, world)
    memory = memory_for(world)
    if memory is None:
        return None, None
    target = target_share(phase, objective)
    chosen = fitting_sequences(config, phase.seq_len, target, bf16, memory, share)
    if chosen == 0:
        raise _no_room(phase, too_big(config, 1, phase.seq_len, target, bf16, memory, MARGIN))
    chosen = _least(chosen, world)
    if chosen >= share:
        return None, None
    each = activation_bytes(config, 1, phase.seq_len, target, bf16) / GiB
    return chosen, (f"phase {phase.name}: {chosen} of this rank's {share} sequences per forward pass (about "
                    f"{each:.2f} GiB each, estimated, against {memory.bytes / GiB:.1f} GiB available: "
                    f"{memory.source}); --micro-batch N overrides")


def check_fits(sequences: int | None, phases: tuple[Phase, ...], config, objective: str, bf16: bool,
               world: World) -> None:
    """Refuse, with the estimate, an explicit micro-batch that cannot fit, or (`sequences` None)
    phases where not even one sequence fits."""
    memory = memory_for(world)
    for phase in phases if memory is not None else ():
        why = too_big(config, min(sequences or 1, rank_share(phase, world)), phase.seq_len,
                      target_share(phase, objective), bf16, memory, 1.0 if sequences else MARGIN)
        if why and sequences is None:
            raise _no_room(phase, why)
        if why:
            raise TwofoldError(f"--micro-batch {sequences}: phase {phase.name}: {why}; give a smaller --micro-batch, "
                               "or none to have one chosen")


def _no_room(phase: Phase, why: str) -> TwofoldError:
    return TwofoldError(f"phase {phase.name}: {why}; use a machine with more memory, a smaller model or a shorter "
                        f"seq_len (--set phase.{phase.name}.seq_len=…)")


def _least(value: int, world: World) -> int:
    if not world.distributed:
        return value
    import torch.distributed as dist

    tensor = torch.tensor([value], device=world.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


def recovers(device: torch.device) -> bool:
    """Does running out of memory on this device raise (so a step can be retried)? A GPU does;
    on CPU the kernel's OOM killer ends the process instead."""
    return device.type == "cuda"


def halving(attempt: Callable[[int], T], sequences: int, undo: Callable[[int], None]) -> tuple[T, int]:
    """`attempt(sequences)`; on CUDA out-of-memory, `undo(half)` and try again with half as many.

    The retry happens outside the exception handler, so the failed attempt's tensors (which the
    traceback holds) are freed first. One sequence that still does not fit is a user error.
    """
    while True:
        try:
            return attempt(sequences), sequences
        except torch.cuda.OutOfMemoryError:
            if sequences <= 1:
                raise TwofoldError("one sequence per forward pass does not fit in GPU memory; use a smaller model, "
                                   "a shorter seq_len (--set phase.NAME.seq_len=…) or --precision bf16") from None
        sequences = max(1, sequences // 2)
        undo(sequences)
