"""The one interface every video dataset implements, and the registry that builds them by name.

An item is `(video, info)`: `video` is a float32 tensor (T, C, H, W) in [-1, 1]; `info` is a dict
of metadata (at least `"index"`, the item's position in the split; CARLA adds `"coords"`).
`clip(index, frame_indices, rng)` returns only chosen frames of an item, exactly as slicing the item
would; training uses it because an example needs at most K of the T frames, and datasets whose
files allow it (memory-mapped `.npy` and `.pt`, generated videos) then read and convert only those.
Datasets that draw random numbers (e.g. a random training window) draw them from the NumPy
Generator `rng` that `item` and `clip` take (a fresh unseeded one when None): the training loader
(flexvid.data.loader) passes one seeded per example, which makes training data exactly reproducible
and resumable.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from flexvid.errors import DatasetError


class VideoDataset(Dataset, abc.ABC):
    """Base class: a split of fixed-length videos. Subclasses set the attributes below."""

    name: str = ""
    split: str = "train"
    T: int = 0  # frames per item
    image_size: int = 0
    channels: int = 3
    # True for generated data: every non-negative index is a distinct valid item and len() is only
    # a nominal epoch size (the training loader then never repeats a video).
    infinite: bool = False
    # Keys of `info` holding one entry per frame: `clip` returns them for the chosen frames only.
    per_frame_info: tuple[str, ...] = ("frame_indices",)

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of videos in the split."""

    @abc.abstractmethod
    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """Item `index`: `(video (T, C, H, W) float32 in [-1, 1], info)`."""

    def item(self, index: int, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        """Item `index`, its random choices (e.g. a training window) drawn from `rng`.

        This default is `self[index]`, for datasets that draw nothing; those that draw override it.
        """
        return self[index]

    def clip(
        self, index: int, frame_indices: Sequence[int] | np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Frames `frame_indices` (positions 0..T-1 in item `index`; any order, repeats allowed) as
        `(frames (n, C, H, W), info)`: the same as `self.item(index, rng)` sliced, for an `rng` in the same state.

        This default loads the whole item and slices it; datasets override it to load only those frames.
        """
        positions = frame_positions(frame_indices, self.T)
        video, info = self.item(index, rng)
        if video.shape[0] != self.T:
            raise DatasetError(
                f"Item {index} of dataset {self.name!r} has {video.shape[0]} frames, but the dataset's T is "
                f"{self.T}; every item must have T frames."
            )
        return video[torch.from_numpy(positions)], select_frame_info(info, positions, self.per_frame_info)


class FrameReadingDataset(VideoDataset):
    """Base class for datasets that can load chosen frames alone: one `_read_clip` serves both
    `dataset[index]` and `clip`, so a K-frame training example reads and converts only K frames."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        return self._read_clip(index, None, None)

    def item(self, index: int, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        """Item `index` with all T frames, its random choices drawn from `rng`, read by `_read_clip`."""
        return self._read_clip(index, None, rng)

    def clip(
        self, index: int, frame_indices: Sequence[int] | np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Only the chosen frames of item `index` (checked positions 0..T-1), read by `_read_clip`."""
        return self._read_clip(index, frame_positions(frame_indices, self.T), rng)

    @abc.abstractmethod
    def _read_clip(
        self, index: int, positions: np.ndarray | None, rng: np.random.Generator | None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Item `index` with all T frames (`positions` None) or only the frames at `positions`; random
        choices (a window) come from `rng`, or a fresh unseeded generator when it is None."""


def frame_positions(frame_indices: Sequence[int] | np.ndarray, T: int) -> np.ndarray:
    """Check chosen frame positions of a T-frame item and return them as a 1-D int64 array."""
    positions = np.asarray(frame_indices, dtype=np.int64)
    if positions.ndim != 1 or positions.size == 0:
        raise DatasetError(f"Frame indices must be a non-empty 1-D sequence, got shape {positions.shape}.")
    if positions.min() < 0 or positions.max() >= T:
        raise DatasetError(
            f"Frame indices must lie in 0..{T - 1} (the item has T={T} frames), "
            f"got {positions.min()}..{positions.max()}."
        )
    return positions


def select_frame_info(info: dict[str, Any], positions: np.ndarray | None, keys: Sequence[str]) -> dict[str, Any]:
    """`info` with its per-frame entries (`keys`) restricted to `positions` (all frames when None)."""
    if positions is None:
        return info
    chosen = torch.from_numpy(positions)
    return {key: value[chosen] if key in keys else value for key, value in info.items()}


@dataclass(frozen=True)
class DatasetSpec:
    """How to build a dataset, and the paper's defaults for it."""

    name: str
    factory: Callable[..., VideoDataset]
    default_T: int
    default_image_size: int
    needs_data_dir: bool
    prepare_hint: str  # the command that prepares the data, for error messages
    channels: int  # of the frames the factory makes (with its default options)


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(
    name: str,
    *,
    default_T: int,
    default_image_size: int,
    needs_data_dir: bool = True,
    prepare_hint: str = "",
    channels: int = 3,
) -> Callable[[Callable[..., VideoDataset]], Callable[..., VideoDataset]]:
    """Decorator: register a factory `f(split, *, T, image_size, data_dir, **options)`."""

    def wrap(factory: Callable[..., VideoDataset]) -> Callable[..., VideoDataset]:
        _REGISTRY[name] = DatasetSpec(
            name, factory, default_T, default_image_size, needs_data_dir, prepare_hint, channels
        )
        return factory

    return wrap


def dataset_names() -> list[str]:
    """Names of all registered datasets."""
    _load_builtin_datasets()
    return sorted(_REGISTRY)


def dataset_spec(name: str | None) -> DatasetSpec:
    """The spec of a registered dataset, or a clear error listing the known names (also for None: a
    config that records no dataset)."""
    _load_builtin_datasets()
    if name not in _REGISTRY:
        raise DatasetError(f"Unknown dataset {name!r}; known datasets are {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name]


def build_dataset(
    name: str | None,
    split: str = "train",
    *,
    T: int | None = None,
    image_size: int | None = None,
    data_dir: str | Path | None = None,
    **options: Any,
) -> VideoDataset:
    """Build split `split` of dataset `name`; T and image_size default to the paper's values."""
    spec = dataset_spec(name)
    if spec.needs_data_dir and data_dir is None:
        raise DatasetError(
            f"Dataset {name!r} needs --data_dir pointing at its files"
            + (f"; prepare them with `{spec.prepare_hint}`." if spec.prepare_hint else ".")
        )
    return spec.factory(
        split,
        T=T if T is not None else spec.default_T,
        image_size=image_size if image_size is not None else spec.default_image_size,
        data_dir=None if data_dir is None else Path(data_dir),
        **options,
    )


def _load_builtin_datasets() -> None:
    """Import the modules that register the built-in datasets (they register on import)."""
    import importlib

    for module in BUILTIN_DATASET_MODULES:
        importlib.import_module(f"flexvid.data.{module}")


# Modules under flexvid.data that register datasets when imported.
BUILTIN_DATASET_MODULES: list[str] = [
    "moving_mnist",
    "panorama",
    "carla",
    "npy_videos",
    "folder",
]
