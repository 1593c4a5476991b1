"""Multi-process training under torchrun: detect the launch, join the process group, pick a device.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them the run is a single process.
The process group uses NCCL when each process has a GPU and gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from flexvid.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes checkpoints, logs and videos."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True when torchrun (or torch.distributed.run) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def choose_device(preference: str, local_rank: int) -> torch.device:
    """`auto`: this process's GPU when there is one, else the CPU."""
    if preference not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"Unknown device {preference!r}; choose auto, cpu or cuda.")
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no GPU is visible; use --device cpu.")
    index = local_rank % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def setup_distributed(device_preference: str = "auto") -> DistInfo:
    """Join the torchrun process group (when launched by it) and choose this process's device."""
    if not launched_by_torchrun():
        return DistInfo(0, 1, 0, choose_device(device_preference, 0))
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, device)


def cleanup_distributed() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every process (a no-op for a single process)."""
    if info.distributed:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum `tensor` over all processes, in place, and return it."""
    if info.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(value: Any, info: DistInfo) -> Any:
    """Rank 0's `value`, on every process."""
    if not info.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
