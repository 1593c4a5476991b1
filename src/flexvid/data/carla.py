"""CARLA Town01 without traffic, in the authors' layout: a directory of `video_<i>.pt` (torch-saved
uint8 tensors, T x 128 x 128 x 3), `coords_<i>.npy` and `actions_<i>.npy`, and `video_train.csv` /
`video_test.csv` listing each split (a header line, then `index,path` rows).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flexvid.data.base import FrameReadingDataset, register_dataset, select_frame_info
from flexvid.data.video_decode import clip_start, keep_long_enough, resize_center_crop
from flexvid.errors import DatasetError
from flexvid.video_io import from_uint8

SPLITS = ("train", "test")
VIDEO_NAME = re.compile(r"^video_(\d+)\.pt$")
DOWNLOAD_HINT = "flexvid data carla --download"
SPLIT_HINT = "flexvid data carla --split"


def carla_video_files(directory: Path) -> dict[int, Path]:
    """The `video_<i>.pt` files of a directory, by their number i."""
    return {int(m.group(1)): p for p in directory.iterdir() if (m := VIDEO_NAME.match(p.name))}


def read_split_csv(csv_path: Path) -> list[str]:
    """Video file names listed in a split CSV (only the file name of each path is used)."""
    names = []
    for line_number, line in enumerate(csv_path.read_text().splitlines()[1:], start=2):
        if not line.strip():
            continue
        fields = line.split(",", 1)
        if len(fields) != 2 or not fields[1].strip().endswith(".pt"):
            raise DatasetError(
                f"Line {line_number} of {csv_path} is not an `index,path/to/video_<i>.pt` row; "
                f"rewrite the splits with `{SPLIT_HINT} {csv_path.parent}`."
            )
        names.append(fields[1].strip().replace("\\", "/").rsplit("/", 1)[-1])
    return names


def load_carla_video(path: Path) -> torch.Tensor:
    """Load one video_<i>.pt (memory-mapped when possible) and check it is uint8 (T, H, W, 3)."""
    try:
        try:
            video = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            video = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling failures come in many types
        raise DatasetError(
            f"Cannot load {path} as a torch-saved tensor ({type(err).__name__}); download it again."
        ) from err
    if not isinstance(video, torch.Tensor) or video.dtype != torch.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        found = (
            f"a {video.dtype} tensor of shape {tuple(video.shape)}"
            if isinstance(video, torch.Tensor)
            else (f"a {type(video).__name__}")
        )
        raise DatasetError(f"{path} holds {found}, but CARLA videos must be uint8 (T, H, W, 3) tensors.")
    return video


class CarlaVideos(FrameReadingDataset):
    """One split of the CARLA dataset; items carry the camera coordinates of their frames."""

    name = "carla_no_traffic"
    per_frame_info = ("frame_indices", "coords", "actions")

    def __init__(
        self,
        data_dir: Path,
        split: str,
        *,
        T: int,
        image_size: int,
        short_videos: str = "skip",
        random_window: bool | None = None,
    ) -> None:
        if split not in SPLITS:
            raise DatasetError(f"Unknown split {split!r} for CARLA; choose one of {', '.join(SPLITS)}.")
        if not data_dir.is_dir():
            raise DatasetError(
                f"CARLA directory {data_dir} does not exist; download it with `{DOWNLOAD_HINT} {data_dir}`."
            )
        self.split, self.T, self.image_size, self.data_dir = split, T, image_size, data_dir
        self.random_window = split == "train" if random_window is None else random_window
        csv_path = data_dir / f"video_{split}.csv"
        if not csv_path.is_file():
            what = "split file" if carla_video_files(data_dir) else "videos or split file"
            command = SPLIT_HINT if what == "split file" else DOWNLOAD_HINT
            raise DatasetError(f"{data_dir} has no {what} {csv_path.name}; create it with `{command} {data_dir}`.")
        names = read_split_csv(csv_path)
        if not names:
            raise DatasetError(f"{csv_path} lists no videos; rewrite the splits with `{SPLIT_HINT} {data_dir}`.")
        missing = [n for n in names if not (data_dir / n).is_file()]
        if missing:
            raise DatasetError(
                f"{csv_path.name} lists {len(missing)} video(s) missing from {data_dir} (first: {missing[0]}); "
                f"download them with `{DOWNLOAD_HINT}` or rewrite the splits with `{SPLIT_HINT}`."
            )
        shapes = [tuple(load_carla_video(data_dir / n).shape) for n in names]
        kept = keep_long_enough(names, [s[0] for s in shapes], T, short_videos, str(csv_path))
        self.files = [data_dir / names[i] for i in kept]
        self.lengths = [shapes[i][0] for i in kept]
        self.frame_shape = shapes[kept[0]][1:]
        self.has_coords = all(self._side_file("coords", p).is_file() for p in self.files)
        self.has_actions = all(self._side_file("actions", p).is_file() for p in self.files)

    def __len__(self) -> int:
        return len(self.files)

    def _read_clip(
        self, index: int, positions: np.ndarray | None, rng: np.random.Generator | None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Item `index` (its T-frame window, drawn from `rng`), or only the window's frames at
        `positions`: the memory-mapped .pt is read and converted for those alone."""
        path = self.files[index]
        video = load_carla_video(path)
        start = clip_start(len(video), self.T, self.random_window, rng)
        window = video[start : start + self.T]
        frames = window if positions is None else window[torch.from_numpy(positions)]
        clip = from_uint8(frames.permute(0, 3, 1, 2))
        info: dict[str, Any] = {"index": index, "frame_indices": torch.arange(start, start + self.T), "path": str(path)}
        for key, present in (("coords", self.has_coords), ("actions", self.has_actions)):
            if present:
                info[key] = self._side_array(key, path, start)
        return resize_center_crop(clip, self.image_size), select_frame_info(info, positions, self.per_frame_info)

    def summary(self) -> dict[str, Any]:
        """Counts, frame shape and video lengths, for `flexvid data info`."""
        return {
            "videos": len(self.files),
            "frame_shape": self.frame_shape,
            "lengths": list(self.lengths),
            "coords": self.has_coords,
            "actions": self.has_actions,
        }

    @staticmethod
    def _side_file(kind: str, video_path: Path) -> Path:
        return video_path.with_name(video_path.name.replace("video_", f"{kind}_", 1)).with_suffix(".npy")

    def _side_array(self, kind: str, video_path: Path, start: int) -> torch.Tensor:
        path = self._side_file(kind, video_path)
        values = np.load(path, mmap_mode="r", allow_pickle=False)
        window = np.array(values[start : start + self.T], dtype=np.float32)
        if len(window) != self.T:
            raise DatasetError(
                f"{path} has {len(values)} rows but its video needs {start + self.T}; download it again."
            )
        return torch.from_numpy(window)


@register_dataset("carla_no_traffic", default_T=1000, default_image_size=128, prepare_hint=f"{DOWNLOAD_HINT} DIR")
def build_carla(split: str, *, T: int, image_size: int, data_dir: Path, **options: Any) -> CarlaVideos:
    """Factory for the registry: CARLA Town01 without traffic."""
    return CarlaVideos(data_dir, split, T=T, image_size=image_size, **options)
