"""A tiny Moving MNIST model trained for a few steps with `flexvid train`, for end-to-end tests of
sampling schemes (16x16 grey frames, T=10, K=4)."""

from __future__ import annotations

from pathlib import Path

import yaml

from helpers import run_cli, tiny_run_config

TRAINED_STEPS = 10


def train_tiny_model(directory: Path) -> Path:
    """Train the tiny run config for TRAINED_STEPS steps into `directory`/run and return the run directory."""
    config = tiny_run_config(max_steps=TRAINED_STEPS, save_interval=TRAINED_STEPS)
    config["model"]["in_channels"] = 1
    path = directory / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = directory / "run"
    assert run_cli("train", "--config", str(path), "--run_dir", str(run_dir)) == 0
    return run_dir
