"""Exponential moving averages of the network's parameters, at one or more rates.

Sampling from the EMA weights gives much better videos than the raw weights (as in the paper).
"""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Shadow copies of a model's parameters, one per rate: ema <- rate * ema + (1 - rate) * param."""

    def __init__(self, model: nn.Module, rates: tuple[float, ...]) -> None:
        self.rates = tuple(float(r) for r in rates)
        self._names = [name for name, _ in model.named_parameters()]
        self.shadows: dict[float, list[torch.Tensor]] = {
            rate: [p.detach().clone() for p in model.parameters()] for rate in self.rates
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move every average one step towards the model's current parameters."""
        params = [p.detach() for p in model.parameters()]
        for rate, shadow in self.shadows.items():
            torch._foreach_mul_(shadow, rate)
            torch._foreach_add_(shadow, params, alpha=1.0 - rate)

    def state_dict(self, rate: float, model: nn.Module) -> dict[str, torch.Tensor]:
        """A full model state dict with the parameters replaced by the average at `rate`."""
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for name, value in zip(self._names, self.shadows[rate], strict=True):
            state[name] = value.detach().clone()
        return state

    def load_state_dict(self, rate: float, state: dict[str, torch.Tensor]) -> None:
        """Restore the average at `rate` from a state dict written by `state_dict`."""
        shadow = self.shadows[rate]
        with torch.no_grad():
            for i, name in enumerate(self._names):
                shadow[i].copy_(state[name])
