"""`flexvid video EVAL_DIR`: mp4 and gif files of sampled videos, observed frames outlined in red."""

from __future__ import annotations

import argparse
from pathlib import Path

from flexvid.sampling.viewing import export_videos


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("eval_dir", type=Path, help="a results directory written by `flexvid sample`")
    parser.add_argument("--out_dir", type=Path, default=None, help="where to write (default: EVAL_DIR/videos)")
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--scale", type=int, default=2, help="enlarge frames by this factor")


def run(args: argparse.Namespace) -> int:
    written = export_videos(args.eval_dir, args.out_dir, fps=args.fps, scale=args.scale)
    print(f"wrote {len(written)} files to {written[0].parent}")
    return 0
