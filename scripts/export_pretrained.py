"""Export a training run's newest EMA weights as a shippable checkpoint directory, with its learning curve.

    python scripts/export_pretrained.py runs/mnist pretrained/moving_mnist
    python scripts/export_pretrained.py runs/mnist2 pretrained/moving_mnist --continues pretrained/moving_mnist

writes OUT/model.safetensors and config.json (flexvid's checkpoint format: `flexvid sample OUT` and
`load_pretrained(OUT)` read it), OUT/metrics.jsonl (the run's log) and OUT/training_curve.png (loss
and conditioning gain against steps).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from flexvid.checkpoint import load_pretrained, save_weights
from flexvid.files import atomic_write
from flexvid.training.checkpointing import latest_valid_checkpoint


def read_metrics(path: Path) -> list[dict]:
    """The JSONL log's complete lines (a partial last line is ignored)."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def plot_curve(rows: list[dict], path: Path, title: str) -> None:
    """Loss (mean over 100-step windows) and the online network's conditioning gain, against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loss = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    gains = {
        key: [(r["step"], r[key]) for r in rows if key in r]
        for key in ("online_cond_gain_t200", "online_cond_gain_t500", "online_cond_gain_t800")
    }
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=120)
    steps, values = np.array(loss).T
    window = 10
    smooth = np.convolve(values, np.ones(window) / window, mode="valid")
    left.plot(steps, values, color="0.8", lw=0.6)
    left.plot(steps[window - 1 :], smooth, color="tab:blue", lw=1.4)
    left.set(xlabel="step", ylabel="training loss (MSE)", yscale="log", title=title)
    for key, points in gains.items():
        if points:
            x, y = np.array(points).T
            right.plot(x, y, marker="o", ms=3, label=f"t = {key.rsplit('t', 1)[1]}")
    right.axhline(1.0, color="0.5", lw=0.8, ls="--")
    right.set(xlabel="step", ylabel="conditioning gain", title="MSE without / with observed frames")
    if any(gains.values()):
        right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("out")
    parser.add_argument(
        "--continues",
        default=None,
        help="the exported model the run started from (train --init_from): its steps and log come first",
    )
    args = parser.parse_args()
    run_dir, out = Path(args.run_dir), Path(args.out)
    checkpoint = latest_valid_checkpoint(run_dir)
    rows = read_metrics(run_dir / "metrics.jsonl")
    earlier: list[dict] = []
    offset = 0
    if args.continues:
        earlier = read_metrics(Path(args.continues) / "metrics.jsonl")
        offset = load_pretrained(args.continues).step or 0
        rows = [{**row, "step": row["step"] + offset} for row in rows]
    step = int(checkpoint.name.split("_")[-1]) + offset
    pretrained = load_pretrained(checkpoint)
    save_weights(out, pretrained.model.state_dict(), pretrained.config, step=step)
    log = "".join(json.dumps(row) + "\n" for row in earlier + rows)
    atomic_write(out / "metrics.jsonl", lambda tmp: Path(tmp).write_text(log))
    plot_curve(earlier + rows, out / "training_curve.png", out.name)
    print(f"exported the EMA weights of step {step} of {run_dir} to {out}")


if __name__ == "__main__":
    main()
