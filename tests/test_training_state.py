"""What a training checkpoint keeps besides the weights: the timestep sampler's state, and the
statistics the trainer sums between log lines."""

from __future__ import annotations

import io

import pytest
import torch

from flexvid.config import DiffusionConfig
from flexvid.diffusion import build_diffusion
from flexvid.diffusion.timestep_samplers import create_named_schedule_sampler
from flexvid.errors import CheckpointError
from flexvid.training.distributed import DistInfo
from flexvid.training.statistics import TrainingStatistics


def diffusion(steps: int):
    return build_diffusion(DiffusionConfig(diffusion_steps=steps, noise_schedule="cosine"))


def warmed_sampler(steps: int = 6):
    sampler = create_named_schedule_sampler("loss-second-moment", diffusion(steps))
    for round_ in range(sampler.history_per_term + 3):
        sampler.update_with_local_losses(torch.arange(steps), torch.arange(steps, dtype=torch.float32) + round_)
    return sampler


def test_loss_aware_sampler_state_round_trips_through_a_weights_only_file():
    sampler = warmed_sampler()
    buffer = io.BytesIO()
    torch.save(sampler.state_dict(), buffer)
    buffer.seek(0)
    restored = create_named_schedule_sampler("loss-second-moment", diffusion(6))
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.warmed_up() and (restored.weights() == sampler.weights()).all()
    draws = [s.sample(32, "cpu", generator=torch.Generator().manual_seed(1)) for s in (sampler, restored)]
    assert all(torch.equal(a, b) for a, b in zip(*draws, strict=True))
    sampler.state_dict()["loss_history"][:] = 0  # a copy: the sampler's own history is untouched
    assert sampler.warmed_up() and sampler.loss_history.any()


def test_sampler_state_must_fit_the_sampler():
    uniform = create_named_schedule_sampler("uniform", diffusion(6))
    assert uniform.state_dict() == {}
    uniform.load_state_dict({})
    other_steps = create_named_schedule_sampler("loss-second-moment", diffusion(8))
    with pytest.raises(CheckpointError, match=r"loss_history has shape \(6, 10\), but this run needs \(8, 10\)"):
        other_steps.load_state_dict(warmed_sampler().state_dict())
    with pytest.raises(CheckpointError, match="holds no loss-second-moment loss_history"):
        other_steps.load_state_dict({})


def test_statistics_sum_examples_and_give_means_per_quarter_of_the_steps():
    t = torch.tensor([0, 1, 5, 9])  # 10 steps: quarters [0, 2.5), [2.5, 5), [5, 7.5), [7.5, 10)
    stats = TrainingStatistics()
    stats.add_(TrainingStatistics.of_examples(t[:2], torch.tensor([1.0, 3.0]), torch.tensor([0.5, 0.5]), 10))
    stats.add_(TrainingStatistics.of_examples(t[2:], torch.tensor([5.0, 7.0]), torch.tensor([1.5, 1.5]), 10))
    assert stats.means() == {"loss": 4.0, "mse": 1.0, "loss_q0": 2.0, "loss_q2": 5.0, "loss_q3": 7.0}
    single = stats.all_reduced(DistInfo(0, 1, 0, torch.device("cpu")))  # one process: the same sums
    assert single.means() == stats.means() and single is not stats
    assert stats.is_finite()
    assert not TrainingStatistics.of_examples(t[:1], torch.tensor([float("nan")]), torch.zeros(1), 10).is_finite()
    assert TrainingStatistics().means() == {"loss": 0.0, "mse": 0.0}
