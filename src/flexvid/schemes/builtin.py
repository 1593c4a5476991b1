"""The paper's sampling schemes, choosing frames exactly as the authors' implementation does.

Each stage generates `step_size` frames and conditions on up to `max_frames - step_size` others:
- autoreg: the next frames after the latest ones, conditioned on the latest frames;
- long-range: like autoreg, but half the conditioning slots go to the latest frames and the rest
  to the latest of the given frames (observed at the start);
- only-obs: like autoreg, but conditioned on the latest given frames only;
- hierarchy-N: N levels; level 1 spreads frames over the whole video, each later level fills the
  gaps at a finer spacing, conditioning on done frames in between, after and before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from flexvid.errors import SchemeError
from flexvid.schemes.base import SamplingScheme
from flexvid.schemes.registry import register_scheme
from flexvid.schemes.validate import format_frames


class _NextFramesScheme(SamplingScheme):
    """Schemes that generate the `step_size` frames right after the last done frame."""

    def next_frames(self) -> range:
        first = self.done_sorted[-1] + 1
        return range(first, min(first + self.step_size, self.video_length))


@register_scheme("autoreg")
class Autoregressive(_NextFramesScheme):
    description = "next frames, conditioned on the latest frames"

    def choose_stage(self) -> tuple[Sequence[int], Sequence[int]]:
        return self.done_sorted[-(self.max_frames - self.step_size) :], self.next_frames()


@register_scheme("long-range")
class LongRange(_NextFramesScheme):
    description = "next frames, conditioned on the latest frames and the latest observed frames"

    def check_parameters(self) -> None:
        super().check_parameters()
        if self.max_frames - self.step_size < 2:
            raise SchemeError(
                f"{self.describe()} needs max_frames - step_size >= 2 conditioning slots (recent and "
                f"observed frames) but has {self.max_frames - self.step_size}; lower step_size or raise max_frames."
            )

    def choose_stage(self) -> tuple[Sequence[int], Sequence[int]]:
        slots = self.max_frames - self.step_size
        chosen = set(self.done_sorted[-(slots // 2) :])
        for frame in sorted(self.given_frames, reverse=True):
            chosen.add(frame)
            if len(chosen) == slots:
                break
        return sorted(chosen), self.next_frames()


@register_scheme("only-obs")
class OnlyObserved(_NextFramesScheme):
    description = "next frames, conditioned on the latest observed frames only"

    def choose_stage(self) -> tuple[Sequence[int], Sequence[int]]:
        return self.given_frames[-(self.max_frames - self.step_size) :], self.next_frames()


class Hierarchy(SamplingScheme):
    """N-level hierarchy: frame spacing shrinks geometrically from level 1 to level N (spacing 1)."""

    levels: ClassVar[int] = 2

    def __init__(self, video_length: int, num_observed_frames: int, max_frames: int, step_size: int) -> None:
        super().__init__(video_length, num_observed_frames, max_frames, step_size)
        self.level = 1
        self.last_sampled = self.video_length - 1
        self.stage_step = step_size  # frames the latest stage was allowed to generate (less when it shrank)

    def unconditional_latents(self) -> Sequence[int]:
        # Spread over the whole video; with K > T the repeats collapse and one stage covers it all.
        return [int(i) for i in np.linspace(0, self.video_length - 1, self.max_frames)]

    def spacing(self, step: int) -> int:
        """Distance between latent frames at the current level when `step` frames are generated."""
        if step < 2 and step == self.step_size:
            raise SchemeError(
                f"{self.describe()} cannot work: hierarchy schemes space latent frames by (T - n_obs) / "
                "(step_size - 1), so they need step_size >= 2."
            )
        if step < 2:
            raise SchemeError(
                f"{self.describe()} cannot work: at level {self.level} too many done frames lie between the "
                "latent frames to leave 2 of the max_frames slots for frames before and after them; raise "
                "max_frames or lower step_size."
            )
        level_one = (self.video_length - len(self.given_frames)) / (step - 1)
        return int(level_one ** ((self.levels - self.level) / (self.levels - 1)))

    def choose_stage(self) -> tuple[Sequence[int], Sequence[int]]:
        return self._choose(self.step_size)

    def _choose(self, step: int) -> tuple[list[int], list[int]]:
        """One stage generating at most `step` frames; retried with one frame fewer while fewer than
        2 conditioning slots remain for frames before and after the latent ones."""
        if len(self.done) == len(self.given_frames):
            self.level = 1
            self.last_sampled = max(self.given_frames)
        start = self.last_sampled + self.spacing(step)
        if len(self.done_between(start, self.video_length)) >= self.video_length - start:
            # Nothing left after this point: go one level finer and restart from the first gap.
            self.level += 1
            self.last_sampled = 0
            start = min(i for i in range(self.video_length) if i not in self.done) - 1 + self.spacing(step)
        latent = self._level_one_latents(step) if self.level == 1 else self._gap_latents(start, step)
        if not latent:
            remaining = [i for i in range(self.video_length) if i not in self.done]
            raise SchemeError(
                f"{self.describe()} cannot work: at level {self.level} its spacing of {self.spacing(step)} frames "
                f"jumps past the remaining frames {format_frames(remaining)}, so no frame is chosen; use fewer "
                "levels, a longer video or another step_size."
            )
        slots = self.max_frames - step
        obs = self.done_between(min(latent), max(latent))
        if slots - len(obs) < 2:
            return self._choose(step - 1)
        obs += self.done_between(max(latent) + 1, self.video_length)[: (slots - len(obs)) // 2]
        before = slots - len(obs)
        if self.level == 1:
            obs += [int(i) for i in np.linspace(0, max(self.given_frames) + 0.999, before).astype(np.int32)]
        else:
            obs += self.done_between(0, min(latent))[-before:][::-1]  # before >= 1 here
        self.last_sampled = max(latent)
        self.stage_step = step
        return obs, latent

    def _level_one_latents(self, step: int) -> list[int]:
        """Level 1: `step` frames spread evenly from the first undone frame to the end."""
        return [int(i) for i in np.linspace(max(self.given_frames) + 1, self.video_length - 0.001, step)]

    def _gap_latents(self, start: int, step: int) -> list[int]:
        """Later levels: from `start`, take undone frames `spacing` apart, skipping done ones."""
        latent: list[int] = []
        spacing = self.spacing(step)
        index = start
        while len(latent) < step and index < self.video_length:
            if index in self.done:
                index += 1
            else:
                latent.append(index)
                index += spacing
        return latent


def _hierarchy_class(levels: int) -> type[Hierarchy]:
    """The Hierarchy subclass with `levels` levels."""
    return type(
        f"Hierarchy{levels}",
        (Hierarchy,),
        {
            "__module__": __name__,
            "levels": levels,
            "description": f"{levels}-level hierarchy: coarse frames first, then gaps filled",
        },
    )


for _levels in (2, 3, 4, 5):
    register_scheme(f"hierarchy-{_levels}")(_hierarchy_class(_levels))
