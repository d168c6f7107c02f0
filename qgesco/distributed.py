"""One process or one rank of a ``torchrun`` job: the process group that training and evaluation share."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> DistEnv:
    """Single process, or one rank of a ``torchrun`` job (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if world == 1:
        return DistEnv(0, 1, torch.device("cuda" if use_cuda else "cpu") if device == "auto" else torch.device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    dev = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    return DistEnv(dist.get_rank(), dist.get_world_size(), dev)


@contextlib.contextmanager
def closing_process_group() -> Iterator[None]:
    """Close on the way out a process group opened inside: left to interpreter exit, gloo's
    teardown can abort a rank whose peer has gone. A group the caller opened stays open."""
    was_distributed = dist.is_available() and dist.is_initialized()
    try:
        yield
    finally:
        if dist.is_available() and dist.is_initialized() and not was_distributed:
            dist.destroy_process_group()
