"""The training data stream: an endless, sharded, exactly resumable sequence of FDM training batches.

Every training example has a global number g = step * global_batch + row. Everything about example
g (which video, which task, which padding frames, and the rng its videos' random windows are drawn
from) is a pure function of `(seed, g)`, seeded with flexvid.seeding. Hence:

- sharding: process `rank` of `world_size` takes rows [rank * B, (rank + 1) * B) of each global batch
  (B = global_batch / world_size), so the processes together see exactly the batch one process
  would, and within an epoch no two processes share a video (like DistributedSampler);
- resume: `make_train_loader(..., start_step=s)` yields, from its first batch, exactly the batches
  an uninterrupted run yields from step s on, on any number of processes;
- workers: results do not depend on `num_workers` or on which worker loads what.

Video order: a finite dataset is walked in a fresh permutation each epoch (epoch = g // len);
an `infinite` (generated) dataset gets video 2g for example g and never repeats. Padding frames
come from a second video (2g + 1, or a random other video of a finite dataset), used only when
the task leaves slots free.

Loading: the task is drawn on the T-frame clip first, then only its frames (and the padding
frames) are loaded with `VideoDataset.clip`, which draws the same random window from the example's
window rng as `VideoDataset.item` (the whole clip) would; an example thus equals one built from whole
clips, at a fraction of the cost.
"""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from flexvid.data.base import VideoDataset
from flexvid.data.tasks import (
    TASK_DISTRIBUTIONS,
    assemble_example,
    check_observed_share,
    check_task_sizes,
    draw_padding,
    sample_task,
    task_frames,
)
from flexvid.errors import ConfigError, DatasetError
from flexvid.frame_batch import FrameBatch
from flexvid.seeding import Stream, numpy_rng

_PR_SET_PDEATHSIG = 1  # prctl option: the signal this process gets when its parent dies


class TrainingExamples(Dataset):
    """Example number g -> one training example (a one-row FrameBatch and its number), fixed by (seed, g)."""

    def __init__(
        self,
        dataset: VideoDataset,
        max_frames: int,
        *,
        distribution: str = "fdm",
        seed: int = 0,
        pad_with_random_frames: bool = True,
        observed_share: float | None = None,
    ) -> None:
        if distribution not in TASK_DISTRIBUTIONS:
            raise ConfigError(
                f"Unknown task distribution {distribution!r}; choose one of {', '.join(TASK_DISTRIBUTIONS)}."
            )
        if len(dataset) < 1:
            raise DatasetError(f"The {dataset.split} split of dataset {dataset.name!r} holds no videos.")
        check_task_sizes(dataset.T, max_frames)
        check_observed_share(observed_share)
        self.observed_share = observed_share
        self.dataset, self.max_frames, self.distribution = dataset, max_frames, distribution
        self.seed, self.pad_with_random_frames = seed, pad_with_random_frames
        self._permutation: tuple[int, np.ndarray] | None = None  # (epoch, order) cache

    def video_index(self, example: int) -> int:
        """Which video example `example` is made from."""
        if getattr(self.dataset, "infinite", False):
            return 2 * example
        epoch, position = divmod(example, len(self.dataset))
        if self._permutation is None or self._permutation[0] != epoch:
            order = numpy_rng(Stream.DATA_ORDER, self.seed, epoch).permutation(len(self.dataset))
            self._permutation = (epoch, order)
        return int(self._permutation[1][position])

    def pad_video_index(self, example: int, rng: np.random.Generator) -> int:
        """The video whose frames pad example `example`: a different one than its own where possible."""
        if getattr(self.dataset, "infinite", False):
            return 2 * example + 1
        own, count = self.video_index(example), len(self.dataset)
        if count == 1:
            return own
        other = int(rng.integers(count - 1))
        return other + (other >= own)

    def __getitem__(self, example: int) -> dict[str, Any]:
        example = int(example)
        rng = self.example_rng(example)
        T, K = self.dataset.T, self.max_frames
        task = sample_task(T, K, self.distribution, rng, self.observed_share)
        chosen = task_frames(task, K)
        own_video, num_pad = self.video_index(example), K - len(chosen)
        if self.pad_with_random_frames and num_pad > 0:
            pad_video = self.pad_video_index(example, rng)
            padding = draw_padding(num_pad, T, rng)
            frames = torch.cat([self._load(own_video, example, 0, chosen), self._load(pad_video, example, 1, padding)])
        else:
            padding = draw_padding(num_pad, T, rng)
            frames = self._load(own_video, example, 0, np.concatenate([chosen, padding]))
        example_id = torch.tensor(example, dtype=torch.int64)
        return {"frames": assemble_example(frames, task, padding), "example_id": example_id}

    def example_rng(self, example: int) -> np.random.Generator:
        """The rng that draws example `example`'s task and padding frames."""
        return numpy_rng(Stream.EXAMPLE, self.seed, example)

    def window_rng(self, example: int, which: int) -> np.random.Generator:
        """The rng that draws the random window of example `example`'s own video (`which` 0) or padding video (1)."""
        return numpy_rng(Stream.WINDOW, self.seed, example, which)

    def _load(self, index: int, example: int, which: int, positions: np.ndarray) -> torch.Tensor:
        """Frames `positions` of video `index`, its random window drawn from `window_rng(example, which)`."""
        frames, _info = self.dataset.clip(index, positions, self.window_rng(example, which))
        if frames.ndim != 4 or frames.shape[0] != len(positions):
            raise DatasetError(
                f"Dataset {self.dataset.name!r} returned frames of shape {tuple(frames.shape)} for "
                f"{len(positions)} chosen frames; expected ({len(positions)}, C, H, W)."
            )
        return frames


class StepBatchSampler(Sampler[list[int]]):
    """Endless batches of example numbers: this process's share of each global batch, from `start_step` on."""

    def __init__(self, global_batch_size: int, *, rank: int = 0, world_size: int = 1, start_step: int = 0) -> None:
        self.batch_size = per_process_batch(global_batch_size, world_size)
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is outside 0..{world_size - 1}.")
        if start_step < 0:
            raise ConfigError(f"start_step must be 0 or more, got {start_step}.")
        self.global_batch_size, self.rank, self.start_step = global_batch_size, rank, start_step

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            first = step * self.global_batch_size + self.rank * self.batch_size
            yield list(range(first, first + self.batch_size))
            step += 1


def collate_examples(examples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack examples into the trainer's batch: `frames` (one FrameBatch) and `example_id` (B,)."""
    return {
        "frames": FrameBatch.cat([e["frames"] for e in examples]),
        "example_id": torch.stack([e["example_id"] for e in examples]),
    }


def make_train_loader(
    dataset: VideoDataset,
    *,
    global_batch_size: int,
    max_frames: int,
    distribution: str = "fdm",
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    start_step: int = 0,
    num_workers: int = 0,
    pad_with_random_frames: bool = True,
    observed_share: float | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """An endless DataLoader of this process's training batches (see the module docstring).

    Each batch is a dict with `frames`, a FrameBatch of B rows (masks float32), and `example_id` (B,)
    int64, where B = global_batch_size / world_size. To resume at step s, pass `start_step=s`: the
    stream continues exactly. `example_id` is a per-example number the trainer may use to seed
    per-example noise.
    """
    examples = TrainingExamples(
        dataset,
        max_frames,
        distribution=distribution,
        seed=seed,
        pad_with_random_frames=pad_with_random_frames,
        observed_share=observed_share,
    )
    sampler = StepBatchSampler(global_batch_size, rank=rank, world_size=world_size, start_step=start_step)
    return DataLoader(
        examples,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_examples,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        worker_init_fn=_init_worker,
    )


def per_process_batch(global_batch_size: int, world_size: int) -> int:
    """The batch each process loads: the global batch split evenly over the processes."""
    if global_batch_size < 1 or world_size < 1:
        raise ConfigError(f"batch size and world size must be positive, got {global_batch_size} and {world_size}.")
    if global_batch_size % world_size:
        raise ConfigError(
            f"batch_size {global_batch_size} (the global batch) is not divisible by the {world_size} "
            f"processes; use a multiple of {world_size}."
        )
    return global_batch_size // world_size


def shutdown_workers(batches: Iterator[Any]) -> None:
    """Stop the worker processes behind a DataLoader iterator now, killing any that do not stop.

    Workers ignore SIGTERM (see `_init_worker`), and Python's exit stops them with SIGTERM and then
    waits: an iterator still alive at exit (one held by a traceback, say) would hang the process
    forever. The trainer therefore shuts its workers down itself on every way out of the loop.
    """
    workers = list(getattr(batches, "_workers", []))
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
    for worker in workers:
        if worker.is_alive():
            worker.kill()
            worker.join()


def _die_with_parent() -> None:
    """Have Linux SIGKILL this process when its parent dies, so no worker outlives a killed trainer."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _init_worker(_worker_id: int) -> None:
    """One torch thread per loader worker (the workers already run in parallel), and no reaction to
    SIGTERM/SIGINT: a preempted job signals the whole process group, and the main process must
    outlive its workers long enough to save a checkpoint. The worker dies with its parent."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
