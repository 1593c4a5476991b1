"""A streaming `.npy` writer for sampled videos too long for memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flexvid.files import temp_path_beside


class NpyStreamWriter:
    """Writes a (N, C, H, W) uint8 `.npy` file frame by frame, keeping no frames in memory.

    The data goes to a temporary file that is renamed into place by `close()`, so a reader never
    sees a half-written video; `abort()` removes it.
    """

    def __init__(self, path: Path, shape: tuple[int, ...]) -> None:
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temp_path_beside(self.path)
        self._file = open(self._tmp, "wb")
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
        self._tmp.replace(self.path)

    def abort(self) -> None:
        """Drop the partial file."""
        self._file.close()
        self._tmp.unlink(missing_ok=True)
