"""Small builders shared by several test files: tiny networks and run configs, CLI calls, eval dirs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from flexvid.checkpoint import save_weights
from flexvid.cli.main import main
from flexvid.config import DataConfig, DiffusionConfig, ModelConfig
from flexvid.nn import UNetVideo

# A small U-Net (16x16 frames, two levels) so the tests stay fast on a 2-core CPU.
TINY_NETWORK = ModelConfig(
    image_size=16,
    channel_mult=(1, 2),
    num_channels=32,
    num_res_blocks=1,
    num_heads=2,
    attention_resolutions=(8,),
    max_frames=4,
)


def randomised(config: ModelConfig, seed: int = 0) -> UNetVideo:
    """A network whose every parameter is random (the zero-initialised output layers included)."""
    torch.manual_seed(seed)
    model = UNetVideo(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.05)
    return model.eval()


def save_sampling_checkpoint(path: Path, seed: int = 0, T: int = 12, max_frames: int = 6) -> Path:
    """A random tiny Moving MNIST checkpoint (1 channel, 16x16, K = `max_frames`, 50 diffusion steps) to sample from."""
    network = dataclasses.replace(TINY_NETWORK, in_channels=1, max_frames=max_frames)
    config = {
        "model": dataclasses.asdict(network),
        "diffusion": dataclasses.asdict(DiffusionConfig(diffusion_steps=50)),
        "data": dataclasses.asdict(DataConfig(dataset="moving_mnist", T=T, max_frames=max_frames)),
    }
    save_weights(path, randomised(network, seed).state_dict(), config)
    return path


def tiny_run_config(**train: Any) -> dict[str, dict[str, Any]]:
    """Config sections of a tiny Moving MNIST training run (~0.4M parameters, 16x16 frames: a step
    takes well under a second on 2 cores); `train` overrides entries of the train section."""
    return {
        "model": {
            "channel_mult": [1, 1],
            "num_channels": 32,
            "num_res_blocks": 1,
            "num_heads": 2,
            "attention_resolutions": [8],
        },
        "diffusion": {"diffusion_steps": 100},
        "data": {"T": 10, "image_size": 16, "max_frames": 4, "num_workers": 0},
        "train": {
            "batch_size": 2,
            "max_steps": 4,
            "log_interval": 1,
            "save_interval": 100,
            "sample_interval": 0,
            "ema_rate": [0.9],
            "tensorboard": False,
            **train,
        },
    }


def run_cli(*argv: str) -> int:
    """Run `flexvid ARGV...` in-process and return its exit code."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    return exit_info.value.code


def make_eval_dir(root: Path, truth: Sequence[np.ndarray], samples: Sequence[Sequence[np.ndarray]], n_obs: int) -> Path:
    """root/eval with settings.json and samples/sample_NNNN-K.npy (`samples[i][k]`), and the ground
    truth videos as root/gt/NNNN.npy."""
    eval_dir, gt_dir = root / "eval", root / "gt"
    (eval_dir / "samples").mkdir(parents=True)
    gt_dir.mkdir()
    settings = {
        "dataset": "moving_mnist",
        "data_dir": None,
        "T": int(truth[0].shape[0]),
        "image_size": int(truth[0].shape[-1]),
        "n_obs": n_obs,
        "sampling_scheme": "autoreg",
        "max_frames": 4,
    }
    (eval_dir / "settings.json").write_text(json.dumps(settings))
    for index, (reference, video_samples) in enumerate(zip(truth, samples, strict=True)):
        np.save(gt_dir / f"{index:04d}.npy", reference)
        for k, sample in enumerate(video_samples):
            np.save(eval_dir / "samples" / f"sample_{index:04d}-{k}.npy", sample)
    return eval_dir
