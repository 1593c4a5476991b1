"""Write videos as GIF or MP4 files (imageio + its bundled ffmpeg), atomically.

Frames are uint8 arrays (T, H, W, 3); `to_uint8_frames` converts a model video (T, C, H, W) in
[-1, 1] with 1 or 3 channels, `to_uint8` any tensor in [-1, 1] keeping its shape, and `from_uint8`
maps uint8 frames back to [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio_v2
import imageio.v3 as imageio_v3
import numpy as np
import torch

from flexvid.files import atomic_write, atomic_write_bytes

# Outline colours of frames wherever videos are drawn (flexvid video, training samples, comparisons).
OBSERVED_COLOUR = (255, 64, 64)  # red: frames given to the model
GENERATED_COLOUR = (64, 160, 255)  # blue: frames the model generated
TRUTH_COLOUR = (160, 160, 160)  # grey: the ground-truth test video


def from_uint8(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 frames (any shape) -> float32 in [-1, 1], the range the network works in."""
    frames = torch.as_tensor(frames)
    return frames.float().div_(127.5).sub_(1.0)


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Frames in [-1, 1] -> a uint8 array of the same shape, rounded (as the reference saves samples)."""
    scaled = (frames.detach().float().cpu().clamp(-1, 1) + 1) * 127.5
    return scaled.round().to(torch.uint8).numpy()


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """(T, C, H, W) float in [-1, 1] with C in {1, 3} -> (T, H, W, 3) uint8."""
    if video.dim() != 4 or video.shape[1] not in (1, 3):
        raise ValueError(f"expected a video (T, C, H, W) with 1 or 3 channels, got {tuple(video.shape)}")
    frames = torch.from_numpy(to_uint8(video))
    if frames.shape[1] == 1:
        frames = frames.expand(-1, 3, -1, -1)
    return frames.permute(0, 2, 3, 1).contiguous().numpy()


def encode_gif(frames: np.ndarray, fps: float = 8.0) -> bytes:
    """The bytes of a looping GIF of `frames` (T, H, W, 3) uint8."""
    return imageio_v3.imwrite("<bytes>", list(frames), extension=".gif", duration=1000.0 / fps, loop=0)


def write_gif(path: str | Path, frames: np.ndarray, fps: float = 8.0) -> Path:
    """Write `frames` (T, H, W, 3) uint8 as a looping GIF at `path`."""
    return atomic_write_bytes(path, encode_gif(frames, fps))


def write_mp4(path: str | Path, frames: np.ndarray, fps: float = 8.0) -> Path:
    """Write `frames` (T, H, W, 3) uint8 as an H.264 MP4 at `path` (height and width must be even)."""
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"MP4 needs even frame sizes, got {frames.shape[1]}x{frames.shape[2]}")

    def write(tmp: Path) -> None:
        writer = imageio_v2.get_writer(
            tmp, format="FFMPEG", fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=1
        )
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()

    return atomic_write(path, write)
