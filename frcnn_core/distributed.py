"""One command across processes under `torchrun`: the process group, each process's share of a
dataset, and the results gathered on rank 0 in the dataset's order.

Without torchrun (WORLD_SIZE unset or 1) everything here is a no-op for rank 0 of 1, and torch's
distributed package is never touched. Under torchrun: NCCL on GPUs, gloo on CPUs; gathered
results travel through a gloo group, so plain Python objects never pass through GPU memory.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import torch

Item = TypeVar("Item")


def process_group() -> tuple[int, int]:
    """(rank, world size), initialising the default process group once under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def process_device(device: torch.device) -> torch.device:
    """Under torchrun, "cuda" without an index becomes this process's own GPU (cuda:LOCAL_RANK)."""
    import torch

    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
    return device


def share(count: int, rank: int, world: int) -> range:
    """The dataset indices process `rank` of `world` takes: every world-th one from its rank."""
    return range(rank, count, world)


def gather_shares(items: list[Item], rank: int, world: int) -> list[Item] | None:
    """Every process's `items` (one per index of its `share`) -> on rank 0 all of them in index
    order, None on the others. Every process must call it."""
    if world == 1:
        return list(items)
    import torch.distributed as dist

    group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    gathered: list[list[Item]] | None = [[] for _ in range(world)] if rank == 0 else None
    dist.gather_object(items, gathered, dst=0, group=group)
    if rank != 0:
        return None
    count = sum(len(part) for part in gathered)
    return [gathered[index % world][index // world] for index in range(count)]
