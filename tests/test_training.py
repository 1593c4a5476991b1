"""Trainer, training config, checkpoints, logging and the `flexvid train` command, on tiny models."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from flexvid.cli import train as train_cli
from flexvid.errors import CheckpointError, ConfigError, DatasetError
from flexvid.training.checkpointing import (
    latest_valid_checkpoint,
    list_checkpoints,
    save_checkpoint,
)
from flexvid.training.config import (
    load_run_config,
    load_yaml_config,
    merge_overrides,
    resolve_run_config,
)
from flexvid.training.distributed import DistInfo
from flexvid.training.ema import EMA
from flexvid.training.logging import Progress
from flexvid.training.trainer import Trainer, TrainingDivergedError

from helpers import tiny_run_config

ROOT = Path(__file__).resolve().parents[1]


def run_training(run_dir: Path, overrides: dict, resume: bool = False) -> Trainer:
    config = resolve_run_config(overrides)
    checkpoint = latest_valid_checkpoint(run_dir) if resume else None
    trainer = Trainer(config, run_dir, resume_from=checkpoint, out=io.StringIO())
    trainer.train()
    return trainer


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def parse_cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    return parser.parse_args(argv)


def write_tiny_yaml(path: Path, **train) -> Path:
    path.write_text(yaml.safe_dump(tiny_run_config(**train)))
    return path


# ----------------------------------------------------------------------------- config


def test_flags_override_yaml_which_overrides_defaults(tmp_path):
    preset = write_tiny_yaml(tmp_path / "tiny.yaml", lr=3e-4, seed=5)
    args = parse_cli(["--config", str(preset), "--lr", "2e-4", "--ema_rate", "0.99,0.999", "--use_checkpoint"])
    config = resolve_run_config(merge_overrides(load_yaml_config(args.config), train_cli.overrides_from_args(args)))
    assert config.train.lr == 2e-4  # flag beats file
    assert config.train.seed == 5  # file beats default
    assert config.train.weight_decay == 0.0  # default
    assert config.train.ema_rate == (0.99, 0.999)
    assert config.model.use_checkpoint is True
    assert config.network.max_frames == config.data.max_frames == 4


def test_help_says_batch_size_is_global():
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    assert "GLOBAL batch" in " ".join(parser.format_help().split())


def test_presets_resolve_to_the_paper_sizes():
    sizes = {}
    for name in ("mazes", "minerl", "carla", "moving_mnist_cpu"):
        config = resolve_run_config(load_yaml_config(ROOT / "configs" / f"{name}.yaml"))
        sizes[name] = (config.network.image_size, config.data.T, config.data.max_frames)
    assert sizes["mazes"] == (64, 300, 20)
    assert sizes["minerl"] == (64, 500, 20)
    assert sizes["carla"] == (128, 1000, 20)
    assert sizes["moving_mnist_cpu"][0] == 32


def test_config_errors():
    with pytest.raises(ConfigError, match=r"max_frames \(K=12\) is larger than the video length T=10"):
        resolve_run_config(merge_overrides(tiny_run_config(), {"data": {"max_frames": 12}}))
    with pytest.raises(DatasetError, match="Unknown dataset 'nope'"):
        resolve_run_config(merge_overrides(tiny_run_config(), {"data": {"dataset": "nope"}}))
    with pytest.raises(ConfigError, match="Unknown precision"):
        resolve_run_config(tiny_run_config(precision="fp8"))


def test_yaml_with_unknown_section_or_key_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optimizer: {lr: 1}\n")
    with pytest.raises(ConfigError, match="unknown sections"):
        load_yaml_config(bad)
    bad.write_text("train: {learning_rate: 1}\n")
    with pytest.raises(ConfigError, match="Unknown TrainConfig keys"):
        resolve_run_config(load_yaml_config(bad))
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml_config(tmp_path / "missing.yaml")


def test_batch_not_divisible_by_world_size(tmp_path):
    config = resolve_run_config(tiny_run_config(batch_size=4))
    with pytest.raises(ConfigError, match="not divisible by the 3 processes"):
        Trainer(config, tmp_path, DistInfo(0, 3, 0, torch.device("cpu")))


def _write_npy_videos(directory: Path, count: int, frames: int) -> None:
    for split in ("train", "test"):
        (directory / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            np.save(directory / split / f"{i}.npy", np.zeros((frames, 16, 16, 3), dtype=np.uint8))


@pytest.mark.filterwarnings("ignore:Skipping .* video")
def test_dataset_path_missing_empty_or_videos_too_short(tmp_path):
    overrides = merge_overrides(tiny_run_config(), {"data": {"dataset": "mazes", "T": 10}})
    with pytest.raises(DatasetError, match="does not exist"):
        overrides["data"]["data_dir"] = str(tmp_path / "missing")
        Trainer(resolve_run_config(overrides), tmp_path / "run1")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="No numbered .npy videos"):
        overrides["data"]["data_dir"] = str(tmp_path / "empty")
        Trainer(resolve_run_config(overrides), tmp_path / "run2")
    _write_npy_videos(tmp_path / "short", count=2, frames=5)
    with pytest.raises(DatasetError, match="frames"):
        overrides["data"]["data_dir"] = str(tmp_path / "short")
        Trainer(resolve_run_config(overrides), tmp_path / "run3")


# ----------------------------------------------------------------------------- training


def test_loss_falls_on_a_fixed_batch(tmp_path):
    """Training lowers the diffusion loss of a fixed batch with fixed timesteps and noise."""
    config = resolve_run_config(tiny_run_config(lr=2e-3, max_steps=25, batch_size=4, log_interval=25))
    trainer = Trainer(config, tmp_path, out=io.StringIO())
    batch = next(iter(trainer.loader))["frames"]
    generator = torch.Generator().manual_seed(0)
    t = torch.randint(10, 90, (4,), generator=generator)
    noise = torch.randn(batch.x0.shape, generator=generator)

    def fixed_batch_loss() -> float:
        trainer.model.eval()
        with torch.no_grad():
            return float(trainer.diffusion.training_losses(trainer.model, batch, t, noise=noise)["loss"].mean())

    before = fixed_batch_loss()
    trainer.train()
    after = fixed_batch_loss()
    assert after < 0.8 * before, (before, after)


def test_resume_is_bitwise_exact(tmp_path):
    """Stop at step s, resume to 2s: weights, EMA and optimizer state equal an uninterrupted run's."""
    s = 3
    settings = dict(save_interval=s, lr_anneal_steps=10, grad_clip=1.0, schedule_sampler="loss-second-moment")
    overrides = merge_overrides(tiny_run_config(**settings), {"model": {"dropout": 0.1}})
    straight = tmp_path / "straight"
    run_training(straight, merge_overrides(overrides, {"train": {"max_steps": 2 * s}}))
    resumed = tmp_path / "resumed"
    run_training(resumed, merge_overrides(overrides, {"train": {"max_steps": s}}))
    run_training(resumed, merge_overrides(overrides, {"train": {"max_steps": 2 * s}}), resume=True)

    a, b = straight / "checkpoints" / f"step_{2 * s:07d}", resumed / "checkpoints" / f"step_{2 * s:07d}"
    for name in ("model.safetensors", "ema_0.9.safetensors"):
        wa, wb = load_file(a / name), load_file(b / name)
        assert wa.keys() == wb.keys()
        for key in wa:
            assert torch.equal(wa[key], wb[key]), (name, key)
    sa = torch.load(a / "training_state.pt", weights_only=True)
    sb = torch.load(b / "training_state.pt", weights_only=True)
    for key, value in sa["optimizer"]["state"].items():
        assert torch.equal(value["exp_avg_sq"], sb["optimizer"]["state"][key]["exp_avg_sq"])
    losses_a = [m["loss"] for m in read_metrics(straight)]
    losses_b = [m["loss"] for m in read_metrics(resumed)]
    assert losses_a == losses_b
    assert [m["step"] for m in read_metrics(resumed)] == list(range(1, 2 * s + 1))


def test_init_from_starts_from_the_given_weights_with_a_fresh_optimiser(tmp_path):
    """--init_from loads another run's EMA weights as step 0; weights of another network shape are refused."""
    run_training(tmp_path / "source", tiny_run_config(max_steps=2, save_interval=2))
    checkpoint = latest_valid_checkpoint(tmp_path / "source")
    config = resolve_run_config(tiny_run_config(init_from=str(checkpoint)))
    tuned = Trainer(config, tmp_path / "tuned", out=io.StringIO())
    ema = load_file(checkpoint / "ema_0.9.safetensors")
    assert tuned.step == 0 and not tuned.optimizer.state
    for name, value in tuned.model.state_dict().items():
        assert torch.equal(value, ema[name]), name
    online = load_file(checkpoint / "model.safetensors")
    assert any(not torch.equal(online[k], ema[k]) for k in ema)  # so the EMA weights were the ones taken

    wider = merge_overrides(tiny_run_config(init_from=str(checkpoint)), {"model": {"num_channels": 64}})
    with pytest.raises(CheckpointError, match="given as init_from"):
        Trainer(resolve_run_config(wider), tmp_path / "wider", out=io.StringIO())


def test_microbatches_give_the_same_update(tmp_path):
    one = run_training(tmp_path / "one", tiny_run_config(max_steps=1, batch_size=4))
    four = run_training(tmp_path / "four", tiny_run_config(max_steps=1, batch_size=4, microbatch=1))
    for p, q in zip(one.model.parameters(), four.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_are_finite(tmp_path, precision):
    trainer = run_training(tmp_path, tiny_run_config(max_steps=2, precision=precision))
    metrics = read_metrics(tmp_path)
    assert all(np.isfinite(m["loss"]) for m in metrics)
    assert ("grad_scale" in metrics[-1]) == (precision == "fp16")
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    config = resolve_run_config(tiny_run_config(lr=1e30, max_steps=6, save_interval=1))
    trainer = Trainer(config, tmp_path, out=io.StringIO())
    with pytest.raises(TrainingDivergedError, match=r"at step (\d); .*last good checkpoint is .*step_000000\1"):
        trainer.train()
    steps = [step for step, _ in list_checkpoints(tmp_path)]
    assert steps and max(steps) == trainer.step
    latest_valid_checkpoint(tmp_path)  # the kept checkpoint is intact


def test_metrics_logs_and_sample_videos(tmp_path):
    overrides = tiny_run_config(
        max_steps=2, log_interval=2, sample_interval=2, sample_steps=2, tensorboard=True, lr_anneal_steps=4
    )
    run_training(tmp_path, overrides)
    metrics, diagnostics = read_metrics(tmp_path)
    for key in (
        "loss",
        "mse",
        "grad_norm",
        "lr",
        "steps_per_sec",
        "videos_per_sec",
        "frames_per_sec",
        "data_wait_frac",
    ):
        assert np.isfinite(metrics[key]), key
    # At each sample interval: the conditioning gain (EMA and online weights) and sample statistics.
    assert diagnostics["step"] == 2
    for key in (
        "cond_gain_t500",
        "online_cond_gain_t500",
        "sample_brightness",
        "truth_brightness",
        "sample_psnr_first",
    ):
        assert np.isfinite(diagnostics[key]) and diagnostics[key] > 0, key
    assert any(key.startswith("loss_q") for key in metrics)
    assert metrics["lr"] == pytest.approx(1e-4 * (1 - 1 / 4))  # linear annealing, lr of step index 1
    assert (tmp_path / "samples" / "step_0000002.gif").stat().st_size > 0
    assert (tmp_path / "samples" / "step_0000002.mp4").stat().st_size > 0
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert load_run_config(tmp_path).network.in_channels == 1


def test_progress_prints_plain_lines_when_not_a_tty():
    stream = io.StringIO()
    progress = Progress(100, 0, interval=10, stream=stream)
    for step in range(1, 21):
        progress.update(step, 0.5)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("step 10/100  loss 0.5000") and "steps/s" in lines[0] and "ETA" in lines[0]


def test_progress_rate_and_eta_follow_the_recent_steps_after_a_slow_patch():
    now = [0.0]
    stream = io.StringIO()
    progress = Progress(1000, 0, interval=10, stream=stream, clock=lambda: now[0])
    now[0] = 600.0  # a slow patch: the first 10 steps take ten minutes
    progress.update(10, 0.5)
    for step in range(20, 311, 10):  # then 3 steps/s for 100 s
        now[0] += 10 / 3
        progress.update(step, 0.5)
    lines = stream.getvalue().splitlines()
    assert "0.02 steps/s" in lines[0]
    assert lines[-1].startswith("step 310/1000") and "3.00 steps/s" in lines[-1]
    assert lines[-1].endswith("ETA 3m50s")  # 690 steps left at 3 steps/s, not the hours of the average since the start


def test_ema_follows_its_formula():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, (0.5, 0.9))
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.state_dict(0.5, model)["weight"], start + 0.5)
    torch.testing.assert_close(ema.state_dict(0.9, model)["weight"], start + 0.1)


# ----------------------------------------------------------------------------- checkpoints


def _save(run_dir: Path, step: int, keep: int = 10) -> Path:
    config = resolve_run_config(tiny_run_config())
    state = {"w": torch.full((3,), float(step))}
    return save_checkpoint(
        run_dir, step, model_state=state, ema_states={0.9: state}, training_state={"x": 1}, config=config, keep=keep
    )


def test_checkpoints_keep_the_newest_n(tmp_path):
    for step in (1, 2, 3, 4):
        _save(tmp_path, step, keep=2)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [3, 4]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]


def test_corrupt_latest_checkpoint_is_reported_and_the_previous_used(tmp_path):
    _save(tmp_path, 1)
    latest = _save(tmp_path, 2)
    (tmp_path / "checkpoints" / ".tmp_step_0000003_x").mkdir()  # a save interrupted mid-way
    model_file = latest / "model.safetensors"
    model_file.write_bytes(model_file.read_bytes()[:-7])
    warnings: list[str] = []
    chosen = latest_valid_checkpoint(tmp_path, warn=warnings.append)
    assert chosen.name == "step_0000001"
    assert len(warnings) == 1 and "step_0000002" in warnings[0] and "corrupt model.safetensors" in warnings[0]


def test_resume_errors(tmp_path):
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        train_cli.run(parse_cli(["--resume", str(tmp_path)]))
    preset = write_tiny_yaml(tmp_path / "tiny.yaml", max_steps=1, save_interval=1)
    run_dir = tmp_path / "run"
    assert train_cli.run(parse_cli(["--config", str(preset), "--run_dir", str(run_dir)])) == 0
    with pytest.raises(
        ConfigError, match=r"model\.num_channels \(saved 32, given 64\); train\.lr \(saved 0\.0001, given 0\.5\)"
    ):
        train_cli.run(parse_cli(["--resume", str(run_dir), "--lr", "0.5", "--num_channels", "64"]))
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        train_cli.run(parse_cli(["--config", str(preset), "--run_dir", str(run_dir)]))


def test_sigterm_saves_a_checkpoint_before_exiting(tmp_path):
    """Cluster preemption signals the whole process group, data-loader workers included."""
    preset = write_tiny_yaml(tmp_path / "tiny.yaml", max_steps=100000, save_interval=100000)
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flexvid",
            "train",
            "--config",
            str(preset),
            "--run_dir",
            str(run_dir),
            "--num_workers",
            "1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not (run_dir / "metrics.jsonl").is_file() or not (run_dir / "metrics.jsonl").read_text():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "stopped by SIGTERM" in output
    ((step, path),) = list_checkpoints(run_dir)
    assert 1 <= step < 100000
    latest_valid_checkpoint(run_dir)


def test_wandb_logs_offline_without_an_account(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run_training(tmp_path, tiny_run_config(max_steps=1, wandb=True, sample_interval=1, sample_steps=2))
    run_id = (tmp_path / "wandb_id.txt").read_text().strip()
    (offline_run,) = (tmp_path / "wandb").glob(f"offline-run-*-{run_id}")
    assert list(offline_run.glob("*.wandb"))
