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
from typing import Any

from flexvid.cli.options import add_config_flags, given_values
from flexvid.errors import ConfigError
from flexvid.files import exclusive_lock, printable
from flexvid.run_config import SECTIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `flexvid train`: one per config field (named as in the YAML sections), none set by default,
    so only the flags typed override the preset (and are checked against a resumed run's config)."""
    parser.add_argument("--config", metavar="FILE.yaml", help="a preset (see configs/); flags override it")
    parser.add_argument("--run_dir", help="where checkpoints, logs and samples go (default runs/<dataset>-<time>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its newest checkpoint")
    for name, cls in SECTIONS.items():
        group = parser.add_argument_group(f"{name} settings (the {name} section of a preset)")
        add_config_flags(group, cls, given_only=True)


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
    given = {name: given_values(args, cls) for name, cls in SECTIONS.items()}
    return {name: values for name, values in given.items() if values}


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
        assert config.train is not None  # validate_run_config refuses a config without one
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
