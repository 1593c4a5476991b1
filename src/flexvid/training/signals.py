"""Turn SIGTERM / SIGINT (cluster preemption, Ctrl-C) into a request to save and stop.

The handler only records the signal; the training loop checks it between steps, writes a
checkpoint and exits, so no step is ever half-applied. A second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import signal
import types
from typing import Any


class StopRequest:
    """Context manager: while active, SIGTERM and SIGINT set `signum` instead of killing the process."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopRequest:
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: signals cannot be caught here
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def signal_name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""
