"""Data parallelism with PyTorch's own engine: torchrun sets the environment, we join it.

    torchrun --nproc_per_node 4 -m twofold train …             # one node
    torchrun --nnodes 2 --node_rank R --rdzv_backend c10d \\
             --rdzv_endpoint HOST:29500 --nproc_per_node 8 -m twofold train …   # several nodes

Every rank reads its slice of each global batch (the data loader's `rank_slice`); gradients
are averaged by DDP, or the model is sharded with FSDP2's `fully_shard`. Rank 0 alone writes
checkpoints, metrics and progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from twofold.errors import TwofoldError

PARALLEL = ("ddp", "fsdp")


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def join(device: str | None = None) -> World:
    """The process group torchrun describes in the environment (a world of 1 without it)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except RuntimeError:
        raise TwofoldError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TwofoldError(f"--device {device} asked for a GPU but torch sees none; use --device cpu")
    if device.type == "cuda":
        if device.index is None:  # plain "cuda": this rank's own GPU (set_device needs an index)
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():  # under torchrun, even for one rank
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return World(rank, world_size, local_rank, device)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, world: World, parallel: str) -> nn.Module:
    """DDP around `model` when there are several ranks; FSDP2 whenever torchrun started us
    (one rank included, to measure its cost); the model itself otherwise."""
    if parallel not in PARALLEL:
        raise TwofoldError(f"parallel {parallel!r} is unknown; use one of {', '.join(PARALLEL)}")
    sharded = parallel == "fsdp" and dist.is_initialized()
    if not sharded and not (parallel == "ddp" and world.distributed):
        return model
    if parallel == "ddp":
        ids = [world.device.index] if world.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.fsdp import fully_shard

    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    return model


def sum_across(value: torch.Tensor, world: World) -> torch.Tensor:
    if world.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
