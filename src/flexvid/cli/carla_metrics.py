"""`flexvid carla-metrics EVAL_DIR`: the paper's WD and OP from sampled and dataset coordinates."""

from __future__ import annotations

import argparse

from flexvid.eval.carla_metrics import FPS, FRAME_GAP, METRICS_FILE, OUTLIER_SPEED, evaluate_eval_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("eval_dir", help="evaluation directory whose coords/ were written by `flexvid carla-coords`")
    parser.add_argument(
        "--dataset_coords",
        default=None,
        help="folder of the dataset's coords_<i>.npy (default: DATA_DIR/predicted_coords if computed, "
        "else the coords shipped in DATA_DIR, with DATA_DIR from settings.json)",
    )
    parser.add_argument("--frame_gap", type=int, default=FRAME_GAP, help="frames between the two positions of a speed")
    parser.add_argument("--fps", type=float, default=FPS, help="frames per second of the videos, for speeds in m/s")
    parser.add_argument(
        "--outlier_speed", type=float, default=OUTLIER_SPEED, help="m/s above which a speed is an outlier"
    )


def run(args: argparse.Namespace) -> int:
    result = evaluate_eval_dir(
        args.eval_dir, args.dataset_coords, frame_gap=args.frame_gap, fps=args.fps, outlier_speed=args.outlier_speed
    )
    wd = "n/a (all speeds are outliers)" if result["WD"] is None else f"{result['WD']:.4f} m/s"
    print(f"WD {wd}, OP {result['OP']:.2f}% -> {args.eval_dir}/{METRICS_FILE}")
    return 0
