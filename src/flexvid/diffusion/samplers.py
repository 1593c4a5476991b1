"""DDPM ancestral and DDIM sampling of the latent frames of a video batch, with observed frames held fixed.

Both samplers share one signature. The number of steps is that of the diffusion passed in (build
it with `flexvid.diffusion.respaced`). `generator` may be None (global RNG), one torch.Generator,
or a list with one Generator per batch row; with a list, each row's noise comes from its own
generator, so a row's result does not depend on the rest of the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from flexvid.diffusion.gaussian import GaussianDiffusion, Model, extract
from flexvid.errors import ConfigError
from flexvid.frame_batch import FrameBatch

Generators = torch.Generator | Sequence[torch.Generator] | None
# Called after every step with (step index t, current sample x_t-1, predicted x_0).
StepCallback = Callable[[int, Tensor, Tensor], None]


def _gaussian_noise(shape: torch.Size, generator: Generators, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Standard normal noise of `shape`, drawn row by row when given one generator per row."""
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    if isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)
    rows = [torch.randn(shape[1:], generator=g, device=g.device, dtype=dtype) for g in generator]
    return torch.stack(rows).to(device)


def _sample_loop(
    step: Callable[[dict[str, Tensor], Tensor, Tensor, Tensor], Tensor],
    model: Model,
    diffusion: GaussianDiffusion,
    batch: FrameBatch,
    generator: Generators,
    clip_denoised: bool,
    progress: bool,
    callback: StepCallback | None,
) -> Tensor:
    """Run `step(p_mean_variance output, x_t, t, noise) -> x_{t-1}` from t = T-1 to 0, re-clamping observed frames."""
    x0 = batch.x0
    assert generator is None or isinstance(generator, torch.Generator) or len(generator) == x0.shape[0], (
        f"Got {len(generator)} generators for a batch of {x0.shape[0]} videos; pass one generator per video"
    )
    observed = batch.obs_mask > 0.5
    x = torch.where(observed, x0, _gaussian_noise(x0.shape, generator, x0.device, x0.dtype))
    indices: Any = range(diffusion.num_timesteps - 1, -1, -1)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="denoising", leave=False)
    for i in indices:
        t = torch.full((x0.shape[0],), i, dtype=torch.int64, device=x0.device)
        out = diffusion.p_mean_variance(model, x, t, batch, clip_denoised=clip_denoised)
        noise = _gaussian_noise(x0.shape, generator, x0.device, x0.dtype)
        x = torch.where(observed, x0, step(out, x, t, noise).to(x0.dtype))
        if callback is not None:
            callback(i, x, out["pred_xstart"])
    return x


@torch.no_grad()
def ddpm_sample(
    model: Model,
    diffusion: GaussianDiffusion,
    batch: FrameBatch,
    *,
    generator: Generators = None,
    clip_denoised: bool = True,
    progress: bool = False,
    callback: StepCallback | None = None,
) -> Tensor:
    """Ancestral sampling: x_{t-1} ~ N(mean, variance) of p(x_{t-1} | x_t), no noise at the last step.

    `batch.x0` holds the observed frames (latent entries are ignored). Returns (B, K, C, H, W) with
    the observed frames equal to `batch.x0`.
    """

    def step(out: dict[str, Tensor], x: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        nonzero = (t != 0).to(out["mean"].dtype).view(-1, 1, 1, 1, 1)
        return out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise

    return _sample_loop(step, model, diffusion, batch, generator, clip_denoised, progress, callback)


@torch.no_grad()
def ddim_sample(
    model: Model,
    diffusion: GaussianDiffusion,
    batch: FrameBatch,
    *,
    generator: Generators = None,
    clip_denoised: bool = True,
    progress: bool = False,
    callback: StepCallback | None = None,
    eta: float = 0.0,
) -> Tensor:
    """DDIM sampling (Song et al., eq. 12) on the diffusion's steps; eta = 0 is deterministic, eta = 1 is DDPM-like.

    Arguments and result as in `ddpm_sample`.
    """
    if eta < 0:
        raise ConfigError(f"DDIM eta must be >= 0, got {eta}.")

    def step(out: dict[str, Tensor], x: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        pred_xstart = out["pred_xstart"]
        eps = diffusion.predict_eps_from_xstart(x, t, pred_xstart)
        alpha_bar = extract(diffusion.alphas_cumprod, t, x)
        alpha_bar_prev = extract(diffusion.alphas_cumprod_prev, t, x)
        sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch.sqrt(1 - alpha_bar / alpha_bar_prev)
        mean = pred_xstart * torch.sqrt(alpha_bar_prev) + torch.sqrt(1 - alpha_bar_prev - sigma**2) * eps
        nonzero = (t != 0).to(mean.dtype).view(-1, 1, 1, 1, 1)
        return mean + nonzero * sigma * noise

    return _sample_loop(step, model, diffusion, batch, generator, clip_denoised, progress, callback)


__all__ = ["ddim_sample", "ddpm_sample"]
