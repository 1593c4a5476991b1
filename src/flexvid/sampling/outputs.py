"""Writing sampled videos: atomic `.npy` files, and a streaming writer for videos too long for memory."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Frames in [-1, 1] -> uint8 array, as the reference saves samples."""
    scaled = (frames.detach().float().clamp(-1, 1).cpu() + 1) * 127.5
    return scaled.round().to(torch.uint8).numpy()


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_npy(path: Path, array: np.ndarray) -> None:
    """Save an array atomically: a crash leaves either the old file or the complete new one."""
    atomic_write_bytes(path, lambda handle: np.save(handle, array))


def save_json(path: Path, data: dict[str, Any]) -> None:
    """Save a JSON file atomically."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str).encode()
    atomic_write_bytes(path, lambda handle: handle.write(text))


class NpyStreamWriter:
    """Writes a (N, C, H, W) uint8 `.npy` file frame by frame, keeping no frames in memory.

    The data goes to a temporary file that is renamed into place by `close()`, so a reader never
    sees a half-written video; `abort()` removes it.
    """

    def __init__(self, path: Path, shape: tuple[int, ...]) -> None:
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self._file = os.fdopen(fd, "wb")
        header = {"descr": "|u1", "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_1_0(self._file, header)
        self.frames_written = 0

    def write(self, frames: np.ndarray) -> None:
        """Append frames (n, C, H, W) uint8."""
        if frames.dtype != np.uint8 or tuple(frames.shape[1:]) != self.shape[1:]:
            raise ValueError(f"expected uint8 frames of shape (n, {self.shape[1:]}), got {frames.dtype} {frames.shape}")
        if self.frames_written + len(frames) > self.shape[0]:
            raise ValueError(f"writing past the declared {self.shape[0]} frames")
        self._file.write(np.ascontiguousarray(frames).tobytes())
        self.frames_written += len(frames)

    def close(self) -> None:
        """Finish the file and move it into place; all declared frames must have been written."""
        if self.frames_written != self.shape[0]:
            self.abort()
            raise ValueError(f"only {self.frames_written} of {self.shape[0]} frames were written")
        self._file.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the partial file."""
        self._file.close()
        Path(self._tmp).unlink(missing_ok=True)
