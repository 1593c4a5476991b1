"""`flexvid video EVAL_DIR`: mp4 and gif files of sampled videos, observed frames outlined in red, with a
frame counter, and with `--truth` the ground-truth test video beside each sample."""

from __future__ import annotations

import argparse
from pathlib import Path

from flexvid.cli.options import Switch
from flexvid.sampling.viewing import export_videos


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("eval_dir", type=Path, help="a results directory written by `flexvid sample`")
    parser.add_argument("--out_dir", type=Path, default=None, help="where to write (default: EVAL_DIR/videos)")
    parser.add_argument("--fps", type=float, default=8.0, help="frames per second")
    parser.add_argument("--scale", type=int, default=2, help="enlarge frames by this factor")
    parser.add_argument(
        "--truth",
        action=Switch,
        default=False,
        help="place the ground-truth test video (outlined in grey) to the left of each sample",
    )
    parser.add_argument(
        "--gt_dir",
        type=Path,
        default=None,
        help="with --truth: read ground truth from GT_DIR/NNNN.npy instead of the dataset's test split",
    )
    parser.add_argument(
        "--data_dir",
        type=Path,
        default=None,
        help="with --truth: the test data directory (default: the one settings.json records)",
    )


def run(args: argparse.Namespace) -> int:
    written = export_videos(
        args.eval_dir,
        args.out_dir,
        fps=args.fps,
        scale=args.scale,
        truth=args.truth,
        gt_dir=args.gt_dir,
        data_dir=args.data_dir,
    )
    print(f"wrote {len(written)} files to {written[0].parent}")
    return 0
