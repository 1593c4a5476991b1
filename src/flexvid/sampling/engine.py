"""Run a sampling scheme over a batch of videos: build each stage's input, sample, write frames back.

Stages whose observed frames were all finished before the stage group started do not depend on each
other, so they run together in one batched network call (up to `max_batch` rows). Each (video,
stage) row draws its noise from its own generator, seeded from (seed, video, stage), so batching
changes the speed, not the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from flexvid.errors import SchemeError

# sample_fn(model, diffusion, x0, model_kwargs, *, generator) -> Tensor, as in flexvid.diffusion.samplers
SampleFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Stage:
    """One step of a sampling scheme: frames to condition on and frames to generate."""

    obs: tuple[int, ...]
    latent: tuple[int, ...]

    @classmethod
    def of(cls, obs: Iterable[int], latent: Iterable[int]) -> "Stage":
        return cls(tuple(int(i) for i in obs), tuple(int(i) for i in latent))


def stage_seed(seed: int, video_key: int, stage_index: int) -> int:
    """A 63-bit seed for one (video, stage) row, independent of batching."""
    state = np.random.SeedSequence([seed, video_key, stage_index]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def group_stages(stages: Sequence[Stage], max_group: int) -> list[list[int]]:
    """Split the stage list into runs of consecutive stages that can be sampled together.

    A stage joins the current group when none of its observed frames is generated inside the
    group, its frames have the same counts as the group's (same network input shape), and the
    group holds fewer than `max_group` stages.
    """
    groups: list[list[int]] = []
    pending_latent: set[int] = set()
    for index, stage in enumerate(stages):
        if groups:
            group = groups[-1]
            first = stages[group[0]]
            same_shape = (len(stage.obs), len(stage.latent)) == (len(first.obs), len(first.latent))
            independent = not (set(stage.obs) & pending_latent)
            if same_shape and independent and len(group) < max_group:
                group.append(index)
                pending_latent.update(stage.latent)
                continue
        groups.append([index])
        pending_latent = set(stage.latent)
    return groups


def stage_inputs(
    videos: torch.Tensor, rows: Sequence[tuple[int, Stage]]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The network input for rows of (video position in batch, stage): frames, indices and masks.

    Frames are ordered observed first, then latent, as in the reference implementation.
    """
    frame_indices = torch.tensor([list(stage.obs) + list(stage.latent) for _, stage in rows])
    x0 = torch.stack([videos[b, idx] for (b, _), idx in zip(rows, frame_indices)])
    n_obs = len(rows[0][1].obs)
    obs_mask = torch.zeros(frame_indices.shape, dtype=videos.dtype)
    obs_mask[:, :n_obs] = 1.0
    obs_mask = obs_mask.view(*obs_mask.shape, 1, 1, 1)
    model_kwargs = {
        "frame_indices": frame_indices,
        "obs_mask": obs_mask,
        "latent_mask": 1.0 - obs_mask,
        "x0": x0,
    }
    return x0, model_kwargs


@torch.no_grad()
def run_stages(
    model: torch.nn.Module,
    diffusion: object,
    videos: torch.Tensor,
    stages: Sequence[Stage],
    sample_fn: SampleFn,
    *,
    seed: int,
    video_keys: Sequence[int],
    batch_stages: bool = True,
    max_batch: int = 64,
    device: torch.device | str = "cpu",
    on_stage: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Fill in `videos` (B, T, C, H, W) in place, stage by stage, and return it.

    `video_keys` identifies each video for seeding (e.g. its dataset index), so a video's frames do
    not depend on the batch it is in. `on_stage(n)` is called after every n finished stages.
    """
    if len(video_keys) != videos.shape[0]:
        raise SchemeError(f"Got {len(video_keys)} video keys for {videos.shape[0]} videos.")
    batch = videos.shape[0]
    max_group = max(1, max_batch // batch) if batch_stages else 1
    for group in group_stages(stages, max_group):
        rows = [(b, stages[s]) for s in group for b in range(batch)]
        generators = [
            torch.Generator(device=device).manual_seed(stage_seed(seed, video_keys[b], s))
            for s in group
            for b in range(batch)
        ]
        for start in range(0, len(rows), max_batch):
            chunk = rows[start : start + max_batch]
            x0, model_kwargs = stage_inputs(videos, chunk)
            model_kwargs = {k: v.to(device) for k, v in model_kwargs.items()}
            out = sample_fn(
                model,
                diffusion,
                x0.to(device),
                model_kwargs,
                generator=generators[start : start + max_batch],
            ).to(videos.device, videos.dtype)
            for row, (b, stage) in enumerate(chunk):
                videos[b, list(stage.latent)] = out[row, len(stage.obs) :]
        if on_stage is not None:
            on_stage(len(group))
    return videos
