"""Where training metrics go: a JSONL file (always), TensorBoard, wandb (when asked), and the console.

Only rank 0 logs. wandb honours `WANDB_MODE=offline`, so it works without an account; its run id
is kept in the run directory so a resumed run continues the same wandb run.
"""

from __future__ import annotations

import json
import math
import secrets
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from flexvid.files import atomic_write_text
from flexvid.video_io import encode_gif

METRICS_FILENAME = "metrics.jsonl"
WANDB_ID_FILENAME = "wandb_id.txt"


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop lines logged after `last_step` (a resumed run redoes those steps), and damaged lines (a
    full disk or a crash can leave a partial last line)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(errors="replace").splitlines() if _step_of(line) <= last_step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def _step_of(line: str) -> float:
    """The step of a metrics line; infinity for a line that is not a complete metrics record."""
    try:
        record = json.loads(line)
    except ValueError:
        return math.inf
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) else math.inf


class RunLogger:
    """Scalars and videos of one run, written to every enabled sink; a no-op off rank 0."""

    def __init__(
        self,
        run_dir: str | Path,
        *,
        enabled: bool = True,
        tensorboard: bool = True,
        wandb: bool = False,
        wandb_project: str = "flexvid",
        config: dict[str, Any] | None = None,
        resume_step: int | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / METRICS_FILENAME
        if resume_step is not None:
            _truncate_jsonl(self.metrics_path, resume_step)
        self._jsonl = open(self.metrics_path, "a")
        if tensorboard:
            self._tb = self._open_tensorboard(resume_step)
        if wandb:
            self._wandb = self._open_wandb(wandb_project, config or {})

    def _open_tensorboard(self, resume_step: int | None) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warnings.warn("TensorBoard is not installed (pip install tensorboard); skipping its logs.", stacklevel=1)
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=resume_step)

    def _open_wandb(self, project: str, config: dict[str, Any]) -> Any:
        import wandb

        id_path = self.run_dir / WANDB_ID_FILENAME
        run_id = id_path.read_text().strip() if id_path.is_file() else secrets.token_hex(4)
        id_path.write_text(run_id + "\n")
        wandb.init(project=project, id=run_id, resume="allow", dir=str(self.run_dir), config=config)
        return wandb

    def log_scalars(self, step: int, metrics: dict[str, float]) -> None:
        """One JSONL line (`step` plus `metrics`) and a scalar per metric in TensorBoard and wandb."""
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in metrics.items()}
        self._jsonl.write(json.dumps({"step": step, **clean}) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for key, value in clean.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(clean, step=step)

    def log_video(self, step: int, tag: str, frames: np.ndarray, gif_path: Path, fps: float = 8.0) -> None:
        """An animation (T, H, W, 3) uint8: an animated GIF image in TensorBoard, a video in wandb.

        `gif_path` must already hold the same frames as a GIF file (wandb uploads that file).
        """
        if not self.enabled:
            return
        if self._tb is not None:
            from tensorboard.compat.proto.summary_pb2 import Summary

            image = Summary.Image(
                height=frames.shape[1],
                width=frames.shape[2],
                colorspace=3,
                encoded_image_string=encode_gif(frames, fps),
            )
            self._tb._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({tag: self._wandb.Video(str(gif_path), format="gif")}, step=step)

    def close(self) -> None:
        if not self.enabled:
            return
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """A tqdm bar (steps/s, loss, ETA) on a terminal; plain periodic lines otherwise.

    A plain line's steps/s and ETA come from the last RATE_WINDOW_S seconds of reports (always at
    least the report before), so a slow patch such as a checkpoint or sample stops weighing on them
    once it is that far behind; tqdm's bar smooths its own rate over recent updates.
    """

    RATE_WINDOW_S = 60.0

    def __init__(
        self,
        total_steps: int,
        start_step: int,
        *,
        enabled: bool = True,
        interval: int = 10,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.total = total_steps
        self.enabled = enabled
        self.interval = max(1, interval)
        self.stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._reports: deque[tuple[float, int]] = deque([(clock(), start_step)])
        self._bar = None
        if enabled and hasattr(self.stream, "isatty") and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", file=self.stream, dynamic_ncols=True)

    def update(self, step: int, loss: float) -> None:
        """Report that `step` steps are done and the latest loss."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            return
        if step % self.interval and step != self.total:
            return
        rate = self._recent_rate(step)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        print(
            f"step {step}/{self.total}  loss {loss:.4f}  {rate:.2f} steps/s  ETA {_format_duration(eta)}",
            file=self.stream,
            flush=True,
        )

    def _recent_rate(self, step: int) -> float:
        """Steps per second since the oldest report within RATE_WINDOW_S, then record this report."""
        now = self._clock()
        while len(self._reports) > 1 and now - self._reports[1][0] >= self.RATE_WINDOW_S:
            self._reports.popleft()
        then, then_step = self._reports[0]
        self._reports.append((now, step))
        return (step - then_step) / (now - then) if now > then else float("nan")

    def write(self, message: str) -> None:
        """A message that does not break the progress bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
