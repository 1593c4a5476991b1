"""Beta schedules of the forward diffusion process (float64, as in the reference implementation)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from flexvid.errors import ConfigError

NOISE_SCHEDULES = ("linear", "cosine")


def linear_betas(num_steps: int) -> np.ndarray:
    """Ho et al.'s linear schedule from 1e-4 to 0.02, rescaled so any step count covers the same range."""
    scale = 1000.0 / num_steps
    return np.linspace(scale * 0.0001, scale * 0.02, num_steps, dtype=np.float64)


def betas_for_alpha_bar(num_steps: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999) -> np.ndarray:
    """Betas whose cumulative product of (1 - beta) follows `alpha_bar` on [0, 1], each capped at `max_beta`."""
    betas = []
    for i in range(num_steps):
        t_start, t_end = i / num_steps, (i + 1) / num_steps
        betas.append(min(1.0 - alpha_bar(t_end) / alpha_bar(t_start), max_beta))
    return np.array(betas, dtype=np.float64)


def cosine_alpha_bar(t: float, offset: float = 0.008) -> float:
    """Nichol & Dhariwal's cosine alpha-bar at time t in [0, 1] (not normalised by its value at 0)."""
    return math.cos((t + offset) / (1.0 + offset) * math.pi / 2) ** 2


def get_named_beta_schedule(name: str, num_steps: int) -> np.ndarray:
    """The betas of schedule `name` ("linear" or "cosine") for `num_steps` diffusion steps."""
    if num_steps < 2:
        raise ConfigError(f"diffusion_steps must be at least 2, got {num_steps}.")
    if name == "linear":
        if num_steps <= 20:
            raise ConfigError(
                f"The linear noise schedule needs more than 20 diffusion steps (its last beta is "
                f"20 / steps), got {num_steps}; use more steps or the cosine schedule."
            )
        return linear_betas(num_steps)
    if name == "cosine":
        return betas_for_alpha_bar(num_steps, cosine_alpha_bar)
    raise ConfigError(f"Unknown noise_schedule {name!r}: choose one of {', '.join(NOISE_SCHEDULES)}.")


__all__ = [
    "NOISE_SCHEDULES",
    "betas_for_alpha_bar",
    "cosine_alpha_bar",
    "get_named_beta_schedule",
    "linear_betas",
]
