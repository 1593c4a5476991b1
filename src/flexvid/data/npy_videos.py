"""GQN-Mazes and MineRL Navigate in the on-disk form the paper's authors trained on: `train/` and
`test/` directories of numbered `.npy` files (0.npy, 1.npy, ...), each a uint8 (T, H, W, 3) video.

Files are memory-mapped, so a DataLoader worker reads only the frames it returns: the clip's
window, or with `clip` just the frames a training example uses.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flexvid.data.base import FrameReadingDataset, register_dataset, select_frame_info
from flexvid.data.video_decode import clip_start, frames_to_tensor, keep_long_enough, resize_center_crop
from flexvid.errors import DatasetError

SPLITS = ("train", "test")
_NUMBERED_NPY = re.compile(r"^(\d+)\.npy$")


def numbered_npy_files(directory: Path) -> list[Path]:
    """The `<number>.npy` files of a directory, in numeric order."""
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NUMBERED_NPY.match(p.name))]
    return [path for _, path in sorted(found)]


def open_npy_video(path: Path) -> np.ndarray:
    """Memory-map one video and check it is uint8 (T, H, W, 3); a clear error names a bad file."""
    try:
        video = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DatasetError(
            f"Cannot read {path} as a .npy array ({err}); re-create it from the original videos."
        ) from err
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise DatasetError(
            f"{path} holds a {video.dtype} array of shape {tuple(video.shape)}, but videos must be uint8 "
            "(T, H, W, 3); re-create it from the original videos."
        )
    return video


class NumberedNpyVideos(FrameReadingDataset):
    """One split of a directory of numbered .npy videos; an item is a T-frame clip."""

    def __init__(
        self,
        name: str,
        split_dir: Path,
        split: str,
        *,
        T: int,
        image_size: int,
        prepare_hint: str,
        short_videos: str = "skip",
        random_window: bool | None = None,
    ) -> None:
        self.name, self.split, self.T, self.image_size = name, split, T, image_size
        self.random_window = split == "train" if random_window is None else random_window
        if not split_dir.is_dir():
            raise DatasetError(f"Dataset directory {split_dir} does not exist; prepare it with `{prepare_hint}`.")
        files = numbered_npy_files(split_dir)
        if not files:
            raise DatasetError(
                f"No numbered .npy videos (0.npy, 1.npy, ...) in {split_dir}; prepare them with `{prepare_hint}`."
            )
        shapes = [open_npy_video(path).shape for path in files]
        kept = keep_long_enough([p.name for p in files], [s[0] for s in shapes], T, short_videos, str(split_dir))
        self.files = [files[i] for i in kept]
        self.lengths = [shapes[i][0] for i in kept]
        self.frame_shape = tuple(shapes[kept[0]][1:])

    def __len__(self) -> int:
        return len(self.files)

    def _read_clip(
        self, index: int, positions: np.ndarray | None, rng: np.random.Generator | None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Item `index` (its T-frame window, drawn from `rng`), or only the window's frames at
        `positions`, read from the memory-mapped file."""
        path = self.files[index]
        video = open_npy_video(path)
        start = clip_start(len(video), self.T, self.random_window, rng)
        window = video[start : start + self.T]
        clip = frames_to_tensor(np.asarray(window if positions is None else window[positions]))
        info = {"index": index, "frame_indices": torch.arange(start, start + self.T), "path": str(path)}
        return resize_center_crop(clip, self.image_size), select_frame_info(info, positions, self.per_frame_info)

    def summary(self) -> dict[str, Any]:
        """Counts, frame shape and video lengths, for `flexvid data info`."""
        return {"videos": len(self.files), "frame_shape": self.frame_shape, "lengths": list(self.lengths)}


def _builder(name: str, prepare_command: str):
    def build(split: str, *, T: int, image_size: int, data_dir: Path, **options: Any) -> NumberedNpyVideos:
        if split not in SPLITS:
            raise DatasetError(f"Unknown split {split!r} for {name}; choose one of {', '.join(SPLITS)}.")
        hint = f"{prepare_command} {data_dir}"
        if not data_dir.is_dir():
            raise DatasetError(f"Dataset directory {data_dir} does not exist; prepare it with `{hint}`.")
        return NumberedNpyVideos(
            name, data_dir / split, split, T=T, image_size=image_size, prepare_hint=hint, **options
        )

    return build


_build_mazes = _builder("mazes", "flexvid data mazes --download")
_build_minerl = _builder("minerl", "flexvid data minerl --download")
register_dataset("mazes", default_T=300, default_image_size=64, prepare_hint="flexvid data mazes --download DIR")(
    _build_mazes
)
register_dataset("mazes_cwvae", default_T=300, default_image_size=64, prepare_hint="flexvid data mazes --download DIR")(
    _build_mazes
)
register_dataset("minerl", default_T=500, default_image_size=64, prepare_hint="flexvid data minerl --download DIR")(
    _build_minerl
)
