"""Sample videos logged during training: a grid animation saved as GIF and MP4 and sent to the loggers.

Each animation frame shows, per validation video, the real frame (top) above the model's frame
(bottom), outlined in flexvid's colours (video_io): ground truth grey, observed red, generated blue.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from flexvid.training.logging import RunLogger
from flexvid.video_io import (
    GENERATED_COLOUR,
    OBSERVED_COLOUR,
    TRUTH_COLOUR,
    to_uint8_frames,
    write_gif,
    write_mp4,
)

BORDER = 2


def _with_border(frames: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """(K, H, W, 3) -> (K, H + 2B, W + 2B, 3) with a border of each frame's colour ((K, 3) or (3,))."""
    K, H, W, _ = frames.shape
    out = np.empty((K, H + 2 * BORDER, W + 2 * BORDER, 3), dtype=np.uint8)
    out[:] = np.broadcast_to(np.asarray(colours, dtype=np.uint8), (K, 3))[:, None, None, :]
    out[:, BORDER : BORDER + H, BORDER : BORDER + W] = frames
    return out


def sample_grid(truth: torch.Tensor, samples: torch.Tensor, obs_mask: torch.Tensor) -> np.ndarray:
    """(B, K, C, H, W) real and generated videos -> (K, 2 rows, B columns) animation, uint8 (K, h, w, 3)."""
    columns = []
    for b in range(truth.shape[0]):
        observed = obs_mask[b].flatten().cpu().numpy() > 0.5
        real = _with_border(to_uint8_frames(truth[b]), np.array(TRUTH_COLOUR))
        generated = _with_border(
            to_uint8_frames(samples[b]), np.where(observed[:, None], OBSERVED_COLOUR, GENERATED_COLOUR)
        )
        columns.append(np.concatenate([real, generated], axis=1))
    return np.concatenate(columns, axis=2)


def log_sample_videos(
    logger: RunLogger,
    run_dir: str | Path,
    step: int,
    truth: torch.Tensor,
    samples: torch.Tensor,
    obs_mask: torch.Tensor,
    fps: float = 4.0,
) -> Path:
    """Write `samples/step_NNNNNNN.{gif,mp4}` in the run directory and log the animation; returns the GIF."""
    frames = sample_grid(truth, samples, obs_mask)
    stem = Path(run_dir) / "samples" / f"step_{step:07d}"
    gif_path = write_gif(stem.with_suffix(".gif"), frames, fps)
    write_mp4(stem.with_suffix(".mp4"), frames, fps)
    logger.log_video(step, "samples", frames, gif_path, fps)
    return gif_path
