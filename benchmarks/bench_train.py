"""Training throughput of the presets in configs/, data pipeline included.

For each preset it trains `--warmup + --steps` steps with the real loader (workers, task sampling,
padding) and reports videos/s, frames/s (videos x K) and the share of step time spent waiting for
data, from the per-step metrics the trainer logs. Presets whose dataset is not on disk (no
`--data_dir`) run on generated Moving MNIST at the preset's size and length, so the network, batch
and data path are the preset's but the videos are a stand-in; the table says so.

    python benchmarks/bench_train.py --presets moving_mnist_cpu --steps 20
    python benchmarks/bench_train.py --presets mazes carla --steps 2 --warmup 1
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from flexvid.training.config import load_yaml_config, merge_overrides, resolve_run_config
from flexvid.training.distributed import DistInfo, choose_device
from flexvid.training.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def bench_preset(
    name: str,
    steps: int,
    warmup: int,
    device: str,
    data_dir: str | None,
    num_workers: int | None,
    batch_size: int | None,
) -> dict:
    """Train the preset briefly in a throw-away run directory; return its throughput row."""
    preset = load_yaml_config(CONFIGS / f"{name}.yaml")
    overrides = {
        "train": {
            "max_steps": warmup + steps,
            "log_interval": 1,
            "save_interval": 10**9,
            "sample_interval": 0,
            "tensorboard": False,
            "device": device,
        }
    }
    data_note = preset.get("data", {}).get("dataset", "moving_mnist")
    if data_dir:
        overrides["data"] = {"data_dir": data_dir}
    elif data_note != "moving_mnist":
        overrides["data"] = {"dataset": "moving_mnist"}
        data_note = f"moving_mnist stand-in for {data_note}"
    if num_workers is not None:
        overrides.setdefault("data", {})["num_workers"] = num_workers
    if batch_size is not None:
        overrides["train"]["batch_size"] = batch_size
    config = resolve_run_config(merge_overrides(preset, overrides))
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench_{name}_"))
    try:
        trainer = Trainer(config, run_dir, DistInfo(0, 1, 0, choose_device(device, 0)), out=io.StringIO())
        started = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - started
        lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][warmup:]
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    step_times = [1.0 / m["steps_per_sec"] for m in lines]
    total = sum(step_times)
    waiting = sum(t * m["data_wait_frac"] for t, m in zip(step_times, lines, strict=True))
    per_step = total / len(step_times)
    batch, K = config.train.batch_size, config.data.max_frames
    return {
        "preset": name,
        "device": str(trainer.device),
        "image": config.data.image_size,
        "K": K,
        "batch": batch,
        "params_m": sum(p.numel() for p in trainer.model.parameters()) / 1e6,
        "s_per_step": per_step,
        "videos_per_s": batch / per_step,
        "frames_per_s": batch * K / per_step,
        "data_wait": waiting / total,
        "workers": config.data.num_workers,
        "data": data_note,
        "wall_s": wall,
    }


def markdown(rows: list[dict]) -> str:
    header = (
        "| preset | device | image | K | global batch | params (M) | s/step | videos/s | frames/s | "
        "waiting for data | loader workers | data |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r['preset']} | {r['device']} | {r['image']} | {r['K']} | {r['batch']} | {r['params_m']:.1f} | "
        f"{r['s_per_step']:.2f} | {r['videos_per_s']:.2f} | {r['frames_per_s']:.1f} | {100 * r['data_wait']:.1f}% | "
        f"{r['workers']} | {r['data']} |\n"
        for r in rows
    )
    return header + body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["moving_mnist_cpu"], help="names of configs/*.yaml")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per preset")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--data_dir", default=None, help="the presets' dataset directory (else a stand-in)")
    parser.add_argument("--num_workers", type=int, default=None, help="override the presets' loader workers")
    parser.add_argument("--batch_size", type=int, default=None, help="override the presets' global batch")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.presets:
        rows.append(
            bench_preset(name, args.steps, args.warmup, args.device, args.data_dir, args.num_workers, args.batch_size)
        )
        print(json.dumps(rows[-1]), flush=True)
    print(markdown(rows))


if __name__ == "__main__":
    main()
