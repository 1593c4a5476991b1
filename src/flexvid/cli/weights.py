"""`flexvid weights`: list the evaluation weights files and where they are looked for, or download one."""

from __future__ import annotations

import argparse

from flexvid.errors import WeightsError
from flexvid.eval.weights import WEIGHTS, download_weights, verify_file, weights_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="show each weights file, its source and whether it is installed")
    download = actions.add_parser("download", help="download a weights file into the weights directory")
    download.add_argument("name", choices=sorted(WEIGHTS), help="which weights file")
    download.add_argument("--dir", default=None, help="target directory (default: $FLEXVID_WEIGHTS_DIR or ~/.cache/flexvid)")


def run(args: argparse.Namespace) -> int:
    if args.action == "download":
        located = download_weights(args.name, args.dir)
        check = "matches the published checksum" if located.verified else "no published checksum to compare with"
        print(f"saved {located.path} (SHA-256 {located.sha256}; {check})")
        return 0
    print(f"weights directory: {weights_dir()}")
    for name, spec in sorted(WEIGHTS.items()):
        path = weights_dir() / spec.filename
        if not path.is_file():
            state = "missing"
        else:
            try:
                state = "installed, checksum ok" if verify_file(spec, path).verified else "installed"
            except WeightsError:
                state = "installed, WRONG CHECKSUM"
        print(f"{name:16s} {spec.filename:32s} {state}\n{'':16s} {spec.description}\n{'':16s} {spec.url}")
    return 0
