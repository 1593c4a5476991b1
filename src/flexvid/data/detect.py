"""Which dataset loader reads a directory, and why: CARLA's files, numbered .npy splits, or a folder of videos.

A directory whose train/ and test/ mix numbered .npy videos with other videos fits two loaders (the
numbered-.npy loader would ignore the other videos), so it is refused with a request for --dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flexvid.data.carla import carla_video_files
from flexvid.data.folder import ARRAY_EXTENSIONS
from flexvid.data.npy_videos import SPLITS, numbered_npy_files
from flexvid.data.video_decode import GIF_EXTENSIONS, VIDEO_EXTENSIONS
from flexvid.errors import DatasetError

VIDEO_FILE_EXTENSIONS = VIDEO_EXTENSIONS | GIF_EXTENSIONS | ARRAY_EXTENSIONS


@dataclass(frozen=True)
class Detection:
    """The loader chosen for a directory and the layout that chose it."""

    name: str
    reason: str


def detect_dataset(directory: Path) -> Detection:
    """The dataset whose layout `directory` has, or a DatasetError when none or several fit."""
    if not directory.is_dir():
        raise DatasetError(f"{directory} is neither a dataset name nor a directory; give one of them.")
    if carla_video_files(directory):
        return Detection("carla_no_traffic", "it holds CARLA's video_<i>.pt files")
    if (directory / "video_train.csv").is_file():
        return Detection("carla_no_traffic", "it holds CARLA's video_train.csv")
    splits = [directory / s for s in SPLITS if (directory / s).is_dir()]
    if splits and all(numbered_npy_files(s) for s in splits):
        others = sorted({suffix for split in splits for suffix in _other_video_kinds(split)})
        if others:
            raise DatasetError(
                f"{directory} holds numbered .npy videos (the mazes and minerl layout) and other videos "
                f"({', '.join(others)}) in {'/ and '.join(s.name for s in splits)}/; choose the loader with "
                "--dataset folder (every video) or --dataset mazes (only the numbered .npy files)."
            )
        return Detection(
            "mazes",
            f"{'/ and '.join(s.name for s in splits)}/ hold only numbered .npy videos, the layout of mazes and minerl "
            "(give --dataset minerl for MineRL's clip length)",
        )
    return Detection(
        "folder",
        "it has neither CARLA's files nor train/ and test/ of numbered .npy videos, so it is read as a "
        "folder of videos (video files, .npy/.npz arrays, folders of frames)",
    )


def _other_video_kinds(split: Path) -> set[str]:
    """What a split directory holds besides numbered .npy files that the folder loader would read:
    the extensions of other video files, and "sub-folders"."""
    numbered = set(numbered_npy_files(split))
    kinds = set()
    for child in split.iterdir():
        if child.name.startswith(".") or child in numbered:
            continue
        if child.is_dir():
            kinds.add("sub-folders")
        elif child.suffix.lower() in VIDEO_FILE_EXTENSIONS:
            kinds.add(child.suffix.lower())
    return kinds
