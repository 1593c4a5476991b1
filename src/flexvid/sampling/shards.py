"""Sampling under torchrun: the videos to make dealt to the processes in whole batches, and the waits between them.

Each batch is exactly a batch one process would make, so N processes write the same files as one.
The processes talk over a gloo group of their own with a long timeout: a process that finishes its
batches early waits for the others, which may take hours, not the default group's 30 minutes.
"""

from __future__ import annotations

from datetime import timedelta
from types import TracebackType
from typing import Any

import torch.distributed as dist

from flexvid.training.distributed import DistInfo

WAIT_TIMEOUT = timedelta(days=7)  # the longest one process waits for the others


def deal_batches(todo: list[int], batch_size: int, rank: int, world_size: int) -> list[list[int]]:
    """Process `rank`'s batches: `todo` cut into batches of `batch_size`, dealt round-robin."""
    batches = [todo[start : start + batch_size] for start in range(0, len(todo), batch_size)]
    return batches[rank::world_size]


class ProcessGroup:
    """The sampling processes of one job (a single process needs no group): broadcast, share, wait."""

    def __init__(self, info: DistInfo) -> None:
        self.info = info
        self.group = None

    def __enter__(self) -> ProcessGroup:
        if self.info.distributed:
            self.group = dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.group is not None:
            dist.destroy_process_group(self.group)

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value`, on every process."""
        if self.group is None:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0, group=self.group)
        return holder[0]

    def share(self, todo: list[int], batch_size: int) -> list[list[int]]:
        """This process's batches of `todo`."""
        return deal_batches(todo, batch_size, self.info.rank, self.info.world_size)

    def wait(self) -> None:
        """Return once every process got here."""
        if self.group is not None:
            dist.barrier(group=self.group)
