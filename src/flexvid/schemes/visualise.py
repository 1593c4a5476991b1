"""A PNG picture of a scheme's stages: one row per stage, one column per frame, with a legend.

Colours: frames the stage observes, frames it generates, frames already done but unused, and
frames not yet generated. The frames observed at the start are those no stage generates.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from PIL import Image, ImageDraw, ImageFont

from flexvid.files import atomic_write
from flexvid.schemes.validate import as_stage

COLOURS = {
    "observed": (33, 113, 181),  # blue: conditioned on in this stage
    "latent": (227, 74, 51),  # red: generated in this stage
    "done": (189, 189, 189),  # grey: already exists, not used
    "untouched": (243, 243, 236),  # off-white: not generated yet
}
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
MAX_WIDTH = 1500  # pixels across the frame columns


def render_scheme_png(stages: Iterable[Any], video_length: int, path: str | os.PathLike) -> Path:
    """Draw the stages (Stage, (obs, latent) pairs or {"obs", "latent"} dicts) to a PNG at `path`."""
    stages = [as_stage(stage, f"stage {number}") for number, stage in enumerate(stages)]
    cell_w = max(1, min(16, MAX_WIDTH // max(video_length, 1)))
    cell_h = max(3, min(16, 600 // max(len(stages), 1)))
    margin, legend_h = 8, 24
    width = max(2 * margin + cell_w * video_length, 420)
    height = 2 * margin + cell_h * len(stages) + legend_h
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)

    generated = {i for stage in stages for i in stage.latent}
    done = set(range(video_length)) - generated
    for row, stage in enumerate(stages):
        observed, latent = set(stage.obs), set(stage.latent)
        top = margin + row * cell_h
        for frame in range(video_length):
            kind = "observed" if frame in observed else "latent" if frame in latent else "done" if frame in done else "untouched"
            left = margin + frame * cell_w
            draw.rectangle([left, top, left + cell_w - 1, top + cell_h - 1], fill=COLOURS[kind])
        done |= latent
    _draw_legend(draw, margin, height - legend_h + 6)

    return atomic_write(path, lambda temp: image.save(temp, format="PNG"))


def _draw_legend(draw: ImageDraw.ImageDraw, left: int, top: int) -> None:
    """One swatch and label per colour, in a row."""
    font = ImageFont.load_default()
    for label, colour in COLOURS.items():
        draw.rectangle([left, top, left + 11, top + 11], fill=colour, outline=TEXT)
        draw.text((left + 15, top), label, fill=TEXT, font=font)
        left += 15 + int(draw.textlength(label, font=font)) + 14
