"""The test diffusion loss of a sampling scheme (the paper's "Loss" column): how well the model fits the
conditional distributions that the scheme's stages ask it to sample.

For each stage the network sees K = |obs| + |latent| frames of a test video: the observed ones clean,
the latent ones noised. The diffusion loss on the latent frames is estimated by Monte Carlo over
uniformly drawn timesteps, turned into a sum over the stage's latent frames of per-frame losses, and
summed over stages. Dividing by the number of generated frames gives a per-frame loss.
`latent_eps_mse` is the noise-prediction error of the latent frames alone, at chosen timesteps and noise.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from flexvid.errors import SchemeError

AUTO_TERM = "auto"


def stage_inputs(
    videos: Tensor, obs_indices: Sequence[int], latent_indices: Sequence[int]
) -> tuple[Tensor, dict[str, Tensor]]:
    """The K-frame network input of one stage for a (B, T, C, H, W) batch: frames and model kwargs."""
    indices = list(obs_indices) + list(latent_indices)
    if not latent_indices:
        raise SchemeError("A stage has no latent frames; every stage of a scheme must generate at least one frame.")
    if len(set(indices)) != len(indices) or min(indices) < 0 or max(indices) >= videos.shape[1]:
        raise SchemeError(
            f"Stage frames {indices} repeat or fall outside the {videos.shape[1]}-frame videos; check the scheme."
        )
    batch, device = videos.shape[0], videos.device
    frames = videos[:, indices]
    observed = torch.tensor([1.0] * len(obs_indices) + [0.0] * len(latent_indices), device=device)
    obs_mask = observed.view(1, -1, 1, 1, 1).expand(batch, -1, 1, 1, 1).to(videos.dtype)
    kwargs = {
        "frame_indices": torch.tensor(indices, device=device).view(1, -1).expand(batch, -1),
        "obs_mask": obs_mask,
        "latent_mask": 1 - obs_mask,
        "x0": frames,
    }
    return frames, kwargs


def choose_term(terms: dict[str, Tensor], term: str) -> str:
    """The loss term to report: the variational bound when the model learns its variance, else eval-mse."""
    if term == AUTO_TERM:
        return "vb" if "vb" in terms else "eval-mse"
    if term not in terms:
        raise SchemeError(f"The diffusion loss has no term {term!r}; choose one of {', '.join(sorted(terms))} or 'auto'.")
    return term


@torch.no_grad()
def scheme_loss(
    model: Any,
    diffusion: Any,
    videos: Tensor,
    stages: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    num_timesteps_samples: int,
    generator: torch.Generator | None,
    term: str = AUTO_TERM,
) -> Tensor:
    """(B,) loss of `videos` (B, T, C, H, W) in [-1, 1] under the scheme's `stages` (obs, latent) pairs.

    Each stage contributes its mean loss over `num_timesteps_samples` random timesteps, scaled from a
    per-element mean over all K frames to a sum over its latent frames of per-frame means.
    """
    if num_timesteps_samples < 1:
        raise SchemeError(f"num_timesteps_samples must be at least 1, got {num_timesteps_samples}.")
    if not stages:
        raise SchemeError("The scheme has no stages; give a scheme that generates frames.")
    device = videos.device
    total = torch.zeros(videos.shape[0], dtype=torch.float64, device=device)
    for obs_indices, latent_indices in stages:
        frames, kwargs = stage_inputs(videos, obs_indices, latent_indices)
        stage_sum = torch.zeros_like(total)
        for _ in range(num_timesteps_samples):
            t = torch.randint(0, diffusion.num_timesteps, (videos.shape[0],), generator=generator, device="cpu")
            noise = torch.randn(frames.shape, generator=generator, dtype=frames.dtype, device="cpu")
            terms = diffusion.training_losses(model, frames, t.to(device), kwargs, noise=noise.to(device))
            stage_sum += terms[choose_term(terms, term)].double()
        total += stage_sum / num_timesteps_samples * frames.shape[1]
    return total


@torch.no_grad()
def latent_eps_mse(
    model: Any, diffusion: Any, frames: Tensor, frame_indices: Tensor, num_observed: int, t: Tensor, noise: Tensor
) -> Tensor:
    """(R,) mean squared error of the network's noise estimate on the latent frames of R examples.

    `frames` (R, K, C, H, W) in [-1, 1] hold `num_observed` clean observed frames first, then the latent
    ones, which are noised to steps `t` (R,) of `diffusion` with `noise` (R, K - num_observed, C, H, W);
    `frame_indices` (R, K) are their positions in the video. For a network that predicts x0, the noise
    estimate is the one its x0 implies. This is the loss that optimised schemes minimise.
    """
    observed = torch.zeros(frames.shape[:2], dtype=frames.dtype, device=frames.device)
    observed[:, :num_observed] = 1.0
    obs_mask = observed.view(*observed.shape, 1, 1, 1)
    x_t = frames.clone()
    x_t[:, num_observed:] = diffusion.q_sample(frames[:, num_observed:], t, noise)
    kwargs = {"frame_indices": frame_indices, "obs_mask": obs_mask, "latent_mask": 1 - obs_mask, "x0": frames}
    output = diffusion.run_model(model, x_t, t, kwargs)[:, :, : frames.shape[2]]
    eps = diffusion.predict_eps_from_xstart(x_t, t, output) if diffusion.predicts_xstart else output
    return (eps[:, num_observed:] - noise).pow(2).mean(dim=(1, 2, 3, 4))


__all__ = ["AUTO_TERM", "choose_term", "latent_eps_mse", "scheme_loss", "stage_inputs"]
