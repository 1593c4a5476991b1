"""Training diagnostics: does the network use its observed frames, and do its samples look like the data?

- *Conditioning gain*: on a fixed batch (first K/2 frames observed, next K/2 latent), the latent
  frames' epsilon-MSE with the observed frames turned into padding, divided by the MSE with them.
  A gain near 1 means the network ignores its conditioning; it rises as the network learns to use it.
- *Sample statistics*: mean brightness of generated and true latent frames (on [0, 1]), and the PSNR
  of the first generated frame, where motion is nearly deterministic.
"""

from __future__ import annotations

import dataclasses

import torch

from flexvid.diffusion.gaussian import GaussianDiffusion
from flexvid.frame_batch import FrameBatch

GAIN_TIMESTEPS = (200, 500, 800)  # diffusion steps (of 1000) at which the gain is measured


@torch.no_grad()
def conditioning_gain(
    model: torch.nn.Module,
    diffusion: GaussianDiffusion,
    batch: FrameBatch,
    *,
    timesteps: tuple[int, ...] = GAIN_TIMESTEPS,
    seed: int = 0,
) -> dict[str, float]:
    """`{"cond_gain_t<t>": MSE without / MSE with observed frames}` on the latent frames, one per timestep.

    The noise is fixed by `seed`.
    """
    x0, latent = batch.x0, batch.latent_mask
    generator = torch.Generator(device=x0.device).manual_seed(seed)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    without = dataclasses.replace(batch, obs_mask=torch.zeros_like(batch.obs_mask))
    gains: dict[str, float] = {}
    for step in timesteps:
        t = torch.full((x0.shape[0],), min(step, diffusion.num_timesteps - 1), dtype=torch.long, device=x0.device)
        x_t = diffusion.q_sample(x0, t, noise=noise)
        errors = []
        for inputs in (batch, without):
            output = diffusion.run_model(model, x_t, t, inputs)[:, :, : x0.shape[2]]
            eps = diffusion.predict_eps_from_xstart(x_t, t, output) if diffusion.predicts_xstart else output
            errors.append(float(((eps - noise) ** 2 * latent).sum() / (latent.sum() * x0[0, 0].numel())))
        gains[f"cond_gain_t{step}"] = errors[1] / max(errors[0], 1e-12)
    return gains


def sample_statistics(truth: torch.Tensor, samples: torch.Tensor, latent_mask: torch.Tensor) -> dict[str, float]:
    """Mean brightness of the generated and true latent frames on [0, 1], and the first generated frame's PSNR."""
    latent = latent_mask.bool().view(latent_mask.shape[:2])
    generated = (samples[latent].float().clamp(-1, 1) + 1) / 2
    target = (truth[latent].float().clamp(-1, 1) + 1) / 2
    first = latent.float().argmax(dim=1)
    rows = torch.arange(truth.shape[0])
    mse = (((samples[rows, first] - truth[rows, first]).float().clamp(-2, 2) / 2) ** 2).mean(dim=(1, 2, 3))
    return {
        "sample_brightness": float(generated.mean()),
        "truth_brightness": float(target.mean()),
        "sample_psnr_first": float((10 * torch.log10(1 / mse.clamp(min=1e-10))).mean()),
    }
