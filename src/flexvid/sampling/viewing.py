"""Turn a results directory of sampled videos into mp4 and gif files: observed frames outlined, a frame
counter under each video, and optionally the ground-truth test video beside each sample."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from flexvid.errors import ConfigError, DatasetError
from flexvid.eval.eval_dir import GroundTruth, check_same_shape, read_settings
from flexvid.eval_layout import SampleFile, sample_files, samples_dir, settings_path
from flexvid.files import exclusive_lock
from flexvid.sampling.counter import add_counter
from flexvid.video_io import GENERATED_COLOUR, OBSERVED_COLOUR, TRUTH_COLOUR, write_gif, write_mp4

BACKGROUND = 255  # white, between videos


def load_sample_video(path: Path) -> np.ndarray:
    """A saved sample, uint8 (T, C, H, W), memory-mapped."""
    try:
        video = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError) as err:  # empty, truncated, or a damaged header
        raise DatasetError(f"{path} is not a readable .npy array ({err}); regenerate it.") from None
    if video.ndim != 4 or video.dtype != np.uint8 or video.shape[1] not in (1, 3):
        raise DatasetError(f"{path} is not a sample video (uint8 T x C x H x W with 1 or 3 channels).")
    return video


def rgb_frames(video: np.ndarray) -> np.ndarray:
    """A uint8 video (T, C, H, W) with 1 or 3 channels as (T, H, W, 3) frames."""
    frames = np.moveaxis(video, 1, -1)
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else np.asarray(frames)


def outline_colours(length: int, n_obs: int) -> np.ndarray:
    """(length, 3) outline colours of a sample: observed for its first n_obs frames, generated after."""
    colours = np.empty((length, 3), dtype=np.uint8)
    colours[:] = GENERATED_COLOUR
    colours[:n_obs] = OBSERVED_COLOUR
    return colours


def add_borders(frames: np.ndarray, colours: np.ndarray, width: int = 2) -> np.ndarray:
    """Frames (T, H, W, 3) padded with a border of each frame's colour (`colours`, (T, 3) or (3,))."""
    t, h, w, _ = frames.shape
    out = np.empty((t, h + 2 * width, w + 2 * width, 3), dtype=np.uint8)
    out[:] = np.broadcast_to(np.asarray(colours, dtype=np.uint8), (t, 3))[:, None, None, :]
    out[:, width : width + h, width : width + w] = frames
    return out


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 2) -> np.ndarray:
    """Two videos (T, H, W, 3) of one shape next to each other, `gap` background pixels apart."""
    space = np.full((*left.shape[:2], gap, 3), BACKGROUND, dtype=np.uint8)
    return np.concatenate([left, space, right], axis=2)


def sample_frames(video: np.ndarray, n_obs: int, truth: np.ndarray | None = None) -> np.ndarray:
    """What `flexvid video` shows of a sample (uint8 (T, C, H, W)): outlined frames, the ground truth
    `truth` (same layout) to their left when given, and a frame counter below, as (T, H', W', 3)."""
    frames = add_borders(rgb_frames(video), outline_colours(len(video), n_obs))
    if truth is not None:
        frames = side_by_side(add_borders(rgb_frames(truth), np.array(TRUTH_COLOUR)), frames)
    return add_counter(frames)


def tile(videos: list[np.ndarray], columns: int | None = None, gap: int = 2) -> np.ndarray:
    """Videos (T_i, H, W, 3) side by side in a grid; shorter videos hold their last frame."""
    t = max(len(v) for v in videos)
    h, w = videos[0].shape[1:3]
    columns = columns or math.ceil(math.sqrt(len(videos)))
    rows = math.ceil(len(videos) / columns)
    grid = np.full((t, rows * (h + gap) - gap, columns * (w + gap) - gap, 3), BACKGROUND, dtype=np.uint8)
    for i, video in enumerate(videos):
        r, c = divmod(i, columns)
        padded = np.concatenate([video, np.repeat(video[-1:], t - len(video), axis=0)]) if len(video) < t else video
        grid[:, r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = padded
    return grid


def export_videos(
    eval_dir: Path,
    out_dir: Path | None = None,
    fps: float = 8.0,
    scale: int = 2,
    truth: bool = False,
    gt_dir: Path | None = None,
    data_dir: Path | None = None,
) -> list[Path]:
    """Write an mp4 and a gif for every sample in `eval_dir/samples`, plus a grid of all of them.

    Each video has a frame counter below it; with `truth`, the test video it completes (from the
    dataset's test split, or `gt_dir/NNNN.npy`) stands to its left.
    """
    if not math.isfinite(fps) or fps <= 0:
        raise ConfigError(f"fps must be a positive number, got {fps}; fix --fps.")
    if scale < 1:
        raise ConfigError(f"scale must be at least 1, got {scale}; fix --scale.")
    eval_dir = Path(eval_dir)
    samples = sample_files(eval_dir)
    if not samples:
        raise DatasetError(f"No samples found in {samples_dir(eval_dir)}; run `flexvid sample` first.")
    settings = settings_path(eval_dir)
    n_obs = json.loads(settings.read_text()).get("n_obs", 0) if settings.exists() else 0
    ground_truth = None
    if truth:
        if n_obs == 0:
            raise ConfigError(
                f"The samples in {eval_dir} are unconditional (n_obs 0), so no test video belongs to them; drop "
                "--truth."
            )
        ground_truth = GroundTruth(read_settings(eval_dir), gt_dir, data_dir)
    elif gt_dir is not None or data_dir is not None:
        raise ConfigError(
            "--gt_dir and --data_dir choose the ground truth shown with --truth; add --truth or drop them."
        )
    out_dir = Path(out_dir) if out_dir else eval_dir / "videos"
    with exclusive_lock(out_dir, "--out_dir"):
        return _write_videos(samples, n_obs, ground_truth, out_dir, fps, scale)


def _write_videos(
    samples: list[SampleFile], n_obs: int, ground_truth: GroundTruth | None, out_dir: Path, fps: float, scale: int
) -> list[Path]:
    """`export_videos`, while it holds the output folder's lock."""
    written: list[Path] = []
    tiles = []
    for index, _, path in samples:
        video = load_sample_video(path)
        reference = None
        if ground_truth is not None:
            reference = ground_truth[index]
            check_same_shape(video, reference, path.name, index)
        frames = sample_frames(video, n_obs, reference)
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
        tiles.append(frames)
        written.append(write_mp4(out_dir / f"{path.stem}.mp4", frames, fps))
        written.append(write_gif(out_dir / f"{path.stem}.gif", frames, fps))
    grid = tile(tiles)
    grid = np.pad(grid, ((0, 0), (0, grid.shape[1] % 2), (0, grid.shape[2] % 2), (0, 0)), constant_values=BACKGROUND)
    written.append(write_mp4(out_dir / "grid.mp4", grid, fps))
    written.append(write_gif(out_dir / "grid.gif", grid, fps))
    return written
