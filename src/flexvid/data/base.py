"""The one interface every video dataset implements, and the registry that builds them by name.

An item is `(video, info)`: `video` is a float32 tensor (T, C, H, W) in [-1, 1]; `info` is a dict
of metadata (at least `"index"`, the item's position in the split; CARLA adds `"coords"`).
Datasets that draw random numbers (e.g. a random training window) use the global torch / NumPy /
Python RNGs: the training loader (flexvid.data.loader) seeds them per example, which makes training
data exactly reproducible and resumable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from flexvid.errors import DatasetError


class VideoDataset(Dataset):
    """Base class: a split of fixed-length videos. Subclasses set the attributes below."""

    name: str = ""
    split: str = "train"
    T: int = 0  # frames per item
    image_size: int = 0
    channels: int = 3
    # True for generated data: every non-negative index is a distinct valid item and len() is only
    # a nominal epoch size (the training loader then never repeats a video).
    infinite: bool = False

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class DatasetSpec:
    """How to build a dataset, and the paper's defaults for it."""

    name: str
    factory: Callable[..., VideoDataset]
    default_T: int
    default_image_size: int
    needs_data_dir: bool
    prepare_hint: str  # the command that prepares the data, for error messages


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(
    name: str,
    *,
    default_T: int,
    default_image_size: int,
    needs_data_dir: bool = True,
    prepare_hint: str = "",
) -> Callable[[Callable[..., VideoDataset]], Callable[..., VideoDataset]]:
    """Decorator: register a factory `f(split, *, T, image_size, data_dir, **options)`."""

    def wrap(factory: Callable[..., VideoDataset]) -> Callable[..., VideoDataset]:
        _REGISTRY[name] = DatasetSpec(
            name, factory, default_T, default_image_size, needs_data_dir, prepare_hint
        )
        return factory

    return wrap


def dataset_names() -> list[str]:
    """Names of all registered datasets."""
    _load_builtin_datasets()
    return sorted(_REGISTRY)


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of a registered dataset, or a clear error listing the known names."""
    _load_builtin_datasets()
    if name not in _REGISTRY:
        raise DatasetError(f"Unknown dataset {name!r}; known datasets are {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name]


def build_dataset(
    name: str,
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
    "carla",
    "npy_videos",
    "folder",
]
