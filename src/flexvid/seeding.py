"""The one seed derivation: every seeded random number in flexvid comes from a tuple of integers.

`derive_seed(*entropy)` mixes the tuple with NumPy's SeedSequence, prefixed by its length so that
(a, b) and (a, b, 0) differ (SeedSequence pads short entropy with zeros). Each kind of randomness
puts its `Stream` number first, so streams drawn from the same user seed never share a seed.
"""

from __future__ import annotations

import enum
import random

import numpy as np
import torch

from flexvid.errors import ConfigError

_SEED_BITS = 63  # seeds stay valid signed 64-bit integers (tensors, JSON, torch.manual_seed)


class Stream(enum.IntEnum):
    """What a seed is for, the first number of its entropy."""

    PROCESS = 0  # a training process's global RNGs (weight initialisation)
    DATA_ORDER = 1  # the training loader's permutation of the videos in each epoch
    EXAMPLE = 2  # a training example's task and padding frames
    WINDOW = 3  # the random windows of the videos a training example is loaded from
    TIMESTEPS = 4  # a training step's diffusion steps
    TRAINING_NOISE = 5  # a training example's Gaussian noise
    VALIDATION = 6  # the videos of the trainer's fixed validation batch
    VALIDATION_NOISE = 7  # the sampling noise of the trainer's validation videos
    SAMPLE_RUN = 8  # one `flexvid sample` run: its seed and sample index
    CHUNK = 9  # one chunk of a long video
    STAGE = 10  # one (video, stage) row of the sampling engine
    OPTIMIZE_NOISE = 11  # the fixed noise of one stage of `schemes optimize`
    OPTIMIZE_VIDEOS = 12  # the training windows `schemes optimize` estimates losses on
    SCHEME_LOSS = 13  # the timesteps and noise of one test video's scheme loss (`metrics --loss`)


def derive_seed(*entropy: int) -> int:
    """A 63-bit seed that is a pure function of `entropy` (non-negative integers)."""
    if any(int(e) < 0 for e in entropy):
        given = [int(e) for e in entropy]
        raise ConfigError(f"Seeds must be non-negative integers, got {given}; use a --seed of 0 or more.")
    words = np.random.SeedSequence([len(entropy), *map(int, entropy)]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 32 | int(words[1])) >> (64 - _SEED_BITS)


def generator(*entropy: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch Generator on `device` seeded with `derive_seed(*entropy)`."""
    return torch.Generator(device=device).manual_seed(derive_seed(*entropy))


def numpy_rng(*entropy: int) -> np.random.Generator:
    """A NumPy Generator seeded with `derive_seed(*entropy)`."""
    return np.random.default_rng(derive_seed(*entropy))


def seed_global_rngs(*entropy: int) -> None:
    """Seed torch's, NumPy's and Python's global RNGs from `entropy` (for code that draws from them)."""
    seed = derive_seed(*entropy)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


__all__ = ["Stream", "derive_seed", "generator", "numpy_rng", "seed_global_rngs"]
