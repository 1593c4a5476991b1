"""A PNG picture of a scheme's stages: one row per stage, one column per frame, with a legend.

Colours: frames the stage observes, frames it generates, frames already done but unused, and
frames not yet generated. The frames observed at the start are those no stage generates.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from flexvid.files import atomic_write
from flexvid.schemes.stage import Stage
from flexvid.schemes.validate import as_stage

COLOURS = {
    "untouched": (243, 243, 236),  # off-white: not generated yet
    "done": (189, 189, 189),  # grey: already exists, not used
    "observed": (33, 113, 181),  # blue: conditioned on in this stage
    "latent": (227, 74, 51),  # red: generated in this stage
}  # in rising priority: a cell covering several frames or stages shows the highest kind among them
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
MAX_WIDTH = 1500  # pixels across the frame columns
MAX_ROWS = 200  # stage rows; longer schemes put several stages in one row


def render_scheme_png(stages: Iterable[Any], video_length: int, path: str | os.PathLike) -> Path:
    """Draw the stages (Stage, (obs, latent) pairs or {"obs", "latent"} dicts) to a PNG at `path`.

    Up to MAX_WIDTH frames and MAX_ROWS stages get a cell each; longer videos and schemes share cells,
    so the picture stays small and drawing it stays linear in the number of frames and stages.
    """
    stages = [as_stage(stage, f"stage {number}") for number, stage in enumerate(stages)]
    frames_per_cell = -(-video_length // MAX_WIDTH)
    stages_per_row = -(-max(len(stages), 1) // MAX_ROWS)
    columns = -(-video_length // frames_per_cell)
    rows = -(-len(stages) // stages_per_row)
    kinds = _cell_kinds(stages, video_length, frames_per_cell, stages_per_row, rows, columns)

    cell_w = max(1, min(16, MAX_WIDTH // max(columns, 1)))
    cell_h = max(3, min(16, 600 // max(rows, 1)))
    palette = np.array(list(COLOURS.values()), dtype=np.uint8)
    cells = np.repeat(np.repeat(palette[kinds], cell_h, axis=0), cell_w, axis=1)
    margin, legend_h = 8, 24 if frames_per_cell == stages_per_row == 1 else 40
    width = max(2 * margin + cell_w * columns, 420)
    height = 2 * margin + cell_h * rows + legend_h
    image = Image.new("RGB", (width, height), BACKGROUND)
    image.paste(Image.fromarray(np.ascontiguousarray(cells)), (margin, margin))
    draw = ImageDraw.Draw(image)
    _draw_legend(draw, margin, height - legend_h + 6)
    if frames_per_cell > 1 or stages_per_row > 1:
        note = f"each cell: {frames_per_cell} frame(s) x {stages_per_row} stage(s), showing the highest kind above"
        draw.text((margin, height - 18), note, fill=TEXT, font=ImageFont.load_default())
    return atomic_write(path, lambda temp: image.save(temp, format="PNG"))


def _cell_kinds(
    stages: list[Stage], video_length: int, frames_per_cell: int, stages_per_row: int, rows: int, columns: int
) -> np.ndarray:
    """(rows, columns) indices into COLOURS: per cell the highest kind among its frames and stages."""
    kind = {name: number for number, name in enumerate(COLOURS)}
    grid = np.zeros((rows, columns), dtype=np.int64)
    done_from = np.full(video_length, -1, dtype=np.int64)  # first stage at which a frame exists (-1: given)
    for number, stage in enumerate(stages):
        done_from[list(stage.latent)] = number + 1
        row = number // stages_per_row
        for frames, name in ((stage.obs, "observed"), (stage.latent, "latent")):
            cells = np.asarray(frames, dtype=np.int64) // frames_per_cell
            grid[row, cells] = np.maximum(grid[row, cells], kind[name])
    padded = np.full(columns * frames_per_cell, np.iinfo(np.int64).max)
    padded[:video_length] = done_from
    earliest = padded.reshape(columns, frames_per_cell).min(axis=1)  # first stage any frame of a cell exists
    last_stage = np.minimum((np.arange(rows) + 1) * stages_per_row, len(stages)) - 1
    done = earliest[None, :] <= last_stage[:, None]
    return np.maximum(grid, np.where(done, kind["done"], kind["untouched"]))


def _draw_legend(draw: ImageDraw.ImageDraw, left: int, top: int) -> None:
    """One swatch and label per colour, in a row."""
    font = ImageFont.load_default()
    for label, colour in COLOURS.items():
        draw.rectangle([left, top, left + 11, top + 11], fill=colour, outline=TEXT)
        draw.text((left + 15, top), label, fill=TEXT, font=font)
        left += 15 + int(draw.textlength(label, font=font)) + 14
