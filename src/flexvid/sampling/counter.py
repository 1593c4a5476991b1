"""A frame counter under video frames, drawn with a built-in 3x5 pixel font (no font files needed)."""

from __future__ import annotations

import numpy as np

GLYPHS = {  # 3 columns x 5 rows per digit, top row first
    "0": ("111", "101", "101", "101", "111"),
    "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"),
    "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"),
    "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"),
    "7": ("111", "001", "001", "001", "001"),
    "8": ("111", "101", "111", "101", "111"),
    "9": ("111", "101", "111", "001", "111"),
}
STRIP_COLOUR = (255, 255, 255)
TEXT_COLOUR = (0, 0, 0)


def number_mask(number: int, pixel: int = 1) -> np.ndarray:
    """A bool (5 * pixel, (4 * digits - 1) * pixel) image of `number`, digits one column apart."""
    rows = [" ".join(GLYPHS[d][r] for d in str(number)) for r in range(5)]
    mask = np.array([[c == "1" for c in row] for row in rows])
    return mask.repeat(pixel, axis=0).repeat(pixel, axis=1)


def add_counter(frames: np.ndarray) -> np.ndarray:
    """Frames (T, H, W, 3) with a strip below each showing its index (0-based, as in the schemes)."""
    t, h, w, _ = frames.shape
    pixel = max(1, h // 40)
    margin = pixel
    strip = np.empty((t, 8 * pixel, w, 3), dtype=np.uint8)  # an even height, as mp4 needs
    strip[:] = np.array(STRIP_COLOUR, dtype=np.uint8)
    for index in range(t):
        mask = number_mask(index, pixel)[:, : max(w - 2 * margin, 0)]
        region = strip[index, margin : margin + mask.shape[0], margin : margin + mask.shape[1]]
        region[mask] = np.array(TEXT_COLOUR, dtype=np.uint8)
    return np.concatenate([frames, strip], axis=1)
