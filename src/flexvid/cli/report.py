"""`flexvid report RESULTS_DIR`: one Markdown table and one PNG plot of every evaluation directory's metrics."""

from __future__ import annotations

import argparse

from flexvid.eval.report import write_report
from flexvid.files import printable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results_dir", help="folder searched recursively for evaluation directories (settings.json)")
    parser.add_argument("--out", default=None, help="where to write report.md and report.png (default: RESULTS_DIR)")


def run(args: argparse.Namespace) -> int:
    markdown, image = write_report(args.results_dir, args.out)
    print(markdown.read_text(), end="")
    print(f"wrote {printable(markdown)} and {printable(image)}")
    return 0
