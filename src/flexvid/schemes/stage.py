"""One stage of a sampling scheme: the frames a network call conditions on and the frames it generates."""

from __future__ import annotations

from typing import NamedTuple

from flexvid.errors import SchemeError


class Stage(NamedTuple):
    """One network call: the frames to condition on and the frames to generate (sorted, distinct)."""

    obs: tuple[int, ...]
    latent: tuple[int, ...]

    def to_dict(self) -> dict[str, list[int]]:
        """The JSON form, {"obs": [...], "latent": [...]}."""
        return {"obs": list(self.obs), "latent": list(self.latent)}


# How the default below reads in help texts.
LATENT_FRAMES_DEFAULT = "max_frames // 2"


def latent_frames_per_stage(max_frames: int, requested: int | None = None) -> int:
    """Frames one stage generates: `requested` when given, else half of the K = `max_frames` frames of a
    network call (rounded down), the paper's default; the other frames are observed."""
    if requested is None and max_frames < 2:
        raise SchemeError(
            f"max_frames={max_frames} leaves no room in a network call for both observed and generated "
            "frames; use max_frames of at least 2."
        )
    return requested if requested is not None else max_frames // 2
