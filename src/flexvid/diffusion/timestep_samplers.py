"""Distributions over diffusion steps for training, with importance weights that keep the loss unbiased.

"uniform" draws every step equally often; "loss-second-moment" (improved-diffusion's loss-aware
sampler) draws steps in proportion to the root mean square of their recent losses. Samplers with a
history save it with `state_dict()` and restore it with `load_state_dict()`, so training resumes exactly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from flexvid.diffusion.gaussian import GaussianDiffusion
from flexvid.errors import CheckpointError, ConfigError


class ScheduleSampler(ABC):
    """Base class: subclasses define `weights()`, one non-negative value per diffusion step."""

    @abstractmethod
    def weights(self) -> np.ndarray:
        """Unnormalised sampling weights, one per diffusion step."""

    def sample(
        self, batch_size: int, device: torch.device | str, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Steps t (B,) drawn with p proportional to `weights()`, and the importance weights 1 / (N p(t))."""
        probs = torch.from_numpy(self.weights() / np.sum(self.weights()))
        t = torch.multinomial(probs, batch_size, replacement=True, generator=generator)
        importance = 1.0 / (len(probs) * probs[t])
        return t.to(device), importance.float().to(device)

    def update_with_local_losses(self, local_ts: Tensor, local_losses: Tensor) -> None:  # noqa: B027 (an optional hook)
        """Record this process's per-example losses; the fixed samplers ignore them."""

    def state_dict(self) -> dict[str, Tensor]:
        """What a checkpoint keeps of the sampler: nothing for the fixed samplers."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:  # noqa: B027 (an optional hook)
        """Restore what `state_dict()` returned; the fixed samplers have nothing to restore."""


class UniformSampler(ScheduleSampler):
    """Every diffusion step equally likely (all importance weights 1)."""

    def __init__(self, diffusion: GaussianDiffusion) -> None:
        self._weights = np.ones(diffusion.num_timesteps, dtype=np.float64)

    def weights(self) -> np.ndarray:
        return self._weights


class LossSecondMomentResampler(ScheduleSampler):
    """Draw steps in proportion to sqrt(E[loss^2]) over the last `history_per_term` losses of each step.

    Until every step has a full history it samples uniformly; afterwards a `uniform_prob` share of
    the probability stays spread evenly so no step is starved.
    """

    def __init__(self, diffusion: GaussianDiffusion, history_per_term: int = 10, uniform_prob: float = 0.001) -> None:
        self.history_per_term = history_per_term
        self.uniform_prob = uniform_prob
        self.loss_history = np.zeros((diffusion.num_timesteps, history_per_term), dtype=np.float64)
        self.loss_counts = np.zeros(diffusion.num_timesteps, dtype=np.int64)

    def warmed_up(self) -> bool:
        """Whether every step has a full loss history."""
        return bool((self.loss_counts == self.history_per_term).all())

    def weights(self) -> np.ndarray:
        if not self.warmed_up():
            return np.ones(len(self.loss_counts), dtype=np.float64)
        weights = np.sqrt(np.mean(self.loss_history**2, axis=-1))
        weights = weights / np.sum(weights) * (1 - self.uniform_prob)
        return weights + self.uniform_prob / len(weights)

    def update_with_local_losses(self, local_ts: Tensor, local_losses: Tensor) -> None:
        """Record losses from this process, gathering those of all processes when running distributed."""
        ts, losses = local_ts.detach().flatten(), local_losses.detach().float().flatten()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ts, losses = _all_gather_variable(ts), _all_gather_variable(losses)
        self.update_with_all_losses(ts.cpu().tolist(), losses.cpu().tolist())

    def state_dict(self) -> dict[str, Tensor]:
        """The loss history and its fill counts, as tensors (a copy)."""
        return {
            "loss_history": torch.from_numpy(self.loss_history.copy()),
            "loss_counts": torch.from_numpy(self.loss_counts.copy()),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the history saved by `state_dict()`; it must fit this sampler's steps and history length."""
        for key, target in (("loss_history", self.loss_history), ("loss_counts", self.loss_counts)):
            if key not in state:
                raise CheckpointError(
                    f"The checkpoint holds no loss-second-moment {key}; resume with the run's own schedule_sampler."
                )
            if tuple(state[key].shape) != target.shape:
                raise CheckpointError(
                    f"The checkpoint's loss-second-moment {key} has shape {tuple(state[key].shape)}, but this run "
                    f"needs {target.shape}; resume with the run's own diffusion settings."
                )
        self.loss_history[:] = state["loss_history"].numpy()
        self.loss_counts[:] = state["loss_counts"].numpy()

    def update_with_all_losses(self, ts: list[int], losses: list[float]) -> None:
        """Append each loss to its step's history, dropping the oldest once the history is full."""
        for t, loss in zip(ts, losses, strict=True):
            if self.loss_counts[t] == self.history_per_term:
                self.loss_history[t, :-1] = self.loss_history[t, 1:]
                self.loss_history[t, -1] = loss
            else:
                self.loss_history[t, self.loss_counts[t]] = loss
                self.loss_counts[t] += 1


def _all_gather_variable(values: Tensor) -> Tensor:
    """Concatenate a 1-D tensor of possibly different length from every process."""
    size = torch.tensor([values.numel()], device=values.device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=values.dtype, device=values.device)
    padded[: values.numel()] = values
    gathered = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(gathered, padded)
    return torch.cat([g[: int(s.item())] for g, s in zip(gathered, sizes, strict=True)])


SCHEDULE_SAMPLERS = {"uniform": UniformSampler, "loss-second-moment": LossSecondMomentResampler}


def create_named_schedule_sampler(name: str, diffusion: GaussianDiffusion) -> ScheduleSampler:
    """The schedule sampler called `name` ("uniform" or "loss-second-moment") for `diffusion`."""
    if name not in SCHEDULE_SAMPLERS:
        raise ConfigError(f"Unknown schedule sampler {name!r}: choose one of {', '.join(SCHEDULE_SAMPLERS)}.")
    return SCHEDULE_SAMPLERS[name](diffusion)


__all__ = [
    "LossSecondMomentResampler",
    "SCHEDULE_SAMPLERS",
    "ScheduleSampler",
    "UniformSampler",
    "create_named_schedule_sampler",
]
