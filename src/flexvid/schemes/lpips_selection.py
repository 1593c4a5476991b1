"""Choosing observed frames by farthest-point selection on the LPIPS (AlexNet) embedding, as the authors'
adaptive schemes do: after the frames every video observes, add the done frame whose LPIPS distance to
its nearest chosen frame is largest, until the stage's slots are full.

LPIPS distance is the squared Euclidean distance between `LPIPS.embed` vectors, so each done frame is
embedded once per run and cached. Frames smaller than AlexNet can take are upsampled first.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from flexvid.errors import WeightsError

if TYPE_CHECKING:
    from flexvid.eval.lpips import LPIPS
    from flexvid.schemes.adaptive import AdaptiveStage

MIN_SIDE = 32  # AlexNet's five layers need frames of at least 31 pixels; smaller ones are upsampled to this
EMBED_BATCH = 256  # frames per embedding call


class Embedder(Protocol):
    """What selection needs of a network: vectors whose squared distances are the frames' distances."""

    def embed(self, frames: Tensor) -> Tensor: ...

    def to(self, device: Any) -> Any: ...


@functools.lru_cache(maxsize=2)
def _cached_lpips(alexnet: str | None) -> tuple[LPIPS, dict[str, object]]:
    """The LPIPS network and its weights' provenance, loaded once per process and AlexNet file."""
    from flexvid.eval.lpips import load_lpips

    return load_lpips(alexnet)


def load_embedder(alexnet: str | os.PathLike | None, scheme_name: str) -> tuple[LPIPS, dict[str, object]]:
    """The LPIPS network for scheme `scheme_name` and the file names and SHA-256s of its weights; missing
    weights are a WeightsError saying where they go."""
    try:
        return _cached_lpips(None if alexnet is None else str(Path(alexnet).expanduser()))
    except WeightsError as err:
        raise WeightsError(
            f"{scheme_name} chooses observed frames by LPIPS distance, so it needs the LPIPS weights: "
            f"{str(err).rstrip('.')}; a scheme YAML file may instead give the AlexNet file as 'alexnet: FILE'."
        ) from None


def farthest_point(embeddings: Tensor, start: Sequence[int], count: int) -> Tensor:
    """(B, count) positions among the N candidates of `embeddings` (B, N, D): first `start` (the first
    candidate when empty), then each time the one whose squared distance to its nearest chosen one is
    largest (ties: the earliest candidate)."""
    batch, size, _ = embeddings.shape
    assert count <= size and len(start) <= count
    rows = torch.arange(batch, device=embeddings.device)
    start = list(start) or [0]
    chosen = torch.empty(batch, count, dtype=torch.long, device=embeddings.device)
    taken = torch.zeros(batch, size, dtype=torch.bool, device=embeddings.device)
    nearest = torch.full((batch, size), float("inf"), device=embeddings.device)
    for step in range(count):
        if step < len(start):
            pick = torch.full((batch,), start[step], dtype=torch.long, device=embeddings.device)
        else:
            pick = nearest.masked_fill(taken, -1.0).argmax(dim=1)
        chosen[:, step] = pick
        taken[rows, pick] = True
        newest = embeddings[rows, pick]
        nearest = torch.minimum(nearest, (embeddings - newest[:, None]).pow(2).sum(dim=2))
    return chosen


class FarthestPointObserver:
    """Chooses each video's observed frames for the stages of one run, embedding every done frame once."""

    def __init__(self, embedder: Embedder, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.embedder = embedder.to(self.device)
        self.cache: dict[int, Tensor] = {}  # frame index -> (B, D) embeddings of that frame in every video

    def observed(self, stage: AdaptiveStage, videos: Tensor) -> list[tuple[int, ...]]:
        """The sorted observed frames of each video of `videos` (B, T, C, H, W) for `stage`."""
        if stage.slots == 0:
            return [() for _ in range(videos.shape[0])]
        self._embed_missing(videos, stage.candidates)
        embeddings = torch.stack([self.cache[frame] for frame in stage.candidates], dim=1)
        position = {frame: index for index, frame in enumerate(stage.candidates)}
        picks = farthest_point(embeddings, [position[frame] for frame in stage.always], stage.slots)
        return [tuple(sorted(stage.candidates[i] for i in row)) for row in picks.tolist()]

    def _embed_missing(self, videos: Tensor, frames: Sequence[int]) -> None:
        """Embed the frames not seen before, in every video, in batches."""
        missing = [frame for frame in frames if frame not in self.cache]
        if not missing:
            return
        images = videos[:, missing].flatten(0, 1)  # video-major: row b * len(missing) + j
        vectors = torch.cat(
            [
                self.embedder.embed(_alexnet_sized(chunk.to(self.device, torch.float32)))
                for chunk in images.split(EMBED_BATCH)
            ]
        ).view(videos.shape[0], len(missing), -1)
        for j, frame in enumerate(missing):
            self.cache[frame] = vectors[:, j]


def _alexnet_sized(images: Tensor) -> Tensor:
    """Images (N, C, H, W), bilinearly upsampled so the shorter side is at least MIN_SIDE."""
    height, width = images.shape[-2:]
    if min(height, width) >= MIN_SIDE:
        return images
    scale = MIN_SIDE / min(height, width)
    return F.interpolate(
        images, size=(round(height * scale), round(width * scale)), mode="bilinear", align_corners=False
    )


__all__ = ["Embedder", "FarthestPointObserver", "MIN_SIDE", "farthest_point", "load_embedder"]
