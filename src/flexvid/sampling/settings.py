"""The settings of a generation (`flexvid sample`, `flexvid.generate`): their one home, defaults and checks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from flexvid.errors import ConfigError


@dataclass
class SampleSettings:
    """Everything that decides which videos are generated and how; saved as settings.json."""

    checkpoint: str
    sampling_scheme: str = "hierarchy-2"  # a scheme name (see `flexvid schemes`) or a scheme YAML file
    n_obs: int | None = None  # observed frames from each test video; None: K, one network call's worth
    T: int | None = None  # video length; None: the length the model was trained on
    max_frames: int | None = None  # K; None: as trained
    max_latent_frames: int | None = None  # latent frames per stage; None: K // 2
    batch_size: int = 8
    start_index: int = 0
    stop_index: int | None = None  # None: start_index + batch_size
    sample_idx: int = 0
    sampler: str = "ddim"  # ddpm | ddim (benchmarks/bench_samplers.py compares them)
    steps: int | None = 50  # diffusion steps; None: all trained steps
    eta: float = 0.0  # DDIM noise (0: deterministic; 1: DDPM-like)
    seed: int = 0
    precision: str = "fp32"  # fp32 | bf16
    eval_dir: str | None = None
    data_dir: str | None = None  # None: as in the checkpoint's config
    chunk_length: int | None = None  # longer videos are made in chunks of this many frames
    context: int | None = None  # frames each chunk conditions on; None: n_obs or K // 2
    batch_stages: bool = True
    max_batch: int = 64  # network-call rows when stages are batched
    clip_denoised: bool = True
    device: str = "cpu"


DEFAULTS = SampleSettings(checkpoint="")
SAMPLERS = ("ddpm", "ddim")
PRECISIONS = ("fp32", "bf16")


def check_settings(settings: SampleSettings) -> None:
    """Raise ConfigError for settings that would silently do other work than asked (or none)."""
    at_least = {"batch_size": 1, "max_batch": 1, "start_index": 0, "sample_idx": 0, "seed": 0}
    optional_at_least = {"n_obs": 0, "T": 1, "max_frames": 2, "max_latent_frames": 1, "steps": 1, "chunk_length": 1, "context": 1}
    checks = [(name, low, getattr(settings, name)) for name, low in at_least.items()]
    checks += [
        (name, low, getattr(settings, name)) for name, low in optional_at_least.items()
        if getattr(settings, name) is not None
    ]
    for name, low, value in checks:
        if value < low:
            raise ConfigError(f"--{name} must be at least {low}, got {value}; fix --{name}.")
    if settings.stop_index is not None and settings.stop_index <= settings.start_index:
        raise ConfigError(
            f"--stop_index ({settings.stop_index}) must be above --start_index ({settings.start_index}), "
            "or there is nothing to sample; raise --stop_index."
        )
    if not math.isfinite(settings.eta) or settings.eta < 0:
        raise ConfigError(f"--eta must be a finite number of at least 0, got {settings.eta}; fix --eta.")
    if settings.sampler not in SAMPLERS:
        raise ConfigError(f"Unknown sampler {settings.sampler!r}; choose one of {', '.join(SAMPLERS)}.")
    if settings.precision not in PRECISIONS:
        raise ConfigError(f"Unknown precision {settings.precision!r}; choose one of {', '.join(PRECISIONS)}.")
    try:
        device = torch.device(settings.device)
    except RuntimeError:
        raise ConfigError(f"Unknown device {settings.device!r}; use cpu or cuda.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {settings.device} was asked for but no CUDA GPU is available; use --device cpu.")
