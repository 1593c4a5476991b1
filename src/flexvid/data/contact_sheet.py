"""A contact sheet: one row per video, a few evenly spaced frames each, saved as one PNG image.

It lets a user check at a glance that a dataset decodes to the pictures they expect.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from flexvid.errors import DatasetError
from flexvid.files import atomic_write
from flexvid.video_io import to_uint8_frames


def contact_sheet(videos: Sequence[torch.Tensor], frames_per_video: int = 8, gap: int = 2) -> np.ndarray:
    """Tile evenly spaced frames of (T, C, H, W) videos in [-1, 1] into one uint8 (rows, cols, 3) image."""
    if not videos:
        raise DatasetError("A contact sheet needs at least one video.")
    height, width = videos[0].shape[-2:]
    columns = min(frames_per_video, max(v.shape[0] for v in videos))
    sheet = np.full((len(videos) * (height + gap) - gap, columns * (width + gap) - gap, 3), 255, np.uint8)
    for row, video in enumerate(videos):
        picks = np.linspace(0, video.shape[0] - 1, num=min(columns, video.shape[0])).round().astype(int)
        for column, pixels in enumerate(to_uint8_frames(video[torch.from_numpy(picks)])):
            top, left = row * (height + gap), column * (width + gap)
            sheet[top : top + height, left : left + width] = pixels
    return sheet


def save_contact_sheet(videos: Sequence[torch.Tensor], path: str | Path, frames_per_video: int = 8) -> Path:
    """Write the contact sheet of `videos` to a PNG file (atomically) and return its path."""
    from PIL import Image

    sheet = Image.fromarray(contact_sheet(videos, frames_per_video))
    return atomic_write(path, lambda temp: sheet.save(temp, format="PNG"))
