"""Run a sampling scheme over a batch of videos: build each stage's input, sample, write frames back.

A stage's input is a FrameBatch row per video: its observed frames, then its latent ones, as in the
reference implementation.

Fixed stages (a list of Stages) that do not depend on each other (no stage observes a frame another
generates) run together in one batched network call (up to `max_batch` rows). An adaptive plan
(flexvid.schemes.AdaptivePlan) runs one stage at a time: just before a stage, each video's observed
frames are chosen from the frames it has so far, and the stage's rows of all videos share calls. Each
(video, stage) row draws its noise from its own generator, seeded from (seed, video, stage), so
batching changes the speed, not the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from flexvid.frame_batch import FrameBatch
from flexvid.schemes.adaptive import AdaptivePlan
from flexvid.schemes.stage import Stage
from flexvid.seeding import Stream, generator

# What `run_stages` runs: fixed stages, or an adaptive scheme's plan.
Stages = Sequence[Stage] | AdaptivePlan
# One network-call row: (video position in the batch, stage number, the stage as this video runs it).
Row = tuple[int, int, Stage]

# sample_fn(model, diffusion, batch: FrameBatch, *, generator) -> Tensor, as in flexvid.diffusion.samplers
SampleFn = Callable[..., torch.Tensor]


def stage_waves(stages: Sequence[Stage]) -> list[list[int]]:
    """Order the stages into waves of mutually independent stages.

    A stage's wave is one past the latest wave that generates a frame it observes, so every frame
    it conditions on is finished before its wave starts, exactly as in the sequential order. The
    reference's hierarchy-2 is a chain (each infill stage observes the previous one's frames);
    hierarchy-3 and deeper levels have independent infill stages that share a wave.
    """
    made_in_wave: dict[int, int] = {}
    waves: list[list[int]] = []
    for index, stage in enumerate(stages):
        wave = 1 + max((made_in_wave[f] for f in stage.obs if f in made_in_wave), default=-1)
        if wave == len(waves):
            waves.append([])
        waves[wave].append(index)
        made_in_wave.update((f, wave) for f in stage.latent)
    return waves


def network_calls(
    stages: Sequence[Stage], batch: int, max_batch: int, batch_stages: bool = True
) -> list[list[tuple[int, int]]]:
    """The (stage, video) rows of each sampling call: rows of one call share a wave and a shape."""
    groups = stage_waves(stages) if batch_stages else [[i] for i in range(len(stages))]
    calls: list[list[tuple[int, int]]] = []
    for group in groups:
        by_shape: dict[tuple[int, int], list[int]] = {}
        for s in group:
            by_shape.setdefault((len(stages[s].obs), len(stages[s].latent)), []).append(s)
        for same_shape in by_shape.values():
            rows = [(s, b) for s in same_shape for b in range(batch)]
            calls.extend(rows[i : i + max_batch] for i in range(0, len(rows), max_batch))
    return calls


def adaptive_calls(
    plan: AdaptivePlan, videos: torch.Tensor, max_batch: int, device: torch.device | str
) -> Iterator[list[Row]]:
    """The rows of each sampling call of an adaptive plan, stage by stage.

    A stage's observed frames are chosen when its rows are asked for, so the caller must have written
    the previous stage's frames into `videos` before taking the next call.
    """
    observer = plan.observer(device)
    for number, stage in enumerate(plan):
        observed = observer.observed(stage, videos)
        rows = [(b, number, Stage(obs, stage.latent)) for b, obs in enumerate(observed)]
        yield from (rows[i : i + max_batch] for i in range(0, len(rows), max_batch))


def fixed_calls(stages: Sequence[Stage], batch: int, max_batch: int, batch_stages: bool) -> Iterator[list[Row]]:
    """The rows of each sampling call of fixed stages (see `network_calls`)."""
    for call in network_calls(stages, batch, max_batch, batch_stages):
        yield [(b, s, stages[s]) for s, b in call]


@torch.no_grad()
def run_stages(
    model: torch.nn.Module,
    diffusion: object,
    videos: torch.Tensor,
    stages: Stages,
    sample_fn: SampleFn,
    *,
    seed: int,
    video_keys: Sequence[int],
    batch_stages: bool = True,
    max_batch: int = 64,
    device: torch.device | str = "cpu",
    on_rows: Callable[[int], object] | None = None,
) -> torch.Tensor:
    """Fill in `videos` (B, T, C, H, W) in place, stage by stage, and return it.

    `stages` is a list of Stages or an AdaptivePlan (whose stages always run one at a time, whatever
    `batch_stages`). `video_keys` identifies each video for seeding (e.g. its dataset index), so a
    video's frames do not depend on the batch it is in. `on_rows(n)` is called after each network
    call with the number of (video, stage) rows it finished, for progress bars.
    """
    assert len(video_keys) == videos.shape[0], f"Got {len(video_keys)} video keys for {videos.shape[0]} videos"
    if isinstance(stages, AdaptivePlan):
        calls = adaptive_calls(stages, videos, max_batch, device)
    else:
        calls = fixed_calls(stages, videos.shape[0], max_batch, batch_stages)
    for rows in calls:
        generators = [generator(Stream.STAGE, seed, video_keys[b], s, device=device) for b, s, _ in rows]
        batch = FrameBatch.cat(
            [FrameBatch.from_indices(videos[b : b + 1], stage.obs, stage.latent) for b, _, stage in rows]
        )
        out = sample_fn(model, diffusion, batch.to(device), generator=generators)
        out = out.to(videos.device, videos.dtype)
        for row, (b, _, stage) in enumerate(rows):
            videos[b, list(stage.latent)] = out[row, len(stage.obs) :]
        if on_rows is not None:
            on_rows(len(rows))
    return videos
