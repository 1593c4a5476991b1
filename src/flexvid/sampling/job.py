"""The `flexvid sample` job: complete test videos (or sample unconditional ones) with a scheme,
writing `samples/sample_NNNN-K.npy` files (flexvid.eval_layout) that an interrupted job skips when run again.

The folder's settings.json records the identity of its videos (flexvid.sampling.identity); a run
with other settings is refused rather than mixed in. Under torchrun the videos are split across the
processes in whole batches, so each is made exactly as one process makes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from flexvid.checkpoint import Pretrained, load_pretrained
from flexvid.data.base import build_dataset
from flexvid.errors import ConfigError, DatasetError
from flexvid.eval_layout import partial_samples, sample_path, samples_dir, settings_path
from flexvid.files import atomic_write_json, exclusive_lock
from flexvid.sampling.generate import VideoGenerator, observed_count
from flexvid.sampling.identity import (
    IDENTITY_KEY,
    check_same_identity,
    checkpoint_fingerprint,
    default_eval_dir,
    generation_identity,
)
from flexvid.sampling.outputs import NpyStreamWriter
from flexvid.sampling.settings import SampleSettings, check_settings
from flexvid.sampling.shards import ProcessGroup
from flexvid.training.distributed import DistInfo
from flexvid.video_io import to_uint8


def check_writable(directory: Path) -> None:
    """Fail early, in one sentence, when outputs cannot be written to `directory`."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"Cannot create the output directory {directory}: {err.strerror}; choose another --eval_dir."
        ) from None
    if not os.access(directory, os.W_OK):
        raise ConfigError(f"The output directory {directory} is not writable; choose another --eval_dir.")


class SampleJob:
    """Resolves settings against the checkpoint, then generates the missing sample files (this
    process's share of them under torchrun: give `dist`)."""

    def __init__(
        self, settings: SampleSettings, pretrained: Pretrained | None = None, dist: DistInfo | None = None
    ) -> None:
        check_settings(settings)
        self.pretrained = pretrained or load_pretrained(settings.checkpoint, device=settings.device)
        self.dist = dist or DistInfo(0, 1, 0, torch.device(settings.device))
        data = self.pretrained.config.data
        n_obs = observed_count(settings, self.pretrained.config)
        self.dataset_name = data.dataset
        self.data_dir = settings.data_dir or data.data_dir
        self.dataset = None
        if n_obs > 0:
            self.dataset = self._test_dataset(data.T)
            if n_obs > self.dataset.T:
                raise ConfigError(
                    f"n_obs ({n_obs}) is more than the {self.dataset.T} frames of each test video; "
                    f"observe at most {self.dataset.T} frames."
                )
        self.generator = VideoGenerator(
            self.pretrained,
            dataclasses.replace(settings, n_obs=n_obs),
            train_T=self.dataset.T if self.dataset is not None else None,
        )
        self.settings = self.generator.settings
        self.T = self.generator.T
        self.identity = generation_identity(
            self.generator, checkpoint_fingerprint(self.pretrained), self.dataset_name, self.data_dir
        )
        self.eval_dir = (
            Path(settings.eval_dir) if settings.eval_dir else default_eval_dir(settings.checkpoint, self.identity)
        )

    def _test_dataset(self, train_T: int | None):
        """The test split the observed frames come from, with a clear error when it is missing."""
        try:
            return build_dataset(
                self.dataset_name,
                "test",
                T=train_T,
                image_size=self.pretrained.config.data.image_size,
                data_dir=self.data_dir,
            )
        except DatasetError as err:
            raise DatasetError(
                f"Cannot load the test videos to condition on ({err}) Pass --data_dir, or use --n_obs 0 "
                "for unconditional videos."
            ) from None

    def indices(self) -> list[int]:
        """The dataset indices (or unconditional sample numbers) this job covers."""
        stop = self.settings.stop_index
        if stop is None:
            stop = self.settings.start_index + self.settings.batch_size
        if self.dataset is not None and stop > len(self.dataset):
            raise DatasetError(f"stop_index {stop} is past the {len(self.dataset)} test videos; lower --stop_index.")
        return list(range(self.settings.start_index, stop))

    def output_path(self, index: int) -> Path:
        return sample_path(self.eval_dir, index, self.settings.sample_idx)

    def resolved(self) -> dict[str, Any]:
        """The settings with every default filled in, and the videos' identity, as saved to settings.json."""
        generator = self.generator
        values = asdict(self.settings)
        values.update(
            T=self.T,
            max_frames=generator.max_frames,
            max_latent_frames=generator.max_latent_frames,
            chunk_length=generator.chunk_length,
            context=generator.context,
            eval_dir=str(self.eval_dir),
            dataset=self.dataset_name,
            data_dir=self.data_dir,
            image_size=generator.frame_shape[1],
            channels=generator.frame_shape[0],
            train_T=generator.train_T,
            world_size=self.dist.world_size,
        )
        values[IDENTITY_KEY] = self.identity
        return values

    def run(self, progress: bool = True) -> list[Path]:
        """Generate every missing sample file (this process's share) and return the paths of all files of this job."""
        check_writable(samples_dir(self.eval_dir))
        with ProcessGroup(self.dist) as group:
            main = self.dist.is_main
            with exclusive_lock(self.eval_dir, "--eval_dir") if main else contextlib.nullcontext():
                check_same_identity(self.eval_dir, self.identity)
                todo = self._prepare() if main else None
                todo = group.broadcast(todo)
                self._generate(group.share(todo, self.settings.batch_size), progress and main)
                group.wait()  # the lock is held until every process is done
        return [self.output_path(i) for i in self.indices()]

    def _prepare(self) -> list[int]:
        """Clear partial videos of a killed job, record the settings, and list the videos still to make."""
        for stale in partial_samples(self.eval_dir):
            stale.unlink()
        atomic_write_json(settings_path(self.eval_dir), self.resolved(), sort_keys=True, default=str)
        return [i for i in self.indices() if not self.output_path(i).exists()]

    def _generate(self, batches: list[list[int]], progress: bool) -> None:
        """Make and write the videos of `batches`, one batch after another."""
        bar = tqdm(
            total=self.generator.stages_per_video * sum(map(len, batches)),
            unit="stage",
            desc="sampling",
            disable=not progress,
        )
        for batch in batches:
            self._generate_batch(batch, bar)
        bar.close()

    def _generate_batch(self, batch: list[int], bar) -> None:
        observed = torch.zeros(len(batch), self.generator.n_obs, *self.generator.frame_shape)
        for row, index in enumerate(batch):
            if self.dataset is not None:  # read only the observed frames, not the whole test video
                observed[row] = self.dataset.clip(index, list(range(self.generator.n_obs)))[0]
        writers = [NpyStreamWriter(self.output_path(i), (self.T, *self.generator.frame_shape)) for i in batch]

        def emit(_start: int, frames: torch.Tensor) -> None:
            for row, writer in enumerate(writers):
                writer.write(to_uint8(frames[row]))

        try:
            self.generator.run(observed, batch, emit, on_rows=bar.update)
        except BaseException:
            for writer in writers:
                writer.abort()
            raise
        for writer in writers:
            writer.close()
