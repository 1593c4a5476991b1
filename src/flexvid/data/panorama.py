"""Panorama: a long-range memory benchmark. A fixed random scene, seen through a window that pans over it.

Each video has its own scene: a dark background with random coloured rectangles and discs, twice as
wide as a frame. The view (a square window of `image_size` pixels) slides horizontally over it at a
constant integer speed and reflects at the scene's edges, so:

- the view returns to every place it showed before, and what it shows then matches exactly (frames a
  period `2 * (scene_width - image_size) / speed` apart are identical: 32 frames at the defaults,
  where the scene is two frames wide and the view moves a sixteenth of a frame (2 pixels) per frame);
- the motion follows from the first frames: a model that remembers the scene can reproduce the
  ground-truth future, one that forgets it must invent the content anew and gets it wrong;
- `info["view_x"]` records each frame's left edge in the scene, so an evaluation can tell frames that
  revisit content unseen for more than K frames (`revisit_mask`) from the rest.

The test split is fixed (video `i` is a pure function of `(seed, "test", i)`); the train split draws
any non-negative index as a fresh video, and `set_epoch` moves plain indexing to new ones. It is the
laptop-scale analogue of GQN-Mazes, on which the paper compares schemes by long-range consistency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from flexvid.data.base import FrameReadingDataset, VideoDataset, register_dataset
from flexvid.errors import DatasetError
from flexvid.video_io import from_uint8

SCENE_WIDTH_FACTOR = 2  # scene width in frame widths
# Default speed: a sixteenth of the frame width per frame. Slow enough that neighbouring frames share
# most of their content: a small network learns to use observed frames within a few hundred steps at
# 2 pixels per frame, but not at 4 or 8 (measured on the CPU recipe, see pretrained/README.md).
SPEED_FRACTION = 16
NUM_TEST_VIDEOS = 1000
SPLIT_CODES = {"train": 0, "test": 1}
# A frame is a revisit when at least this share of its columns came back after more than K frames out of view.
REVISIT_MIN_SHARE = 0.25


def view_positions(start: int, speed: int, free_range: int, length: int) -> np.ndarray:
    """Left edges (length,) of a view moving `speed` pixels per frame over [0, free_range], reflecting.

    `start` in [0, 2 * free_range) encodes both the first position and the direction: positions above
    `free_range` are on the way back.
    """
    phase = (start + speed * np.arange(length, dtype=np.int64)) % (2 * free_range)
    return np.where(phase <= free_range, phase, 2 * free_range - phase)


def draw_scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random scene, uint8 (height, width, 3): dark background, bright rectangles and discs."""
    background = rng.integers(0, 48, size=3)
    scene = np.empty((height, width, 3), dtype=np.uint8)
    scene[:] = background
    rows, cols = np.mgrid[0:height, 0:width]
    unit = height / 32  # shape sizes are given for 32-pixel frames
    num_shapes = int(rng.integers(5, 9)) * width // (2 * height)
    for _ in range(num_shapes):
        colour = rng.integers(64, 256, size=3)
        colour[rng.integers(3)] = rng.integers(0, 64)  # saturated: one channel dark
        cy, cx = rng.random() * height, rng.random() * width
        size_y, size_x = (rng.integers(4, 11, size=2) * unit).tolist()
        if rng.random() < 0.5:
            inside = (np.abs(rows - cy) <= size_y) & (np.abs(cols - cx) <= size_x)
        else:
            inside = (rows - cy) ** 2 + (cols - cx) ** 2 <= size_y**2
        scene[inside] = colour
    return scene


def revisit_mask(view_x: np.ndarray, view_width: int, max_frames: int) -> np.ndarray:
    """(T,) bool: frames at least a quarter of whose columns came back from more than K frames ago.

    A column *comes back* when it enters the view having been out of it for more than K =
    `max_frames` frames (and seen before that); it stays a come-back column while it stays in view.
    Such content can be right only if the model remembers what left the picture more than K frames
    ago: a model limited to its last K frames must invent it when it enters, and then keeps what it
    invented. Counting only columns that are stale at this very frame would miss slow pans, where
    each frame brings in a few columns and the rest were shown a frame before.
    """
    view_x = np.asarray(view_x, dtype=np.int64)
    scene_width = int(view_x.max()) + view_width
    last_seen = np.full(scene_width, -(10**9), dtype=np.int64)
    came_back = np.zeros(scene_width, dtype=bool)
    revisit = np.zeros(len(view_x), dtype=bool)
    for t, left in enumerate(view_x.tolist()):
        view = slice(left, left + view_width)
        seen = last_seen[view]
        entering = seen != t - 1
        came_back[view] = np.where(entering, (seen >= 0) & (t - seen > max_frames), came_back[view])
        revisit[t] = came_back[view].mean() >= REVISIT_MIN_SHARE
        last_seen[view] = t
    return revisit


class Panorama(FrameReadingDataset):
    """Videos (T, 3, image_size, image_size) in [-1, 1] of a view panning over a fixed random scene."""

    name = "panorama"
    per_frame_info = ("frame_indices", "view_x")

    def __init__(
        self,
        split: str = "train",
        *,
        T: int = 64,
        image_size: int = 32,
        speed: int | None = None,
        seed: int = 0,
        num_videos: int = NUM_TEST_VIDEOS,
    ) -> None:
        if split not in SPLIT_CODES:
            raise DatasetError(f"Unknown split {split!r} for panorama; use 'train' or 'test'.")
        if T < 1:
            raise DatasetError(f"T must be at least 1 frame, got {T}.")
        if image_size < 8:
            raise DatasetError(f"image_size must be at least 8 pixels for panorama, got {image_size}.")
        speed = max(1, image_size // SPEED_FRACTION) if speed is None else speed
        self.free_range = (SCENE_WIDTH_FACTOR - 1) * image_size
        if not 1 <= speed <= self.free_range:
            raise DatasetError(f"speed must be 1..{self.free_range} pixels per frame, got {speed}.")
        if num_videos < 1:
            raise DatasetError(f"num_videos must be at least 1, got {num_videos}.")
        self.split, self.T, self.image_size, self.channels = split, T, image_size, 3
        self.speed, self.seed, self.num_videos = speed, seed, num_videos
        self.infinite = split == "train"
        self.epoch = 0

    @property
    def period(self) -> int:
        """Frames after which every view repeats exactly."""
        return 2 * self.free_range // np.gcd(2 * self.free_range, self.speed)

    def __len__(self) -> int:
        return self.num_videos

    def set_epoch(self, epoch: int) -> None:
        """Train split: make plain indexing `dataset[i]` give new videos in each epoch."""
        self.epoch = epoch

    def _read_clip(
        self, index: int, positions: np.ndarray | None, rng: np.random.Generator | None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Video `index` (all T frames, or those at `positions`), a pure function of (seed, split, epoch,
        index), so `rng` is not used."""
        index = int(index)
        if index < 0 or (not self.infinite and index >= self.num_videos):
            raise IndexError(f"panorama {self.split} index {index} is out of range 0..{self.num_videos - 1}")
        epoch = self.epoch if self.infinite else 0
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], epoch, index])
        size = self.image_size
        scene = draw_scene(rng, size, SCENE_WIDTH_FACTOR * size)
        # Starts on the grid of steps, so the view reaches both edges and mirrored views repeat exactly.
        start = self.speed * int(rng.integers(0, 2 * self.free_range // self.speed))
        view_x = view_positions(start, self.speed, self.free_range, self.T)
        if positions is not None:
            view_x = view_x[positions]
        columns = view_x[:, None] + np.arange(size)  # (n, size)
        frames = scene[:, columns]  # (size, n, size, 3)
        video = from_uint8(np.ascontiguousarray(frames.transpose(1, 3, 0, 2)))
        return video, {"index": index, "view_x": torch.from_numpy(view_x)}


@register_dataset("panorama", default_T=64, default_image_size=32, needs_data_dir=False)
def build_panorama(
    split: str,
    *,
    T: int,
    image_size: int,
    data_dir: Path | None = None,
    speed: int | None = None,
    seed: int = 0,
    num_videos: int = NUM_TEST_VIDEOS,
) -> VideoDataset:
    """Generated panorama videos (no files needed; `data_dir` is ignored)."""
    return Panorama(split, T=T, image_size=image_size, speed=speed, seed=seed, num_videos=num_videos)
