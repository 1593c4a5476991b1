"""The one seed derivation (flexvid.seeding) and the properties built on it: a sampled video's noise
depends only on (seed, video key, stage), whatever else shares its batch."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from flexvid.errors import ConfigError
from flexvid.sampling.engine import run_stages
from flexvid.schemes.stage import Stage
from flexvid.seeding import Stream, derive_seed, generator, numpy_rng, seed_global_rngs


def test_seeds_are_pure_63_bit_functions_of_the_whole_entropy():
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3)
    seeds = {derive_seed(*entropy) for entropy in [(), (0,), (0, 0), (1, 2), (1, 2, 0), (2, 1), (1, 2, 3)]}
    assert len(seeds) == 7  # trailing zeros and order count (SeedSequence alone pads with zeros)
    assert all(0 <= seed < 2**63 for seed in seeds)
    assert derive_seed(Stream.TIMESTEPS, 5) == derive_seed(int(Stream.TIMESTEPS), 5)
    assert len({derive_seed(stream, 0, 0) for stream in Stream}) == len(Stream)  # streams never share a seed
    with pytest.raises(ConfigError, match="non-negative"):
        derive_seed(0, -1)


def test_generators_repeat_their_draws():
    assert torch.equal(torch.rand(4, generator=generator(3, 4)), torch.rand(4, generator=generator(3, 4)))
    assert not torch.equal(torch.rand(4, generator=generator(3, 4)), torch.rand(4, generator=generator(3, 5)))
    assert numpy_rng(3, 4).integers(1 << 30) == numpy_rng(3, 4).integers(1 << 30)
    seed_global_rngs(7)
    first = (float(torch.rand(1)), float(np.random.rand()), random.random())
    seed_global_rngs(7)
    assert (float(torch.rand(1)), float(np.random.rand()), random.random()) == first


def noise_sample(model, diffusion, batch, *, generator):
    """A stand-in sampler whose output is each row's noise: one generator per row, as the engine gives."""
    return torch.stack([torch.randn(batch.x0.shape[1:], generator=g) for g in generator])


def run(keys: list[int], seed: int, stages: list[Stage]) -> torch.Tensor:
    videos = torch.zeros(len(keys), 4, 1, 2, 2)
    return run_stages(None, None, videos, stages, noise_sample, seed=seed, video_keys=keys)


def test_a_videos_noise_depends_only_on_seed_key_and_stage():
    stages = [Stage((), (0, 1)), Stage((0, 1), (2, 3))]
    together = run([3, 8, 5], seed=1, stages=stages)
    alone = run([8], seed=1, stages=stages)
    assert torch.equal(together[1], alone[0])  # batch composition plays no part
    assert not torch.equal(together[0], together[1])  # the key does
    assert not torch.equal(run([8], seed=2, stages=stages), alone)  # and the seed
    swapped = run([8], seed=1, stages=[Stage((), (2, 3)), Stage((2, 3), (0, 1))])
    assert torch.equal(swapped[0, 2:], alone[0, :2])  # stage 0's noise, wherever stage 0 puts it
