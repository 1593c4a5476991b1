"""The `flexvid` command: one sub-command per module in `flexvid.cli`, imported only when used."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import warnings

import flexvid
from flexvid.cli.options import Parser
from flexvid.errors import FlexvidError

# Sub-command name -> (module under flexvid.cli, one-line help). Each module defines
# `add_arguments(parser)` and `run(args) -> int | None`.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "Train an FDM video diffusion model (single process or under torchrun)."),
    "sample": ("sample", "Generate videos from a checkpoint with a sampling scheme."),
    "schemes": ("schemes", "List the sampling schemes, or print and draw one's stages (schemes show NAME)."),
    "video": ("video", "Write mp4/gif files of sampled videos."),
    "data": ("data", "Download and prepare the paper's datasets, or inspect a dataset (data info)."),
    "fvd": ("fvd", "Fréchet video distance of an evaluation directory's samples (I3D, PyTorch)."),
    "metrics": ("metrics", "Per-frame PSNR, SSIM and LPIPS (best of k samples) of an evaluation directory."),
    "carla-regressor": ("carla_regressor", "Train the CARLA position classifier or regressor (train ...)."),
    "carla-coords": ("carla_coords", "Map sampled or dataset CARLA videos to Town01 (x, y) positions."),
    "carla-metrics": ("carla_metrics", "CARLA WD and OP speed metrics of an evaluation directory."),
    "compare": ("compare", "Compare sampling schemes on one model: long-range consistency table and pictures."),
    "report": ("report", "Gather the metrics of many evaluation directories into a table and a plot."),
    "weights": ("weights", "List or download the evaluation weights files (I3D, AlexNet, LPIPS heads)."),
}

_PYTHON_FORMATWARNING = warnings.formatwarning
DEBUG_FLAG = "--debug"  # before the command: show the full traceback of any error
DEBUG_ENV = "FLEXVID_DEBUG"  # the same, set to 1 in the environment


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; sub-command arguments are added lazily in `main`."""
    parser = Parser(
        prog="flexvid",
        description="Flexible Diffusion Models for long videos: train, sample, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"flexvid {flexvid.__version__}")
    parser.add_argument(
        DEBUG_FLAG, action="store_true", help=f"show the full traceback of errors (or set {DEBUG_ENV}=1)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `flexvid` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if argv[:1] == [DEBUG_FLAG]:
        debug, argv = True, argv[1:]
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv or ["--help"])
        return
    name = argv[0]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(f"flexvid.cli.{module_name}")
    sub_parser = Parser(prog=f"flexvid {name}", description=help_text)
    module.add_arguments(sub_parser)
    args = sub_parser.parse_args(argv[1:])
    warnings.formatwarning = _one_line_warning(name)
    if debug:
        sys.exit(module.run(args) or 0)
    try:
        code = module.run(args)
    except FlexvidError as err:
        print(f"flexvid {name}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:  # a full disk, a read-only or vanished location: the user's to fix, not a bug
        print(f"flexvid {name}: error: {describe_os_error(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"flexvid {name}: interrupted", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    sys.exit(code or 0)


def _one_line_warning(command: str):
    """flexvid's warnings as one line each, `flexvid CMD: warning: ...`, without the source line."""

    def format_warning(message, category, filename, lineno, line=None) -> str:
        if category.__module__.startswith("flexvid") or category is UserWarning:
            return f"flexvid {command}: warning: {message}\n"
        return _PYTHON_FORMATWARNING(message, category, filename, lineno, line)

    return format_warning


def describe_os_error(err: OSError) -> str:
    """One sentence for a failed file operation: what failed, on which path, and what to check."""
    where = f" ({err.filename})" if err.filename else ""
    return (
        f"{err.strerror or err}{where}; check that the location exists and is writable and that its disk "
        "has free space."
    )
