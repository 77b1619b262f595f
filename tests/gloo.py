"""Code that every rank runs, run in several real processes that form a gloo group on the CPU.

The processes are spawned (not forked): each imports the function it runs by name, so it must be
defined at module level, and it imports the package the test process imported (under mutation
testing, mutmut's mutated copy)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp

from twofold.train.distributed import World


def on_ranks(function: Callable[[World], object], world_size: int, folder: Path) -> list:
    """`function(world)` on each of `world_size` ranks; what each returned (JSON), in rank order."""
    mp.spawn(_rank, args=(function, world_size, str(folder)), nprocs=world_size)
    return [json.loads((folder / f"rank{rank}.json").read_text()) for rank in range(world_size)]


def _rank(rank: int, function: Callable[[World], object], world_size: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world_size)
    try:
        returned = function(World(rank=rank, world_size=world_size))
    finally:
        dist.destroy_process_group()
    Path(folder, f"rank{rank}.json").write_text(json.dumps(returned))
