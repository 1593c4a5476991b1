"""`load_pretrained`: a ready network and diffusion from any checkpoint flexvid reads.

It sits above the weights format (flexvid.weights, whose public names it re-exports) and training run
directories (flexvid.training.checkpointing); neither imports this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flexvid.errors import CheckpointError, ConfigError
from flexvid.nn import UNetVideo
from flexvid.run_config import RunConfig
from flexvid.training.checkpointing import checkpoint_to_load
from flexvid.weights import (
    CONFIG_FILENAME,
    MODEL_FILENAME,
    Weights,
    check_state_dict,
    config_from_reference,
    load_weights,
    save_weights,
)


@dataclass
class Pretrained:
    """A ready network (eval mode) and diffusion process with the config they were built from."""

    model: UNetVideo
    diffusion: Any  # flexvid.diffusion.GaussianDiffusion
    config: RunConfig
    step: int | None = None  # the training step of the weights, when recorded


def build_model(config: RunConfig, source: str = "config") -> UNetVideo:
    """The network `config` describes."""
    try:
        return UNetVideo(config.network)
    except ConfigError as err:
        raise CheckpointError(f"The model config in {source} is unusable: {err}") from None


def load_pretrained(path: str | os.PathLike, *, use_ema: bool = True, device: str | torch.device = "cpu") -> Pretrained:
    """The network (eval mode, on `device`) and diffusion of a checkpoint, ready to sample.

    `path` is a flexvid checkpoint directory (its highest-rate EMA weights when `use_ema` and
    present), a training run directory (its newest intact checkpoint), a flexvid `.safetensors`
    file, or an authors' `.pt` file (dict with `state_dict`, `config`, `step`), whose argparse
    config is translated by `config_from_reference`.
    """
    from flexvid.diffusion import build_diffusion

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    path = checkpoint_to_load(path)
    weights = load_weights(path, use_ema=use_ema)
    model = build_model(weights.config, str(path))
    check_state_dict(model, weights.state_dict, str(path))
    model.load_state_dict(weights.state_dict)
    try:
        diffusion = build_diffusion(weights.config.diffusion)
    except ConfigError as err:
        raise CheckpointError(f"The diffusion config in {path} is unusable: {err}") from None
    return Pretrained(model=model.to(device).eval(), diffusion=diffusion, config=weights.config, step=weights.step)


__all__ = [
    "CONFIG_FILENAME",
    "MODEL_FILENAME",
    "Pretrained",
    "Weights",
    "build_model",
    "check_state_dict",
    "config_from_reference",
    "load_pretrained",
    "save_weights",
    "load_weights",
]
