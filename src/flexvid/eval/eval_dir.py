"""Reading an evaluation directory: the sampler's settings, its samples, and the matching ground truth.

The layout is flexvid.eval_layout's: settings.json (here: dataset, data_dir, T, image_size, n_obs,
sampling_scheme, max_frames) and samples/sample_NNNN-K.npy, a uint8 (T, C, H, W) array for test video
NNNN, sample K. Ground truth is item NNNN of the dataset's test split, or GT_DIR/NNNN.npy in the same uint8 layout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flexvid.errors import DatasetError
from flexvid.eval_layout import sample_files, sample_path, samples_dir, settings_path
from flexvid.video_io import to_uint8

REQUIRED_SETTINGS = ("dataset", "data_dir", "T", "image_size", "n_obs", "sampling_scheme", "max_frames")


@dataclass(frozen=True)
class EvalSettings:
    """What the sampler recorded about how the samples in an evaluation directory were made."""

    dataset: str
    data_dir: str | None
    T: int
    image_size: int
    n_obs: int
    sampling_scheme: str
    max_frames: int
    extra: dict[str, Any] = field(default_factory=dict)


def read_settings(eval_dir: Path) -> EvalSettings:
    """Parse EVAL_DIR/settings.json, with a clear error for a missing file or key."""
    path = settings_path(eval_dir)
    if not path.is_file():
        raise DatasetError(f"{path} not found; give an evaluation directory written by `flexvid sample`.")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} is not valid JSON ({err}); re-run the sampler to rewrite it.") from err
    missing = [key for key in REQUIRED_SETTINGS if key not in values]
    if missing:
        raise DatasetError(f"{path} lacks {', '.join(missing)}; re-run the sampler to rewrite it.")
    extra = {k: v for k, v in values.items() if k not in REQUIRED_SETTINGS}
    return EvalSettings(
        dataset=str(values["dataset"]),
        data_dir=None if values["data_dir"] is None else str(values["data_dir"]),
        T=int(values["T"]),
        image_size=int(values["image_size"]),
        n_obs=int(values["n_obs"]),
        sampling_scheme=str(values["sampling_scheme"]),
        max_frames=int(values["max_frames"]),
        extra=extra,
    )


def available_samples(eval_dir: Path) -> dict[int, list[int]]:
    """Test-video index -> sorted sample indices found in EVAL_DIR/samples."""
    folder = samples_dir(eval_dir)
    if not folder.is_dir():
        raise DatasetError(f"{folder} not found; generate samples into {eval_dir} first.")
    found: dict[int, list[int]] = {}
    for sample in sample_files(eval_dir):
        found.setdefault(sample.video, []).append(sample.sample)
    return found


def count_leading_videos(eval_dir: Path, sample_indices: list[int]) -> int:
    """How many test videos 0, 1, 2, ... in a row have all of `sample_indices`."""
    found = available_samples(eval_dir)
    count = 0
    while count in found and set(sample_indices) <= set(found[count]):
        count += 1
    return count


def require_samples(eval_dir: Path, num_videos: int, sample_indices: list[int]) -> None:
    """Fail clearly unless test videos 0..num_videos-1 all have the given samples."""
    have = count_leading_videos(eval_dir, sample_indices)
    if have < num_videos:
        first_missing = next(
            sample_path(eval_dir, have, k) for k in sample_indices if not sample_path(eval_dir, have, k).is_file()
        )
        raise DatasetError(
            f"Asked for {num_videos} videos but only the first {have} have samples {sample_indices} "
            f"({first_missing.name} is missing); generate more samples or lower --num_videos."
        )


def load_video_file(path: Path) -> np.ndarray:
    """A uint8 (T, C, H, W) video from a .npy file, checked."""
    if not path.is_file():
        raise DatasetError(f"{path} not found; generate it or lower --num_videos.")
    try:
        video = np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as err:  # empty, truncated, or a damaged header
        raise DatasetError(f"{path} is not a readable .npy array ({err}); regenerate it.") from None
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[1] not in (1, 3):
        raise DatasetError(
            f"{path} holds {video.dtype} {video.shape}, not uint8 frames shaped (T, C, H, W) with 1 or 3 channels; "
            "regenerate it."
        )
    return video


class GroundTruth:
    """The test videos that samples are compared with: GT_DIR/NNNN.npy files, or the dataset's test split."""

    def __init__(self, settings: EvalSettings, gt_dir: str | Path | None = None, data_dir: str | Path | None = None):
        self.gt_dir = None if gt_dir is None else Path(gt_dir)
        self._dataset = None
        if self.gt_dir is not None:
            if not self.gt_dir.is_dir():
                raise DatasetError(f"Ground-truth directory {self.gt_dir} not found; give a folder of NNNN.npy videos.")
            self.source = f"{self.gt_dir.name}/NNNN.npy"
            return
        from flexvid.data.base import build_dataset

        self._dataset = build_dataset(
            settings.dataset,
            "test",
            T=settings.T,
            image_size=settings.image_size,
            data_dir=data_dir if data_dir is not None else settings.data_dir,
        )
        self.source = f"{settings.dataset} test split"

    def __getitem__(self, index: int) -> np.ndarray:
        if self._dataset is None:
            assert self.gt_dir is not None  # without a dataset the videos are GT_DIR's files
            return load_video_file(self.gt_dir / f"{index:04d}.npy")
        if index >= len(self._dataset):
            raise DatasetError(
                f"Test video {index} does not exist: the {self.source} has {len(self._dataset)} videos; lower "
                "--num_videos."
            )
        video, _ = self._dataset[index]
        return to_uint8(video)


def check_same_shape(sample: np.ndarray, truth: np.ndarray, name: str, index: int) -> None:
    """Fail clearly when a sample and its test video differ in length, channels or size."""
    if sample.shape != truth.shape:
        raise DatasetError(
            f"{name} has shape {sample.shape} (T, C, H, W) but test video {index} has {truth.shape}; "
            "sample with the same T and image size as the test set, or pass the matching --gt_dir."
        )


def paired_videos(
    eval_dir: Path, truth: GroundTruth, num_videos: int, sample_indices: list[int]
) -> Iterator[tuple[int, np.ndarray, list[np.ndarray]]]:
    """Yield (video index, ground truth, [samples]) for test videos 0..num_videos-1, shape-checked."""
    require_samples(eval_dir, num_videos, sample_indices)
    for index in range(num_videos):
        reference = truth[index]
        samples = []
        for k in sample_indices:
            path = sample_path(eval_dir, index, k)
            sample = load_video_file(path)
            check_same_shape(sample, reference, path.name, index)
            samples.append(sample)
        yield index, reference, samples


__all__ = [
    "EvalSettings",
    "GroundTruth",
    "REQUIRED_SETTINGS",
    "available_samples",
    "check_same_shape",
    "count_leading_videos",
    "load_video_file",
    "paired_videos",
    "read_settings",
    "require_samples",
]
