"""Likelihood helpers for the variational bound: Gaussian KL, discretized Gaussian log-likelihood, masked means."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """Elementwise KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: Tensor) -> Tensor:
    """The tanh approximation of the standard normal CDF used by the reference decoder likelihood."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(x: Tensor, *, means: Tensor, log_scales: Tensor) -> Tensor:
    """Elementwise log-probability of 8-bit pixel values `x` (scaled to [-1, 1]) under a discretized Gaussian.

    Each value owns a bin of width 2/255; the outermost bins extend to -inf and +inf.
    """
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_upper = approx_standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_lower = approx_standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_upper = torch.log(cdf_upper.clamp(min=1e-12))
    log_one_minus_cdf_lower = torch.log((1.0 - cdf_lower).clamp(min=1e-12))
    log_bin = torch.log((cdf_upper - cdf_lower).clamp(min=1e-12))
    return torch.where(
        x < -0.999,
        log_cdf_upper,
        torch.where(x > 0.999, log_one_minus_cdf_lower, log_bin),
    )


def masked_mean(values: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-example mean over all non-batch dims after zeroing masked-out elements.

    As in the reference, the divisor is the total element count, not the number kept.
    """
    if mask is not None:
        values = values * mask
    return values.mean(dim=tuple(range(1, values.ndim)))


__all__ = [
    "approx_standard_normal_cdf",
    "discretized_gaussian_log_likelihood",
    "masked_mean",
    "normal_kl",
]
