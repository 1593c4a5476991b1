"""The test diffusion loss of a sampling scheme (the paper's "Loss" column): how well the model fits the
conditional distributions that the scheme's stages ask it to sample.

For each stage the network sees K = |obs| + |latent| frames of a test video: the observed ones clean,
the latent ones noised. The diffusion loss on the latent frames is estimated by Monte Carlo over
uniformly drawn timesteps, turned into a sum over the stage's latent frames of per-frame losses, and
summed over stages. Dividing by the number of generated frames gives a per-frame loss.
`latent_eps_mse` is the noise-prediction error of the latent frames alone, at chosen timesteps and noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from flexvid.errors import SchemeError
from flexvid.frame_batch import FrameBatch

AUTO_TERM = "auto"


def check_stage(obs_indices: Sequence[int], latent_indices: Sequence[int], video_length: int) -> None:
    """Raise SchemeError unless a stage generates a frame and its frames are distinct and in the videos."""
    indices = list(obs_indices) + list(latent_indices)
    if not latent_indices:
        raise SchemeError("A stage has no latent frames; every stage of a scheme must generate at least one frame.")
    if len(set(indices)) != len(indices) or min(indices) < 0 or max(indices) >= video_length:
        raise SchemeError(
            f"Stage frames {indices} repeat or fall outside the {video_length}-frame videos; check the scheme."
        )


def choose_term(terms: dict[str, Tensor], term: str) -> str:
    """The loss term to report: the variational bound when the model learns its variance, else eval-mse."""
    if term == AUTO_TERM:
        return "vb" if "vb" in terms else "eval-mse"
    if term not in terms:
        raise SchemeError(
            f"The diffusion loss has no term {term!r}; choose one of {', '.join(sorted(terms))} or 'auto'."
        )
    return term


@torch.no_grad()
def scheme_loss(
    model: Any,
    diffusion: Any,
    videos: Tensor,
    stages: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    num_timesteps_samples: int,
    generator: torch.Generator | Sequence[torch.Generator] | None,
    term: str = AUTO_TERM,
) -> Tensor:
    """(B,) loss of `videos` (B, T, C, H, W) in [-1, 1] under the scheme's `stages` (obs, latent) pairs.

    Each stage contributes its mean loss over `num_timesteps_samples` random timesteps, scaled from a
    per-element mean over all K frames to a sum over its latent frames of per-frame means. With one
    generator per video, a video's timesteps and noise, and so its loss, do not depend on its batch.
    """
    if num_timesteps_samples < 1:
        raise SchemeError(f"num_timesteps_samples must be at least 1, got {num_timesteps_samples}.")
    if not stages:
        raise SchemeError("The scheme has no stages; give a scheme that generates frames.")
    device = videos.device
    total = torch.zeros(videos.shape[0], dtype=torch.float64, device=device)
    for obs_indices, latent_indices in stages:
        check_stage(obs_indices, latent_indices, videos.shape[1])
        batch = FrameBatch.from_indices(videos, obs_indices, latent_indices)
        stage_sum = torch.zeros_like(total)
        for _ in range(num_timesteps_samples):
            t, noise = _draw(diffusion.num_timesteps, batch.x0, generator)
            terms = diffusion.training_losses(model, batch, t.to(device), noise=noise.to(device))
            stage_sum += terms[choose_term(terms, term)].double()
        total += stage_sum / num_timesteps_samples * batch.x0.shape[1]
    return total


def _draw(
    num_timesteps: int, x0: Tensor, generator: torch.Generator | Sequence[torch.Generator] | None
) -> tuple[Tensor, Tensor]:
    """Timesteps (B,) and noise shaped like `x0`, on the CPU, from one generator or one per row."""
    if generator is None or isinstance(generator, torch.Generator):
        t = torch.randint(0, num_timesteps, (x0.shape[0],), generator=generator)
        return t, torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    assert len(generator) == x0.shape[0], "one generator per video"
    t = torch.cat([torch.randint(0, num_timesteps, (1,), generator=g) for g in generator])
    noise = torch.stack([torch.randn(x0.shape[1:], generator=g, dtype=x0.dtype) for g in generator])
    return t, noise


@torch.no_grad()
def latent_eps_mse(model: Any, diffusion: Any, batch: FrameBatch, t: Tensor, noise: Tensor) -> Tensor:
    """(R,) mean squared error of the network's noise estimate on the latent frames of R examples.

    `batch` holds clean observed frames first, then the last `noise.shape[1]` frames, the latent ones,
    which are noised to steps `t` (R,) of `diffusion` with `noise` (R, K_latent, C, H, W). For a network
    that predicts x0, the noise estimate is the one its x0 implies. This is the loss that optimised
    schemes minimise.
    """
    frames, num_observed = batch.x0, batch.x0.shape[1] - noise.shape[1]
    x_t = frames.clone()
    x_t[:, num_observed:] = diffusion.q_sample(frames[:, num_observed:], t, noise)
    output = diffusion.run_model(model, x_t, t, batch)[:, :, : frames.shape[2]]
    eps = diffusion.predict_eps_from_xstart(x_t, t, output) if diffusion.predicts_xstart else output
    return (eps[:, num_observed:] - noise).pow(2).mean(dim=(1, 2, 3, 4))


__all__ = ["AUTO_TERM", "check_stage", "choose_term", "latent_eps_mse", "scheme_loss"]
