"""Adaptive sampling schemes: each stage's observed frames are chosen per video from the content made so far.

The latent frames of every stage are a base scheme's, so they are planned and validated before the
first network call like any scheme's. What is left to run time is which done frames each video
observes: a stage always observes some frames (`always`), and fills the rest of its `slots` by
farthest-point selection on an embedding of the frames (LPIPS for the built-in schemes, see
flexvid.schemes.lpips_selection). The engine runs such a plan one stage at a time, because a stage
may observe any frame made before it.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from flexvid.errors import SchemeError
from flexvid.schemes.base import SamplingScheme
from flexvid.schemes.stage import Stage
from flexvid.schemes.validate import validate_stages

if TYPE_CHECKING:
    import torch

    from flexvid.schemes.lpips_selection import Embedder, FarthestPointObserver


@dataclass(frozen=True)
class AdaptiveStage:
    """One stage: fixed latent frames; `slots` observed frames per video, chosen at run time."""

    latent: tuple[int, ...]
    always: tuple[int, ...]  # observed by every video, in the order they are taken (at most `slots`)
    candidates: tuple[int, ...]  # the done frames the others are chosen from; ties go to the earliest listed
    slots: int  # observed frames per video, `always` included

    def to_dict(self) -> dict[str, object]:
        """The JSON form, {"latent": [...], "always": [...], "slots": n}."""
        return {"latent": list(self.latent), "always": list(self.always), "slots": self.slots}

    def fixed_part(self) -> Stage:
        """The frames known before any content exists: `always` as observed, and the latent frames."""
        return Stage(tuple(sorted(self.always)), self.latent)


class AdaptiveScheme(abc.ABC):
    """Base class: a base scheme's latent frames; subclasses say which frames are always observed and
    how many observed slots a stage has. Like SamplingScheme, an instance is iterated once."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    base_class: ClassVar[type[SamplingScheme]]

    def __init__(
        self,
        video_length: int,
        num_observed_frames: int,
        max_frames: int,
        step_size: int,
        *,
        alexnet: str | os.PathLike | None = None,
    ) -> None:
        self.base = self.base_class(video_length, num_observed_frames, max_frames, step_size)
        self.video_length, self.num_observed_frames = self.base.video_length, self.base.num_observed_frames
        self.max_frames, self.step_size = self.base.max_frames, self.base.step_size
        self.alexnet = alexnet  # AlexNet weights for LPIPS; None: the weights directory

    def describe(self) -> str:
        """The scheme and its parameters, for error messages and listings."""
        return (
            f"{self.name or type(self).__name__} (T={self.video_length}, n_obs={self.num_observed_frames}, "
            f"max_frames={self.max_frames}, step_size={self.step_size})"
        )

    @abc.abstractmethod
    def always_observed(self, latent: Sequence[int], done: Sequence[int]) -> list[int]:
        """The done frames (`done` sorted) every video observes when generating `latent`, in priority order."""

    @abc.abstractmethod
    def observed_slots(self) -> int:
        """How many frames the stage the base scheme just chose may observe."""

    def candidate_order(self, done: Sequence[int]) -> list[int]:
        """The done frames in the order that breaks ties between equally distant ones."""
        return list(done)

    def __iter__(self) -> Iterator[AdaptiveStage]:
        """The stages, in order."""
        while True:
            done = sorted(self.base.done)
            unconditional = self.num_observed_frames == 0 and self.base.stage_number == 0
            stage = self.base.next_stage()
            if stage is None:
                return
            if unconditional:
                yield AdaptiveStage(stage.latent, (), (), 0)
                continue
            slots = min(self.observed_slots(), len(done))
            always = tuple(self.always_observed(stage.latent, done))[:slots]
            yield AdaptiveStage(stage.latent, always, tuple(self.candidate_order(done)), slots)

    def stages(self) -> list[AdaptiveStage]:
        """All stages, validated (latent frames, always-observed frames and sizes) before any network call."""
        stages = list(self)
        validate_stages([s.fixed_part() for s in stages], self.video_length, self.num_observed_frames, self.max_frames)
        for number, stage in enumerate(stages):
            if stage.slots + len(stage.latent) > self.max_frames:
                raise SchemeError(
                    f"{self.describe()}, stage {number} would use {stage.slots} observed + {len(stage.latent)} latent "
                    f"frames, more than max_frames={self.max_frames}."
                )
        return stages

    def plan(self) -> AdaptivePlan:
        """The validated stages with the embedding network that chooses observed frames (loaded now, so
        missing weights fail before any network call)."""
        from flexvid.schemes.lpips_selection import load_embedder

        stages = self.stages()
        embedder, weights = load_embedder(self.alexnet, self.name)
        return AdaptivePlan(stages, embedder, weights)


class AdaptivePlan(Sequence[AdaptiveStage]):
    """The stages of an adaptive scheme and what the engine needs to choose each video's observed frames."""

    def __init__(self, stages: Sequence[AdaptiveStage], embedder: Embedder, weights: dict[str, object]) -> None:
        self.stages = list(stages)
        self.embedder = embedder
        self.weights = weights  # file names and SHA-256s of the embedding network's weights: they change the result

    def __len__(self) -> int:
        return len(self.stages)

    def __getitem__(self, index: int) -> AdaptiveStage:  # type: ignore[override]  # (a slice gives a list)
        return self.stages[index]

    def observer(self, device: torch.device | str) -> FarthestPointObserver:
        """A fresh chooser of observed frames for one run (it caches the embeddings of done frames)."""
        from flexvid.schemes.lpips_selection import FarthestPointObserver

        return FarthestPointObserver(self.embedder, device)


__all__ = ["AdaptivePlan", "AdaptiveScheme", "AdaptiveStage"]
