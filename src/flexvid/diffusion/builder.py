"""Build a GaussianDiffusion from a DiffusionConfig, the way the reference's create_gaussian_diffusion does."""

from __future__ import annotations

import dataclasses

from flexvid.config import DiffusionConfig
from flexvid.diffusion.gaussian import GaussianDiffusion, LossType, ModelMeanType, ModelVarType
from flexvid.diffusion.respace import respace_betas, space_timesteps
from flexvid.diffusion.schedules import get_named_beta_schedule
from flexvid.errors import ConfigError

SAMPLERS = ("ddpm", "ddim")


def build_diffusion(config: DiffusionConfig) -> GaussianDiffusion:
    """The diffusion described by `config`, on the kept steps of `timestep_respacing` (all when empty)."""
    betas = get_named_beta_schedule(config.noise_schedule, config.diffusion_steps)
    if config.use_kl:
        loss_type = LossType.RESCALED_KL
    elif config.rescale_learned_sigmas:
        loss_type = LossType.RESCALED_MSE
    else:
        loss_type = LossType.MSE
    if config.learn_sigma:
        var_type = ModelVarType.LEARNED_RANGE
    else:
        var_type = ModelVarType.FIXED_SMALL if config.sigma_small else ModelVarType.FIXED_LARGE
    respacing = config.timestep_respacing or [config.diffusion_steps]
    kept_betas, timestep_map = respace_betas(betas, space_timesteps(config.diffusion_steps, respacing))
    return GaussianDiffusion(
        betas=kept_betas,
        model_mean_type=ModelMeanType.START_X if config.predict_xstart else ModelMeanType.EPSILON,
        model_var_type=var_type,
        loss_type=loss_type,
        rescale_timesteps=config.rescale_timesteps,
        timestep_map=timestep_map,
        original_num_steps=config.diffusion_steps,
    )


def respaced(config: DiffusionConfig, steps: int | None, sampler: str = "ddpm") -> GaussianDiffusion:
    """The diffusion of `config` respaced to `steps` sampling steps for `sampler` ("ddpm" or "ddim").

    DDIM uses the DDIM paper's integer striding ("ddimN"), DDPM even spacing ("N"); `steps=None`
    keeps the config's own respacing.
    """
    if sampler not in SAMPLERS:
        raise ConfigError(f"Unknown sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}.")
    if steps is None:
        return build_diffusion(config)
    if not 2 <= steps <= config.diffusion_steps:
        raise ConfigError(
            f"The number of sampling steps must be between 2 and diffusion_steps "
            f"({config.diffusion_steps}), got {steps}."
        )
    spacing = f"ddim{steps}" if sampler == "ddim" else str(steps)
    return build_diffusion(dataclasses.replace(config, timestep_respacing=spacing))


__all__ = ["SAMPLERS", "build_diffusion", "respaced"]
