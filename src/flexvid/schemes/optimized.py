"""The `optimized` scheme: a base scheme's latent frames, with each stage's observed frames read from
a schedule file (the reference's `optimal_schedule.pt`: a dict from stage number to frame indices).

Stage numbers count from 0 and include the unconditional first stage, which keeps no observed
frames. A stage missing from the schedule conditions on nothing, as in the reference (with a warning).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from flexvid.errors import SchemeError
from flexvid.files import atomic_write, atomic_write_json
from flexvid.schemes.base import SamplingScheme
from flexvid.schemes.registry import register_scheme, scheme_class
from flexvid.schemes.stage import Stage

Schedule = dict[int, list[int]]
ScheduleSource = str | os.PathLike | Mapping[Any, Sequence[int]]


def _read_schedule_file(path: Path) -> Any:
    """The raw content of a .pt (torch, weights only) or .json schedule file."""
    if not path.is_file():
        raise SchemeError(
            f"Schedule file {path} does not exist; give the path of an optimal-schedule .pt or .json file."
        )
    if path.suffix == ".json":
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise SchemeError(f"Schedule file {path} is not valid JSON ({err.msg} at line {err.lineno}).") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or non-torch files
        raise SchemeError(
            f"Schedule file {path} cannot be read as a torch file ({type(err).__name__}); save it with torch.save or "
            "as .json."
        ) from None


def save_schedule(path: str | os.PathLike, schedule: Mapping[int, Sequence[int]]) -> Path:
    """Write a schedule atomically as .pt (torch.save of {stage: [frames]}, the reference's form) or .json."""
    path = Path(path)
    plain = {int(stage): [int(i) for i in frames] for stage, frames in sorted(schedule.items())}
    if path.suffix == ".json":
        return atomic_write_json(path, {str(stage): frames for stage, frames in plain.items()})
    if path.suffix == ".pt":
        return atomic_write(path, lambda temp: torch.save(plain, temp))
    raise SchemeError(f"Cannot write a schedule to {path}: use a .pt or .json file name.")


def load_schedule(source: ScheduleSource) -> Schedule:
    """A schedule {stage number: observed frame indices} from a file path or a mapping."""
    raw = source if isinstance(source, Mapping) else _read_schedule_file(Path(source))
    label = "The schedule" if isinstance(source, Mapping) else f"Schedule file {source}"
    if not isinstance(raw, Mapping):
        raise SchemeError(
            f"{label} must hold a dict from stage number to a list of frame indices, got {type(raw).__name__}."
        )
    schedule: Schedule = {}
    for key, frames in raw.items():
        try:
            stage = int(key)
            indices = [int(i) for i in (frames.tolist() if hasattr(frames, "tolist") else frames)]
        except (TypeError, ValueError):
            raise SchemeError(
                f"{label} maps {key!r} to {frames!r}; each entry must map a stage number to a list of frame indices."
            ) from None
        schedule[stage] = indices
    return schedule


@register_scheme("optimized")
class Optimized(SamplingScheme):
    description = "a base scheme's latent frames, observed frames per stage from a schedule file"

    def __init__(
        self,
        video_length: int,
        num_observed_frames: int,
        max_frames: int,
        step_size: int,
        *,
        schedule: ScheduleSource,
        base: str = "autoreg",
    ) -> None:
        base_class = scheme_class(base)
        if base == self.name or not issubclass(base_class, SamplingScheme):
            raise SchemeError(
                "The optimized scheme needs a scheme with fixed stages as its base (e.g. autoreg or hierarchy-2), not "
                f"{base}."
            )
        self.base = base_class(video_length, num_observed_frames, max_frames, step_size)
        self.schedule_source = schedule if isinstance(schedule, (str, os.PathLike)) else "<mapping>"
        self.schedule = load_schedule(schedule)
        super().__init__(video_length, num_observed_frames, max_frames, step_size)

    def describe(self) -> str:
        return f"{super().describe()[:-1]}, base={self.base.name}, schedule={self.schedule_source})"

    def unconditional_latents(self) -> Sequence[int]:
        return self._base_stage().latent

    def choose_stage(self) -> tuple[Sequence[int], Sequence[int]]:
        latent = self._base_stage().latent
        if self.stage_number not in self.schedule:
            warnings.warn(
                f"{self.describe()}: stage {self.stage_number} is not in the schedule, so it conditions on no frames.",
                stacklevel=2,
            )
        return self.schedule.get(self.stage_number, []), latent

    def _base_stage(self) -> Stage:
        """The base scheme's next stage; it runs in step with this one, so it is never finished first."""
        stage = self.base.next_stage()
        assert stage is not None
        return stage
