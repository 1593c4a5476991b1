"""One stage of a sampling scheme: the frames a network call conditions on and the frames it generates."""

from __future__ import annotations

from typing import NamedTuple


class Stage(NamedTuple):
    """One network call: the frames to condition on and the frames to generate (sorted, distinct)."""

    obs: tuple[int, ...]
    latent: tuple[int, ...]

    def to_dict(self) -> dict[str, list[int]]:
        """The JSON form, {"obs": [...], "latent": [...]}."""
        return {"obs": list(self.obs), "latent": list(self.latent)}
