"""torchrun on CPU: 2 gloo processes train like 1 process with the same global batch, and resume on any count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from helpers import tiny_run_config

ROOT = Path(__file__).resolve().parents[1]

TINY = tiny_run_config(batch_size=4, save_interval=2, device="cpu")


def launch(nproc: int, *args: str) -> str:
    """Run `flexvid train` under torch.distributed.run (torchrun) with `nproc` CPU processes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "flexvid",
        "train",
        *args,
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def preset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_two_processes_match_one_process_and_resume_on_another_count(tmp_path, preset):
    one, two = tmp_path / "one", tmp_path / "two"
    launch(1, "--config", str(preset), "--run_dir", str(one), "--max_steps", "3")
    launch(2, "--config", str(preset), "--run_dir", str(two), "--max_steps", "2")
    # Resume the 2-process run with a single process for its third step.
    launch(1, "--resume", str(two), "--max_steps", "3")

    assert losses(two) == pytest.approx(losses(one), rel=1e-4)
    assert len(losses(one)) == 3
    # Gradients differ only by float summation order, but Adam divides by the gradient's root mean
    # square, so weights with near-zero gradients can move by up to one step (lr = 1e-4).
    for name in ("model.safetensors", "ema_0.9.safetensors"):
        a = load_file(one / "checkpoints" / "step_0000003" / name)
        b = load_file(two / "checkpoints" / "step_0000003" / name)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-4)  # atol: one step of lr
    # Rank 0 alone writes: one metrics file, and checkpoints only at the save steps.
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["step_0000002", "step_0000003"]
