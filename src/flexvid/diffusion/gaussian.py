"""Gaussian diffusion on videos (B, K, C, H, W): forward noising, the model's p(x_{t-1} | x_t), training losses.

Follows improved-diffusion as used by the FDM reference implementation, with coefficients kept in
float64 and gathered per step into float32. Observed frames are conditioning only: the network
replaces them with their clean values, and the loss is taken over the other frames.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from flexvid.diffusion.losses import (
    discretized_gaussian_log_likelihood,
    masked_mean,
    normal_kl,
)
from flexvid.errors import ConfigError
from flexvid.frame_batch import FrameBatch

Model = Callable[..., Tensor]


class ModelMeanType(enum.Enum):
    """What the network's mean output predicts."""

    EPSILON = enum.auto()  # the noise added to x_0
    START_X = enum.auto()  # x_0 itself


class ModelVarType(enum.Enum):
    """Where the variance of p(x_{t-1} | x_t) comes from."""

    FIXED_LARGE = enum.auto()  # beta_t
    FIXED_SMALL = enum.auto()  # the posterior variance beta-tilde_t
    LEARNED_RANGE = enum.auto()  # network output v in [-1, 1] interpolates log beta-tilde_t .. log beta_t


class LossType(enum.Enum):
    """The training objective."""

    MSE = enum.auto()  # MSE on the mean output (plus the raw variational term when sigma is learned)
    RESCALED_MSE = enum.auto()  # MSE plus the variational term scaled by num_timesteps / 1000
    RESCALED_KL = enum.auto()  # the variational bound only, scaled to estimate the full bound


def extract(values: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """values[t] (float64 table) as a (B, 1, 1, 1, 1)-style tensor in `like`'s precision (at least float32)."""
    out = values.to(t.device)[t].to(torch.promote_types(like.dtype, torch.float32))
    return out.view(-1, *([1] * (like.ndim - 1)))


class GaussianDiffusion:
    """A discrete-time Gaussian diffusion, optionally running on a subset of the original steps.

    `timestep_map[i]` is the original step that step i of this process stands for; the network is
    always called with original steps (scaled to [0, 1000) when `rescale_timesteps`).
    """

    # The schedule's float64 tables, one value per step, set in __init__.
    betas: Tensor
    log_betas: Tensor
    alphas_cumprod: Tensor
    alphas_cumprod_prev: Tensor
    sqrt_alphas_cumprod: Tensor
    sqrt_one_minus_alphas_cumprod: Tensor
    sqrt_recip_alphas_cumprod: Tensor
    sqrt_recipm1_alphas_cumprod: Tensor
    posterior_variance: Tensor
    posterior_log_variance_clipped: Tensor
    posterior_mean_coef1: Tensor
    posterior_mean_coef2: Tensor
    fixed_large_variance: Tensor
    fixed_large_log_variance: Tensor

    def __init__(
        self,
        *,
        betas: np.ndarray,
        model_mean_type: ModelMeanType,
        model_var_type: ModelVarType,
        loss_type: LossType,
        rescale_timesteps: bool = True,
        timestep_map: Sequence[int] | None = None,
        original_num_steps: int | None = None,
    ) -> None:
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or len(betas) < 2 or not ((betas > 0).all() and (betas <= 1).all()):
            raise ConfigError(
                "A diffusion needs at least 2 steps with betas in (0, 1]; check diffusion_steps and timestep_respacing."
            )
        self.model_mean_type = model_mean_type
        self.model_var_type = model_var_type
        self.loss_type = loss_type
        self.rescale_timesteps = rescale_timesteps
        self.num_timesteps = len(betas)
        self.original_num_steps = original_num_steps or self.num_timesteps
        self.timestep_map = torch.tensor(
            list(range(self.num_timesteps)) if timestep_map is None else list(timestep_map),
            dtype=torch.int64,
        )

        alphas = 1.0 - betas
        alphas_cumprod = np.cumprod(alphas)
        alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        # The posterior variance is 0 at t = 0, so its log is clipped to the value at t = 1.
        posterior_log_variance_clipped = np.log(np.append(posterior_variance[1], posterior_variance[1:]))
        # Fixed-large uses beta_t, except at t = 0 where beta-tilde_1 gives a better decoder likelihood.
        fixed_large_variance = np.append(posterior_variance[1], betas[1:])

        tables = {
            "betas": betas,
            "log_betas": np.log(betas),
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": np.sqrt(alphas_cumprod),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - alphas_cumprod),
            "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod - 1.0),
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": posterior_log_variance_clipped,
            "posterior_mean_coef1": betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod),
            "fixed_large_variance": fixed_large_variance,
            "fixed_large_log_variance": np.log(fixed_large_variance),
        }
        for name, values in tables.items():
            setattr(self, name, torch.from_numpy(values))

    # ------------------------------------------------------------------ forward process
    def q_sample(self, x_start: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        """A draw from q(x_t | x_0): sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) noise."""
        if noise is None:
            noise = torch.randn_like(x_start)
        return (
            extract(self.sqrt_alphas_cumprod, t, x_start) * x_start
            + extract(self.sqrt_one_minus_alphas_cumprod, t, x_start) * noise
        )

    def q_posterior_mean_variance(self, x_start: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0)."""
        mean = extract(self.posterior_mean_coef1, t, x_t) * x_start + extract(self.posterior_mean_coef2, t, x_t) * x_t
        variance = extract(self.posterior_variance, t, x_t).expand_as(x_t)
        log_variance = extract(self.posterior_log_variance_clipped, t, x_t).expand_as(x_t)
        return mean, variance, log_variance

    @property
    def predicts_xstart(self) -> bool:
        """Whether the network outputs the clean frames (x0) rather than the noise (epsilon)."""
        return self.model_mean_type == ModelMeanType.START_X

    def predict_xstart_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """The x_0 implied by x_t and a noise estimate."""
        return (
            extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
            - extract(self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps
        )

    def predict_eps_from_xstart(self, x_t: Tensor, t: Tensor, pred_xstart: Tensor) -> Tensor:
        """The noise implied by x_t and an x_0 estimate."""
        return (extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - pred_xstart) / extract(
            self.sqrt_recipm1_alphas_cumprod, t, x_t
        )

    # ------------------------------------------------------------------ the model
    def model_timesteps(self, t: Tensor) -> Tensor:
        """The timesteps the network sees for steps `t` of this process: original steps, rescaled if configured."""
        original = self.timestep_map.to(t.device)[t]
        if self.rescale_timesteps:
            return original.float() * (1000.0 / self.original_num_steps)
        return original

    def run_model(self, model: Model, x: Tensor, t: Tensor, batch: FrameBatch) -> Tensor:
        """Call the network on x_t (shaped like `batch.x0`) at steps t (B,), conditioned on `batch`."""
        assert x.shape == batch.x0.shape, (
            f"x_t must have the batch's shape (B, K, C, H, W) = {tuple(batch.x0.shape)}, got {tuple(x.shape)}"
        )
        assert tuple(t.shape) == (x.shape[0],), (
            f"timesteps must have shape ({x.shape[0]},), one per video, got {tuple(t.shape)}"
        )
        output = model(x, timesteps=self.model_timesteps(t), **batch.network_inputs())
        B, K, C, H, W = x.shape
        channels = 2 * C if self.model_var_type == ModelVarType.LEARNED_RANGE else C
        assert tuple(output.shape) == (B, K, channels, H, W), (
            f"The network returned shape {tuple(output.shape)} but the diffusion expects "
            f"{(B, K, channels, H, W)}; learn_sigma must be the same in the model and diffusion configs"
        )
        return output.to(torch.promote_types(x.dtype, torch.float32))

    def p_mean_variance(
        self, model: Model, x: Tensor, t: Tensor, batch: FrameBatch, clip_denoised: bool = True
    ) -> dict[str, Tensor]:
        """Run the network and return p(x_{t-1} | x_t): `mean`, `variance`, `log_variance`, `pred_xstart`."""
        output = self.run_model(model, x, t, batch)
        return self.p_mean_variance_from_output(output, x, t, clip_denoised=clip_denoised)

    def p_mean_variance_from_output(
        self, model_output: Tensor, x: Tensor, t: Tensor, clip_denoised: bool = True
    ) -> dict[str, Tensor]:
        """p(x_{t-1} | x_t) from an already computed network output (variance values on the channel dim 2)."""
        if self.model_var_type == ModelVarType.LEARNED_RANGE:
            model_output, var_values = model_output.chunk(2, dim=2)
            min_log = extract(self.posterior_log_variance_clipped, t, x)
            max_log = extract(self.log_betas, t, x)
            frac = (var_values + 1) / 2
            log_variance = frac * max_log + (1 - frac) * min_log
            variance = torch.exp(log_variance)
        else:
            if self.model_var_type == ModelVarType.FIXED_LARGE:
                variance_table, log_variance_table = self.fixed_large_variance, self.fixed_large_log_variance
            else:
                variance_table, log_variance_table = self.posterior_variance, self.posterior_log_variance_clipped
            variance = extract(variance_table, t, x).expand_as(x)
            log_variance = extract(log_variance_table, t, x).expand_as(x)

        if self.model_mean_type == ModelMeanType.START_X:
            pred_xstart = model_output
        else:
            pred_xstart = self.predict_xstart_from_eps(x, t, model_output)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1, 1)
        mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {"mean": mean, "variance": variance, "log_variance": log_variance, "pred_xstart": pred_xstart}

    # ------------------------------------------------------------------ losses
    def vb_terms_bpd(
        self, model_output: Tensor, x_start: Tensor, x_t: Tensor, t: Tensor, mask: Tensor | None = None
    ) -> Tensor:
        """One term of the variational bound in bits per dim, (B,): the decoder NLL at t = 0, else the KL."""
        true_mean, _, true_log_variance = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self.p_mean_variance_from_output(model_output, x_t, t, clip_denoised=False)
        kl = normal_kl(true_mean, true_log_variance, out["mean"], out["log_variance"])
        kl = masked_mean(kl, mask) / math.log(2.0)
        decoder_nll = -discretized_gaussian_log_likelihood(
            x_start, means=out["mean"], log_scales=0.5 * out["log_variance"]
        )
        decoder_nll = masked_mean(decoder_nll, mask) / math.log(2.0)
        return torch.where(t == 0, decoder_nll, kl)

    def training_losses(
        self, model: Model, batch: FrameBatch, t: Tensor, noise: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Per-example losses (B,) for denoising `batch.x0` from steps t: `loss`, `mse`, `eval-mse`, and `vb`
        when sigma is learned.

        The loss covers every frame that is not observed (latent and padding frames); `eval-mse`
        covers the latent frames only. The variational term uses the loss mask too (the reference
        averages it over all frames, but its learned-variance path never ran on videos).
        """
        x_start = batch.x0
        mask_dtype = torch.promote_types(x_start.dtype, torch.float32)
        loss_mask = 1 - batch.obs_mask.to(mask_dtype)
        latent_mask = batch.latent_mask.to(mask_dtype)
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise=noise)
        output = self.run_model(model, x_t, t, batch)

        terms: dict[str, Tensor] = {}
        mean_output = output
        if self.model_var_type == ModelVarType.LEARNED_RANGE:
            mean_output, var_values = output.chunk(2, dim=2)
        if self.loss_type == LossType.RESCALED_KL:
            terms["loss"] = self.vb_terms_bpd(output, x_start, x_t, t, mask=loss_mask) * self.num_timesteps
        elif self.model_var_type == ModelVarType.LEARNED_RANGE:
            # The variational term trains the variance only: the mean output is detached from it.
            frozen = torch.cat([mean_output.detach(), var_values], dim=2)
            terms["vb"] = self.vb_terms_bpd(frozen, x_start, x_t, t, mask=loss_mask)
            if self.loss_type == LossType.RESCALED_MSE:
                terms["vb"] = terms["vb"] * (self.num_timesteps / 1000.0)

        target = x_start if self.model_mean_type == ModelMeanType.START_X else noise
        squared_error = (target - mean_output) ** 2
        terms["mse"] = masked_mean(squared_error, loss_mask)
        terms["eval-mse"] = masked_mean(squared_error, latent_mask)
        if "loss" not in terms:
            terms["loss"] = terms["mse"] + terms["vb"] if "vb" in terms else terms["mse"]
        return terms


__all__ = ["GaussianDiffusion", "LossType", "ModelMeanType", "ModelVarType", "extract"]
