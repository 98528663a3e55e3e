"""Data-parallel set-up under torchrun, and the same code path without it.

``torchrun --nproc_per_node N script.py`` sets RANK, LOCAL_RANK and WORLD_SIZE; a plain
``python script.py`` sets none and runs as a world of one with no process group.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class World:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_world(device: str) -> World:
    """Join the torchrun process group if there is one (NCCL on CUDA, gloo on CPU) and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
        torch_device = torch.device("cuda", local_rank if world_size > 1 else torch.device(device).index or 0)
        torch.cuda.set_device(torch_device)
    elif device == "cpu":
        torch_device = torch.device("cpu")
    else:
        raise ValueError(f"unknown device {device!r}; valid: cpu, cuda, cuda:N")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch_device.type == "cuda" else "gloo")
    return World(rank=rank, world_size=world_size, device=torch_device)


def close_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        if sys.exc_info()[1] is None:  # a clean exit: no rank tears down connections another still uses
            dist.barrier()  # (while an error propagates the others may sit in another collective: no barrier)
        dist.destroy_process_group()
