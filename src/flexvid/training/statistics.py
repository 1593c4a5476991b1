"""Training statistics of one logging window: loss sums overall and per quarter of the diffusion steps.

Sums (not means) are kept so steps and processes add up exactly; `means()` turns them into the
logged metrics. Everything is float64 on the CPU.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from flexvid.training.distributed import DistInfo, all_reduce_sum

QUARTERS = 4  # the diffusion steps are split into this many equal ranges for `loss_q<i>`


def _zeros(*shape: int) -> Tensor:
    return torch.zeros(shape, dtype=torch.float64)


@dataclass
class TrainingStatistics:
    """Sums over examples of the importance-weighted loss and MSE, the example count, and the loss sum
    and example count per quarter of the diffusion steps."""

    loss: Tensor = field(default_factory=_zeros)
    mse: Tensor = field(default_factory=_zeros)
    count: Tensor = field(default_factory=_zeros)
    quarter_loss: Tensor = field(default_factory=lambda: _zeros(QUARTERS))
    quarter_count: Tensor = field(default_factory=lambda: _zeros(QUARTERS))

    @classmethod
    def of_examples(cls, t: Tensor, loss: Tensor, mse: Tensor, num_timesteps: int) -> TrainingStatistics:
        """The statistics of examples with diffusion steps `t` and per-example `loss` and `mse` (all (B,))."""
        quarter = (t.cpu() * QUARTERS // num_timesteps).clamp(max=QUARTERS - 1)
        loss, mse = loss.detach().double().cpu(), mse.detach().double().cpu()
        return cls(
            loss=loss.sum(),
            mse=mse.sum(),
            count=torch.tensor(float(len(loss)), dtype=torch.float64),
            quarter_loss=_zeros(QUARTERS).index_add_(0, quarter, loss),
            quarter_count=_zeros(QUARTERS).index_add_(0, quarter, torch.ones_like(loss)),
        )

    def all_reduced(self, dist: DistInfo) -> TrainingStatistics:
        """The sums over every process, in one all-reduce (on `dist.device`) of all fields packed together."""
        values = [getattr(self, f.name) for f in dataclasses.fields(self)]
        packed = all_reduce_sum(torch.cat([v.reshape(-1) for v in values]).to(dist.device), dist).cpu()
        parts = packed.split([v.numel() for v in values])
        return TrainingStatistics(*(part.reshape(v.shape) for part, v in zip(parts, values, strict=True)))

    def add_(self, other: TrainingStatistics) -> TrainingStatistics:
        """Add `other`'s sums to these, in place."""
        for f in dataclasses.fields(self):
            getattr(self, f.name).add_(getattr(other, f.name))
        return self

    def is_finite(self) -> bool:
        """Whether the loss sum is finite (a NaN or infinite loss anywhere makes it not)."""
        return math.isfinite(float(self.loss))

    def means(self) -> dict[str, float]:
        """`loss` and `mse` per example, and `loss_q<i>` for each quarter of the steps that had examples."""
        count = max(float(self.count), 1.0)
        means = {"loss": float(self.loss) / count, "mse": float(self.mse) / count}
        for q in range(QUARTERS):
            if self.quarter_count[q] > 0:
                means[f"loss_q{q}"] = float(self.quarter_loss[q] / self.quarter_count[q])
        return means


__all__ = ["QUARTERS", "TrainingStatistics"]
