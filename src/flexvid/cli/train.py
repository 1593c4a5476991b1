"""`flexvid train`: train an FDM video diffusion model (one process, or many under torchrun).

Settings come from defaults, then `--config FILE.yaml`, then the flags given on the command line;
the resolved config is saved in the run directory. `--resume RUN_DIR` continues a run exactly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from flexvid.cli.options import Switch
from flexvid.errors import ConfigError
from flexvid.files import exclusive_lock, printable


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


# flag -> (config section, value type, help); `bool` entries are switches (--name / --no_name). Every
# flag defaults to "not given", so only the flags actually typed override the preset (and can be
# checked against a resumed run's config).
FLAGS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "dataset": ("data", str, "dataset name (default moving_mnist: generated, no download)"),
    "data_dir": ("data", str, "directory with the dataset's files"),
    "T": ("data", int, "video length in frames (default: the dataset's)"),
    "max_frames": ("data", int, "K: frames per training example / network call (default 20)"),
    "num_workers": ("data", int, "data-loading worker processes per training process (default 2)"),
    "image_size": ("model", int, "frame height and width (default: the dataset's)"),
    "num_channels": ("model", int, "base channel count of the U-Net (default 128)"),
    "num_res_blocks": ("model", int, "residual blocks per U-Net level (default 2)"),
    "num_heads": ("model", int, "attention heads (default 4)"),
    "attention_resolutions": ("model", _ints, "comma-separated feature-map sizes with attention (default 16,8)"),
    "dropout": ("model", float, "dropout rate (default 0)"),
    "learn_sigma": ("model", bool, "learn the variance as well (default off)"),
    "use_checkpoint": ("model", bool, "gradient checkpointing: less memory, more compute (default off)"),
    "diffusion_steps": ("diffusion", int, "diffusion steps (default 1000)"),
    "noise_schedule": ("diffusion", str, "linear or cosine (default linear)"),
    "batch_size": ("train", int, "GLOBAL batch size: videos per optimiser step summed over all processes; "
                   "each of N torchrun processes trains on batch_size / N (default 8)"),
    "microbatch": ("train", int, "videos per forward/backward pass in each process; 0: all at once (default 0)"),
    "lr": ("train", float, "AdamW learning rate (default 1e-4)"),
    "weight_decay": ("train", float, "AdamW weight decay (default 0)"),
    "lr_anneal_steps": ("train", int, "anneal the learning rate linearly to 0 over this many steps; 0: constant (default 0)"),
    "ema_rate": ("train", _floats, "comma-separated EMA rates (default 0.9999)"),
    "grad_clip": ("train", float, "clip the gradient norm to this value; 0: no clipping (default 0)"),
    "precision": ("train", str, "fp32, bf16 or fp16 autocast (fp16 adds a gradient scaler) (default fp32)"),
    "schedule_sampler": ("train", str, "timestep sampler: uniform or loss-second-moment (default uniform)"),
    "task_distribution": ("train", str, "training tasks: fdm, uniform or autoregressive (default fdm)"),
    "observed_share": ("train", float, "share of training tasks that have observed frames, 0..1 "
                       "(default: as the task distribution draws them, about 29%% for fdm)"),
    "init_from": ("train", str, "start from these weights (a checkpoint directory such as pretrained/moving_mnist, "
                  "or a .safetensors file) with a fresh optimiser: fine-tuning; the model settings must match"),
    "seed": ("train", int, "random seed (default 0)"),
    "max_steps": ("train", int, "train until this many optimiser steps (default 10000)"),
    "log_interval": ("train", int, "steps between metric logs (default 10)"),
    "save_interval": ("train", int, "steps between checkpoints (default 1000)"),
    "sample_interval": ("train", int, "steps between logged sample videos; 0: never (default 1000)"),
    "sample_steps": ("train", int, "DDIM steps for the logged sample videos (default 20)"),
    "keep_checkpoints": ("train", int, "how many of the newest checkpoints to keep (default 3)"),
    "tensorboard": ("train", bool, "write TensorBoard logs (default on)"),
    "wandb_project": ("train", str, "wandb project name (default flexvid)"),
    "device": ("train", str, "auto, cpu or cuda (default auto)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `flexvid train`."""
    parser.add_argument("--config", metavar="FILE.yaml", help="a preset (see configs/); flags override it")
    parser.add_argument("--run_dir", help="where checkpoints, logs and samples go (default runs/<dataset>-<time>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its newest checkpoint")
    parser.add_argument("--wandb", action=Switch, default=None, help="also log to wandb (default off; WANDB_MODE=offline works)")
    for name, (_, kind, help_text) in FLAGS.items():
        if kind is bool:
            parser.add_argument(f"--{name}", action=Switch, default=None, help=help_text)
        else:
            parser.add_argument(f"--{name}", type=kind, default=None, help=help_text)


def _check_tensorboard_can_write(run_dir: Path) -> None:
    """TensorBoard encodes its paths as UTF-8: refuse another name before training, not deep inside it."""
    try:
        os.fsdecode(run_dir).encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"--run_dir {printable(run_dir)} is not UTF-8 text, which TensorBoard needs for its logs; choose another "
            "--run_dir or add --no_tensorboard."
        ) from None


def overrides_from_args(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config values given as flags, by section."""
    overrides: dict[str, dict[str, Any]] = {}
    for name, (section, _, _) in FLAGS.items():
        value = getattr(args, name, None)
        if value is not None:
            overrides.setdefault(section, {})[name] = value
    if getattr(args, "wandb", None) is not None:
        overrides.setdefault("train", {})["wandb"] = args.wandb
    return overrides


def run(args: argparse.Namespace) -> int:
    """Resolve the config, join the torchrun group if any, train; 128 + signal number when stopped by a signal."""
    from flexvid.training.checkpointing import latest_valid_checkpoint
    from flexvid.training.config import (
        apply_resumable_overrides,
        conflicting_keys,
        load_run_config,
        load_yaml_config,
        merge_overrides,
        resolve_run_config,
    )
    from flexvid.training.distributed import broadcast_object, cleanup_distributed, setup_distributed
    from flexvid.training.trainer import Trainer

    requested = merge_overrides(load_yaml_config(args.config) if args.config else {}, overrides_from_args(args))
    dist_info = setup_distributed(requested.get("train", {}).get("device", "auto"))
    say = print if dist_info.is_main else (lambda *a, **k: None)
    try:
        checkpoint = None
        if args.resume:
            run_dir = Path(args.resume)
            if args.run_dir and Path(args.run_dir).resolve() != run_dir.resolve():
                raise ConfigError("Give either --resume RUN_DIR or a different --run_dir, not both.")
            checkpoint = latest_valid_checkpoint(run_dir, warn=lambda m: say(m, file=sys.stderr))
            saved = load_run_config(run_dir)
            conflicts = conflicting_keys(saved, requested)
            if conflicts:
                raise ConfigError(
                    f"The settings given contradict the saved config of {run_dir}: {'; '.join(conflicts)}; "
                    "drop those flags to resume, or start a new run."
                )
            config = apply_resumable_overrides(saved, requested)
        else:
            config = resolve_run_config(requested)
            default_dir = Path("runs") / f"{config.data.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
            run_dir = Path(args.run_dir) if args.run_dir else broadcast_object(default_dir, dist_info)
        if config.train.tensorboard:
            _check_tensorboard_can_write(run_dir)
        lock = exclusive_lock(run_dir, "--run_dir") if dist_info.is_main else contextlib.nullcontext()
        with lock:
            trainer = Trainer(config, run_dir, dist_info, resume_from=checkpoint, out=sys.stderr)
            where = f"{dist_info.world_size} process(es), device {dist_info.device}"
            say(f"training in {printable(run_dir)} on {where}", file=sys.stderr)
            result = trainer.train()
        outputs = [f"checkpoints/ (newest: {result.checkpoint.name if result.checkpoint else 'none'})", "metrics.jsonl"]
        if (run_dir / "samples").is_dir():
            outputs.append("samples/ (GIF and MP4 sample videos)")
        if (run_dir / "tensorboard").is_dir():
            outputs.append(f"tensorboard/ (view with: tensorboard --logdir {run_dir / 'tensorboard'})")
        say(f"done at step {result.step}; outputs in {printable(run_dir)}: {', '.join(outputs)}", file=sys.stderr)
    finally:
        cleanup_distributed()
    if result.stopped_by:
        import signal

        return 128 + int(getattr(signal, result.stopped_by, signal.SIGTERM))
    return 0
