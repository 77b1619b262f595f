"""The random streams of a training run: one per rank, seeded per phase, saved and restored per rank.

During training only dropout draws from torch's generators (the data order and the MLM masks
come from the data layer's own seeded numpy generators). Every rank gets its own stream, so
ranks drop different units, and each phase starts every rank's stream afresh from
(seed, phase index, rank): a phase's draws never depend on how the earlier phases ran.

A checkpoint holds the stream of every rank (`gather`), and a resume on the same number of
ranks puts each rank's own stream back (`restore`), so dropout repeats exactly. A resume on
another number of ranks cannot split or merge streams; `streams_for_resume` says what happens:

- the checkpoint ends a phase: nothing to restore (the next phase seeds itself anew);
- no dropout: the streams are never drawn from, so fresh ones change nothing;
- dropout and `reseed`: fresh streams from (seed, phase, rank, step), not the draws an
  uninterrupted run would have made (say so, then go on);
- dropout otherwise: refused with one line (`TwofoldError`) before anything is written.
"""

from __future__ import annotations

import random
import sys

import numpy as np
import torch
import torch.distributed as dist

from twofold.errors import TwofoldError

# One rank's streams: tensors (safetensors-ready) and the rest (JSON-ready).
Streams = tuple[dict[str, torch.Tensor], dict]


def seed_streams(seed: int, phase_index: int, rank: int, step: int = 0) -> None:
    """Seed torch (CPU and every GPU), numpy and python from (seed, phase, rank, step)."""
    state = np.random.SeedSequence([seed, phase_index, rank, step]).generate_state(2)
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))
    np.random.seed(state)
    random.seed(int(state[0]))


def capture(device: torch.device | None = None) -> Streams:
    """This process's streams: torch CPU, the GPU of `device` (if one), numpy, python."""
    tensors = {"torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        tensors["cuda"] = torch.cuda.get_rng_state(device)
    kind, keys, position, has_gauss, cached = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss_next = random.getstate()
    rest = {"numpy": [kind, int(position), int(has_gauss), float(cached)],
            "python": [version, list(internal), gauss_next]}
    return tensors, rest


def restore(streams: Streams, device: torch.device | None = None) -> None:
    tensors, rest = streams
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["cuda"], device)
    kind, position, has_gauss, cached = rest["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss_next = rest["python"]
    random.setstate((version, tuple(internal), gauss_next))


def gather(world) -> list[Streams] | None:
    """Every rank's streams, in rank order, on rank 0 (None elsewhere); every rank calls it."""
    mine = capture(world.device)
    if not world.distributed:
        return [mine]
    cpu = ({name: tensor.cpu() for name, tensor in mine[0].items()}, mine[1])
    gathered: list | None = [None] * world.world_size if world.main else None
    dist.gather_object(cpu, gathered, dst=0)
    return gathered


def streams_for_resume(saved: list[Streams], world, *, seed: int, phase_index: int, step: int,
                       phase_done: bool, dropout: bool, reseed: bool, where: str) -> None:
    """Put this rank's streams back after a resume, by the policy in the module docstring."""
    if reseed and (len(saved) == world.world_size or phase_done or not dropout):
        why = ("it resumes on the same number of ranks" if len(saved) == world.world_size else
               "its phase is complete" if phase_done else "the model has no dropout")
        raise TwofoldError(f"--reseed-rng: {where} needs no fresh random streams ({why}), so the flag would change "
                           "nothing; resume without it")
    if len(saved) == world.world_size:
        restore(saved[world.rank], world.device)
        return
    if not phase_done and dropout and not reseed:
        raise TwofoldError(
            f"{where} was written by {len(saved)} rank(s) with dropout on, and its per-rank random streams "
            f"cannot be split over {world.world_size}; resume with {len(saved)} process(es) "
            f"(torchrun --nproc_per_node {len(saved)}), or add --reseed-rng to go on with fresh streams "
            "(the run then differs from an uninterrupted one)")
    if not phase_done and dropout and world.main:
        print(f"twofold: warning: {where}: {len(saved)} rank(s) wrote it, {world.world_size} resume it; dropout "
              "continues with fresh per-rank streams (--reseed-rng)", file=sys.stderr)
    seed_streams(seed, phase_index, world.rank, step)
