"""Turn a results directory of sampled videos into mp4 and gif files, observed frames outlined."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from flexvid.errors import ConfigError, DatasetError
from flexvid.video_io import write_gif, write_mp4

OBSERVED_COLOUR = (255, 64, 64)  # border of frames given to the model
GENERATED_COLOUR = (64, 160, 255)  # border of frames the model generated
SAMPLE_NAME = re.compile(r"sample_(\d+)-(\d+)\.npy$")


def load_sample_frames(path: Path) -> np.ndarray:
    """A saved sample (T, C, H, W) uint8 as (T, H, W, 3) frames, memory-mapped."""
    try:
        video = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError) as err:  # empty, truncated, or a damaged header
        raise DatasetError(f"{path} is not a readable .npy array ({err}); regenerate it.") from None
    if video.ndim != 4 or video.dtype != np.uint8 or video.shape[1] not in (1, 3):
        raise DatasetError(f"{path} is not a sample video (uint8 T x C x H x W with 1 or 3 channels).")
    frames = np.moveaxis(video, 1, -1)
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else np.asarray(frames)


def add_borders(frames: np.ndarray, n_obs: int, width: int = 2) -> np.ndarray:
    """Frames (T, H, W, 3) padded with a coloured border: red for observed, blue for generated."""
    t, h, w, _ = frames.shape
    out = np.empty((t, h + 2 * width, w + 2 * width, 3), dtype=np.uint8)
    out[:] = np.array(GENERATED_COLOUR, dtype=np.uint8)
    out[:n_obs] = np.array(OBSERVED_COLOUR, dtype=np.uint8)
    out[:, width : width + h, width : width + w] = frames
    return out


def tile(videos: list[np.ndarray], columns: int | None = None, gap: int = 2) -> np.ndarray:
    """Videos (T_i, H, W, 3) side by side in a grid; shorter videos hold their last frame."""
    t = max(len(v) for v in videos)
    h, w = videos[0].shape[1:3]
    columns = columns or math.ceil(math.sqrt(len(videos)))
    rows = math.ceil(len(videos) / columns)
    grid = np.full((t, rows * (h + gap) - gap, columns * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for i, video in enumerate(videos):
        r, c = divmod(i, columns)
        padded = np.concatenate([video, np.repeat(video[-1:], t - len(video), axis=0)]) if len(video) < t else video
        grid[:, r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = padded
    return grid


def export_videos(eval_dir: Path, out_dir: Path | None = None, fps: float = 8.0, scale: int = 2) -> list[Path]:
    """Write an mp4 and a gif for every sample in `eval_dir/samples`, plus a grid of all of them."""
    if not math.isfinite(fps) or fps <= 0:
        raise ConfigError(f"fps must be a positive number, got {fps}; fix --fps.")
    if scale < 1:
        raise ConfigError(f"scale must be at least 1, got {scale}; fix --scale.")
    eval_dir = Path(eval_dir)
    samples = sorted(p for p in (eval_dir / "samples").glob("sample_*.npy") if SAMPLE_NAME.search(p.name))
    if not samples:
        raise DatasetError(f"No samples found in {eval_dir / 'samples'}; run `flexvid sample` first.")
    settings_path = eval_dir / "settings.json"
    n_obs = json.loads(settings_path.read_text()).get("n_obs", 0) if settings_path.exists() else 0
    out_dir = Path(out_dir) if out_dir else eval_dir / "videos"
    written: list[Path] = []
    bordered = []
    for path in samples:
        frames = add_borders(load_sample_frames(path), n_obs)
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
        bordered.append(frames)
        written.append(write_mp4(out_dir / f"{path.stem}.mp4", frames, fps))
        written.append(write_gif(out_dir / f"{path.stem}.gif", frames, fps))
    grid = tile(bordered)
    grid = np.pad(grid, ((0, 0), (0, grid.shape[1] % 2), (0, grid.shape[2] % 2), (0, 0)), constant_values=255)
    written.append(write_mp4(out_dir / "grid.mp4", grid, fps))
    written.append(write_gif(out_dir / "grid.gif", grid, fps))
    return written
