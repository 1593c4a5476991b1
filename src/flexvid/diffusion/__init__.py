"""Gaussian diffusion for videos: beta schedules, respacing, training losses, DDPM/DDIM samplers."""

from flexvid.diffusion.builder import SAMPLERS, build_diffusion, respaced
from flexvid.diffusion.gaussian import GaussianDiffusion, LossType, ModelMeanType, ModelVarType
from flexvid.diffusion.respace import space_timesteps
from flexvid.diffusion.samplers import ddim_sample, ddpm_sample
from flexvid.diffusion.schedules import get_named_beta_schedule
from flexvid.diffusion.timestep_samplers import create_named_schedule_sampler

__all__ = [
    "SAMPLERS",
    "GaussianDiffusion",
    "LossType",
    "ModelMeanType",
    "ModelVarType",
    "build_diffusion",
    "create_named_schedule_sampler",
    "ddim_sample",
    "ddpm_sample",
    "get_named_beta_schedule",
    "respaced",
    "space_timesteps",
]
