"""Moving MNIST (Srivastava et al. 2015): bouncing real MNIST digits, generated on the fly.

The dynamics follow the usual generator: each digit's top-left corner is a position in [0, 1]^2
scaled to the free range (canvas - 28 pixels); the velocity is a unit vector at a random angle;
every frame the position first moves by 0.1 of the free range, then bounces off the borders by
flipping the velocity component; digits are composited with a pixel-wise max. Videos are always
rendered on the 64x64 canvas of the original and then resized to `image_size` (area averaging when
smaller, bilinear when larger), so the motion looks the same at every resolution.

Channels: the default is 1 (grayscale, as MNIST is); `channels=3` repeats the gray channel for
networks or tools that want RGB. The registration records the default's 1 channel, which a training
run's config takes as `data.channels`.

Splits: the test split is fixed (video `i` is a pure function of `(seed, i)`); the train split
draws any non-negative index as a fresh video (`infinite = True`), `set_epoch` shifts plain
indexing to new videos, and everything is reproducible from `seed`. Train and test use disjoint
digit images. With `sequence_path`, the test split is instead the standard `mnist_test_seq.npy`
(frames x videos x 64 x 64, uint8), memory-mapped; the train split stays generated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from flexvid.data.base import FrameReadingDataset, VideoDataset, register_dataset
from flexvid.data.mnist_digits import load_digits
from flexvid.errors import DatasetError
from flexvid.video_io import from_uint8

CANVAS_SIZE = 64
STEP_LENGTH = 0.1
DEFAULT_NUM_VIDEOS = 10_000  # the test split's size (as mnist_test_seq.npy), and the train split's epoch
SPLIT_CODES = {"train": 0, "test": 1}


def bouncing_trajectories(
    rng: np.random.Generator, num_digits: int, length: int, step_length: float = STEP_LENGTH
) -> np.ndarray:
    """Positions in [0, 1]^2 of each digit in each frame, shape (length, num_digits, 2) as (y, x)."""
    position = rng.random((num_digits, 2))
    angle = rng.random(num_digits) * 2 * np.pi
    velocity = np.stack([np.sin(angle), np.cos(angle)], axis=1)
    path = np.empty((length, num_digits, 2))
    for frame in range(length):
        position = position + velocity * step_length
        low, high = position <= 0.0, position >= 1.0
        velocity = np.where(low | high, -velocity, velocity)
        position = np.clip(position, 0.0, 1.0)
        path[frame] = position
    return path


def render_video(digits: np.ndarray, trajectories: np.ndarray, canvas_size: int = CANVAS_SIZE) -> np.ndarray:
    """Paste each digit at its trajectory's corner, composited by max: uint8 (length, canvas, canvas)."""
    length, num_digits, _ = trajectories.shape
    free = canvas_size - digits.shape[-1]
    corners = (trajectories * free).astype(np.int64)
    size = digits.shape[-1]
    video = np.zeros((length, canvas_size, canvas_size), dtype=np.uint8)
    for frame in range(length):
        for d in range(num_digits):
            top, left = corners[frame, d]
            window = video[frame, top : top + size, left : left + size]
            np.maximum(window, digits[d], out=window)
    return video


def to_model_range(frames: np.ndarray, image_size: int, channels: int) -> torch.Tensor:
    """uint8 (T, H, W) frames -> float32 (T, channels, image_size, image_size) in [-1, 1]."""
    video = from_uint8(np.ascontiguousarray(frames)).unsqueeze(1)
    if video.shape[-1] != image_size:
        mode = "area" if image_size < video.shape[-1] else "bilinear"
        kwargs = {} if mode == "area" else {"align_corners": False}
        video = F.interpolate(video, size=(image_size, image_size), mode=mode, **kwargs).clamp(-1.0, 1.0)
    return video.expand(-1, channels, -1, -1).contiguous()


class MovingMNIST(FrameReadingDataset):
    """Bouncing-digit videos (T, C, image_size, image_size) in [-1, 1], generated from real MNIST digits."""

    name = "moving_mnist"

    def __init__(
        self,
        split: str = "train",
        *,
        T: int = 100,
        image_size: int = 32,
        num_digits: int = 2,
        channels: int = 1,
        seed: int = 0,
        num_videos: int = DEFAULT_NUM_VIDEOS,
        digits_path: str | Path | None = None,
    ) -> None:
        if split not in SPLIT_CODES:
            raise DatasetError(f"Unknown split {split!r} for moving_mnist; use 'train' or 'test'.")
        _check_common(T, image_size, channels)
        if num_digits < 1:
            raise DatasetError(f"num_digits must be at least 1, got {num_digits}.")
        if num_videos < 1:
            raise DatasetError(f"num_videos must be at least 1, got {num_videos}.")
        self.split, self.T, self.image_size, self.channels = split, T, image_size, channels
        self.num_digits, self.seed, self.num_videos = num_digits, seed, num_videos
        self.infinite = split == "train"
        self.epoch = 0
        self.digits = load_digits(split, digits_path)

    def __len__(self) -> int:
        return self.num_videos

    def set_epoch(self, epoch: int) -> None:
        """Train split: make plain indexing `dataset[i]` give new videos in each epoch."""
        self.epoch = epoch

    def _read_clip(
        self, index: int, positions: np.ndarray | None, rng: np.random.Generator | None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Video `index` (all T frames, or those at `positions`), a pure function of (seed, split, epoch,
        index), so `rng` is not used; the motion is simulated up to the last chosen frame, and only
        those are drawn and resized."""
        index = int(index)
        if index < 0 or (not self.infinite and index >= self.num_videos):
            raise IndexError(f"moving_mnist {self.split} index {index} is out of range 0..{self.num_videos - 1}")
        epoch = self.epoch if self.infinite else 0
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], epoch, index])
        chosen = rng.integers(len(self.digits), size=self.num_digits)
        # Later frames never change earlier ones, so a shorter simulation is a prefix of the full one.
        length = self.T if positions is None else int(positions.max()) + 1
        trajectories = bouncing_trajectories(rng, self.num_digits, length)
        frames = render_video(self.digits[chosen], trajectories if positions is None else trajectories[positions])
        return to_model_range(frames, self.image_size, self.channels), {"index": index}


class MovingMNISTSequences(FrameReadingDataset):
    """The standard `mnist_test_seq.npy` (frames x videos x 64 x 64 uint8) as fixed videos, memory-mapped."""

    name = "moving_mnist"
    split = "test"

    def __init__(self, path: str | Path, *, T: int, image_size: int, channels: int = 1) -> None:
        _check_common(T, image_size, channels)
        path = Path(path)
        if not path.is_file():
            raise DatasetError(
                f"Moving MNIST sequence file {path} does not exist; point sequence_path at mnist_test_seq.npy."
            )
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as error:
            raise DatasetError(f"Cannot read {path} as a .npy array ({error}).") from error
        if array.ndim != 4 or array.dtype != np.uint8 or array.shape[2] != array.shape[3]:
            raise DatasetError(
                f"{path} holds a {array.dtype} array of shape {tuple(array.shape)}; expected uint8 "
                "(frames, videos, H, W) with square frames, as in mnist_test_seq.npy."
            )
        if array.shape[0] < T:
            raise DatasetError(
                f"The videos in {path} have {array.shape[0]} frames, fewer than T={T}; "
                f"use --T {array.shape[0]} or less."
            )
        self.path, self.array = path, array
        self.T, self.image_size, self.channels = T, image_size, channels

    def __len__(self) -> int:
        return self.array.shape[1]

    def _read_clip(
        self, index: int, positions: np.ndarray | None, rng: np.random.Generator | None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Video `index` (its first T frames, or those at `positions`; no window, so no `rng`), read from
        the memory-mapped file."""
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"{self.path.name} index {index} is out of range 0..{len(self) - 1}")
        frames = np.asarray(self.array[slice(self.T) if positions is None else positions, index])
        return to_model_range(frames, self.image_size, self.channels), {"index": index}


def _check_common(T: int, image_size: int, channels: int) -> None:
    if T < 1:
        raise DatasetError(f"T must be at least 1 frame, got {T}.")
    if image_size < 1:
        raise DatasetError(f"image_size must be positive, got {image_size}.")
    if channels not in (1, 3):
        raise DatasetError(f"channels must be 1 (grayscale) or 3 (gray repeated as RGB), got {channels}.")


@register_dataset("moving_mnist", default_T=100, default_image_size=32, needs_data_dir=False, channels=1)
def build_moving_mnist(
    split: str,
    *,
    T: int,
    image_size: int,
    data_dir: Path | None = None,
    num_digits: int = 2,
    channels: int = 1,
    seed: int = 0,
    num_videos: int = DEFAULT_NUM_VIDEOS,
    digits_path: str | Path | None = None,
    sequence_path: str | Path | None = None,
) -> VideoDataset:
    """Generated Moving MNIST; the test split serves `sequence_path` (mnist_test_seq.npy) when given.

    `data_dir`, when given, is taken as the MNIST digits source (like `digits_path`).
    """
    if sequence_path is not None and split == "test":
        return MovingMNISTSequences(sequence_path, T=T, image_size=image_size, channels=channels)
    return MovingMNIST(
        split,
        T=T,
        image_size=image_size,
        num_digits=num_digits,
        channels=channels,
        seed=seed,
        num_videos=num_videos,
        digits_path=digits_path if digits_path is not None else data_dir,
    )
