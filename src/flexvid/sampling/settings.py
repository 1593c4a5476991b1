"""The settings of a generation (`flexvid sample`, `flexvid.generate`): their one home, defaults and checks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from flexvid.config import setting
from flexvid.errors import ConfigError
from flexvid.schemes.stage import LATENT_FRAMES_DEFAULT

SAMPLERS = ("ddpm", "ddim")
PRECISIONS = ("fp32", "bf16")


@dataclass
class SampleSettings:
    """Everything that decides which videos are generated and how; saved as settings.json. The field
    metadata holds the help of the `flexvid sample` flag of each name."""

    checkpoint: str
    sampling_scheme: str = setting("hierarchy-2", "scheme name (see `flexvid schemes`) or a scheme YAML file")
    n_obs: int | None = setting(
        None, "observed frames at the start of each video, taken from the test set (0: unconditional; default: K)"
    )
    T: int | None = setting(
        None, "length of the generated videos; longer than the training clips is fine (default: as trained)"
    )
    max_frames: int | None = setting(None, "K, frames per network call (default: as trained)")
    max_latent_frames: int | None = setting(None, f"frames generated per stage (default: {LATENT_FRAMES_DEFAULT})")
    batch_size: int = setting(8, "videos generated together (under torchrun, batches are dealt to the processes)")
    start_index: int = setting(0, "first test video")
    stop_index: int | None = setting(None, "one past the last test video (default: start_index + batch_size)")
    sample_idx: int = setting(0, "which sample of each video this is (several samples share the observed frames)")
    sampler: str = setting("ddim", "sampler", choices=SAMPLERS)  # benchmarks/bench_samplers.py compares them
    steps: int | None = setting(
        50, "diffusion steps (0 is refused; the trained number, e.g. 1000, runs every step)"
    )  # None: all trained steps
    eta: float = setting(0.0, "DDIM noise scale (0: deterministic; 1: DDPM-like)")
    seed: int = setting(0, "noise seed (same seed, same videos)")
    precision: str = setting("fp32", "network precision", choices=PRECISIONS)
    eval_dir: str | None = setting(
        None,
        "output directory (default: results/<checkpoint>/<scheme>_<K>_<latent>_<T>_<n_obs>_"
        "<sampler><steps>[_eta<eta>]_seed<seed>_<precision>-<hash of all settings>)",
    )
    data_dir: str | None = setting(None, "test data directory (default: from the checkpoint)")
    chunk_length: int | None = setting(
        None, "videos longer than this are generated chunk by chunk (default: the training T)"
    )
    context: int | None = setting(
        None, "frames of the previous chunk each chunk conditions on (default: n_obs, or K // 2)"
    )
    batch_stages: bool = setting(
        True, "batch independent stages into one network call (--no_batch_stages: every stage on its own)"
    )
    max_batch: int = setting(64, "most rows per network call when batching stages")
    clip_denoised: bool = setting(True, "clip each step's predicted clean frames to [-1, 1]")
    device: str = setting("cpu", "cpu or cuda")


DEFAULTS = SampleSettings(checkpoint="")


def check_settings(settings: SampleSettings) -> None:
    """Raise ConfigError for settings that would silently do other work than asked (or none)."""
    at_least = {"batch_size": 1, "max_batch": 1, "start_index": 0, "sample_idx": 0, "seed": 0}
    optional_at_least = {
        "n_obs": 0,
        "T": 1,
        "max_frames": 2,
        "max_latent_frames": 1,
        "steps": 1,
        "chunk_length": 1,
        "context": 1,
    }
    checks = [(name, low, getattr(settings, name)) for name, low in at_least.items()]
    checks += [
        (name, low, getattr(settings, name))
        for name, low in optional_at_least.items()
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
