"""Videos of any length: a sampling scheme run chunk by chunk, each chunk conditioned on the end of
the previous one, with finished frames handed to a callback (e.g. streamed to disk).

Only one chunk of frames is ever held in memory, so memory stays bounded whatever the length.
Frame indices restart at 0 in every chunk, so the network never sees distances longer than
`chunk_length` (keep it at most the video length it was trained on).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from flexvid.errors import SchemeError
from flexvid.sampling.engine import SampleFn, Stages, run_stages
from flexvid.seeding import Stream, derive_seed

# make_stages(video_length, num_observed_frames) -> the validated stages (or adaptive plan) of one chunk
MakeStages = Callable[[int, int], Stages]


def chunk_plan(total_length: int, n_obs: int, chunk_length: int, context: int) -> list[tuple[int, int, int]]:
    """The chunks as (offset, length, observed frames at their start) covering `total_length` frames."""
    if total_length <= chunk_length:
        return [(0, total_length, n_obs)]
    if not 0 < context < chunk_length:
        raise SchemeError(
            f"Long videos need 0 < context ({context}) < chunk_length ({chunk_length}): each chunk "
            "conditions on the last `context` frames of the previous one and must add new frames."
        )
    if n_obs > chunk_length:
        raise SchemeError(f"n_obs ({n_obs}) cannot exceed chunk_length ({chunk_length}).")
    plan = [(0, chunk_length, n_obs)]
    offset = chunk_length - context
    while offset + context < total_length:
        length = min(chunk_length, total_length - offset)
        plan.append((offset, length, context))
        offset += length - context
    return plan


@torch.no_grad()
def generate_long(
    model: torch.nn.Module,
    diffusion: object,
    observed: torch.Tensor,
    total_length: int,
    make_stages: MakeStages,
    sample_fn: SampleFn,
    emit: Callable[[int, torch.Tensor], None],
    *,
    chunk_length: int,
    context: int,
    seed: int,
    video_keys: Sequence[int],
    batch_stages: bool = True,
    max_batch: int = 64,
    device: torch.device | str = "cpu",
    on_rows: Callable[[int], object] | None = None,
) -> None:
    """Generate `total_length` frames for each video in the batch, starting from `observed`
    (B, n_obs, C, H, W), and call `emit(start, frames)` with each run of finished frames
    (B, n, C, H, W) in order, `start` being the index of the first one. Chunk c is seeded with
    `derive_seed(Stream.CHUNK, seed, c)`.
    """
    batch, n_obs = observed.shape[:2]
    plan = chunk_plan(total_length, n_obs, chunk_length, context)
    buffer = torch.zeros(batch, max(length for _, length, _ in plan), *observed.shape[2:], dtype=observed.dtype)
    buffer[:, :n_obs] = observed
    for chunk_index, (offset, length, known) in enumerate(plan):
        stages = make_stages(length, known)
        run_stages(
            model,
            diffusion,
            buffer[:, :length],
            stages,
            sample_fn,
            seed=derive_seed(Stream.CHUNK, seed, chunk_index),
            video_keys=video_keys,
            batch_stages=batch_stages,
            max_batch=max_batch,
            device=device,
            on_rows=on_rows,
        )
        first_new = 0 if chunk_index == 0 else known
        emit(offset + first_new, buffer[:, first_new:length].clone())
        if chunk_index + 1 < len(plan):
            buffer[:, :context] = buffer[:, length - context : length].clone()
