"""The generation engine: stage grouping, batched stages equal one-by-one, long videos in chunks."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch

from flexvid.config import DiffusionConfig
from flexvid.diffusion import respaced, samplers
from flexvid.errors import SchemeError
from flexvid.nn import UNetVideo
from flexvid.sampling.engine import network_calls, run_stages, stage_waves
from flexvid.sampling.long_video import chunk_plan, generate_long
from flexvid.sampling.outputs import NpyStreamWriter
from flexvid.schemes import scheme_stages
from flexvid.schemes.stage import Stage
from flexvid.video_io import to_uint8

from helpers import TINY_NETWORK


def stages_of(name: str, T: int, n_obs: int, K: int, step: int) -> list[Stage]:
    return scheme_stages(name, video_length=T, num_observed_frames=n_obs, max_frames=K, step_size=step)


@pytest.fixture(scope="module")
def tiny_model() -> UNetVideo:
    torch.manual_seed(0)
    config = dataclasses.replace(TINY_NETWORK, in_channels=1, max_frames=6)
    model = UNetVideo(config).eval()
    # Random, non-zero output layers so the test sees real dependence on the inputs.
    for p in model.parameters():
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.02)
    return model


@pytest.fixture(scope="module")
def ddim2():
    diffusion = respaced(DiffusionConfig(diffusion_steps=100), 2, "ddim")
    return diffusion, functools.partial(samplers.ddim_sample, eta=1.0)


def test_waves_never_batch_a_stage_with_one_it_depends_on():
    stages = [Stage((0,), (1, 2)), Stage((2,), (3, 4)), Stage((0,), (5, 6)), Stage((1,), (7, 8)), Stage((0, 4), (9,))]
    assert stage_waves(stages) == [[0, 2], [1, 3], [4]]
    calls = network_calls(stages, batch=2, max_batch=3)
    assert [len(c) for c in calls] == [3, 1, 3, 1, 2]
    assert all(len({(len(stages[s].obs), len(stages[s].latent)) for s, _ in c}) == 1 for c in calls)


def test_hierarchy_infill_stages_are_batched():
    stages = stages_of("hierarchy-3", 60, 4, 8, 4)
    waves = stage_waves(stages)
    assert len(waves) < len(stages)
    done: set[int] = set(range(4))
    for wave in waves:
        for s in wave:
            assert set(stages[s].obs) <= done
        for s in wave:
            done |= set(stages[s].latent)
    assert done == set(range(60))


def test_batched_stages_equal_one_by_one(tiny_model, ddim2):
    diffusion, sample_fn = ddim2
    torch.manual_seed(1)
    T, n_obs = 16, 2
    stages = stages_of("hierarchy-3", T, n_obs, 6, 3)
    start = torch.zeros(2, T, 1, 16, 16)
    start[:, :n_obs] = torch.rand(2, n_obs, 1, 16, 16) * 2 - 1
    batched = run_stages(
        tiny_model, diffusion, start.clone(), stages, sample_fn, seed=3, video_keys=[10, 11], batch_stages=True
    )
    single = run_stages(
        tiny_model, diffusion, start.clone(), stages, sample_fn, seed=3, video_keys=[10, 11], batch_stages=False
    )
    alone = run_stages(
        tiny_model, diffusion, start[1:].clone(), stages, sample_fn, seed=3, video_keys=[11], batch_stages=False
    )
    assert len(stage_waves(stages)) < len(stages)
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(batched[1], alone[0], atol=1e-4, rtol=1e-4)
    assert torch.equal(batched[:, :n_obs], start[:, :n_obs])
    assert (batched[:, n_obs:].abs().sum(dim=(2, 3, 4)) > 0).all()
    other_seed = run_stages(tiny_model, diffusion, start.clone(), stages, sample_fn, seed=4, video_keys=[10, 11])
    assert not torch.allclose(other_seed, batched)


def test_chunk_plan_covers_every_frame_once():
    for total, n_obs, length, context in [(100, 5, 30, 10), (31, 0, 30, 8), (30, 3, 30, 10), (1000, 10, 64, 16)]:
        plan = chunk_plan(total, n_obs, length, context)
        new = []
        for i, (offset, size, known) in enumerate(plan):
            assert size <= length and known < size
            new.extend(range(offset if i == 0 else offset + known, offset + size))
        assert new == list(range(total))
    with pytest.raises(SchemeError, match="context"):
        chunk_plan(100, 4, 30, 30)


def test_long_video_streams_to_disk_in_chunks(tiny_model, ddim2, tmp_path):
    diffusion, sample_fn = ddim2
    total, n_obs, chunk, context = 30, 2, 12, 4
    observed = torch.rand(1, n_obs, 1, 16, 16) * 2 - 1
    writer = NpyStreamWriter(tmp_path / "long.npy", (total, 1, 16, 16))
    starts = []

    def emit(start: int, frames: torch.Tensor) -> None:
        starts.append(start)
        writer.write(to_uint8(frames[0]))

    make = lambda length, known: stages_of("autoreg", length, known, 6, 3)  # noqa: E731
    generate_long(
        tiny_model,
        diffusion,
        observed,
        total,
        make,
        sample_fn,
        emit,
        chunk_length=chunk,
        context=context,
        seed=0,
        video_keys=[0],
    )
    writer.close()
    video = np.load(tmp_path / "long.npy")
    assert video.shape == (total, 1, 16, 16) and video.dtype == np.uint8
    assert starts == [0, 12, 20, 28]
    np.testing.assert_array_equal(video[:n_obs], to_uint8(observed[0]))
    assert not (tmp_path / "long.npy").with_suffix(".tmp").exists()


def test_stream_writer_never_leaves_a_partial_file(tmp_path):
    writer = NpyStreamWriter(tmp_path / "v.npy", (4, 1, 2, 2))
    writer.write(np.zeros((2, 1, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="only 2 of 4"):
        writer.close()
    assert list(tmp_path.iterdir()) == []
