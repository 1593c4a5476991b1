"""`flexvid data`: download and prepare the paper's datasets, and inspect any dataset.

flexvid data carla --download DIR      fetch CARLA Town01 (no traffic), unpack, write splits
flexvid data carla --split DIR         only (re)write video_train.csv / video_test.csv
flexvid data mazes|minerl --download DIR   fetch CWVAE's zip and convert its mp4s to .npy
flexvid data info NAME|DIR             the loader chosen and why, counts, shapes, lengths (--sheet: a contact sheet)
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from pathlib import Path
from typing import Any

from flexvid.cli.options import Switch
from flexvid.data.base import build_dataset, dataset_spec
from flexvid.data.contact_sheet import save_contact_sheet
from flexvid.data.detect import detect_dataset
from flexvid.data.folder import UnreadableFilesWarning
from flexvid.data.prepare import (
    CARLA_TEST_VIDEOS,
    CARLA_URL,
    CWVAE_URLS,
    prepare_carla,
    prepare_cwvae,
    write_carla_splits,
)
from flexvid.errors import DatasetError, FlexvidError

OWN_DATASETS = ("carla_no_traffic", "mazes", "mazes_cwvae", "minerl", "folder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Sub-commands carla, mazes, minerl and info."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    carla = actions.add_parser("carla", help="download CARLA Town01 (no traffic) or write its split files")
    target = carla.add_mutually_exclusive_group(required=True)
    target.add_argument("--download", type=Path, metavar="DIR", help="download, unpack and split into DIR")
    target.add_argument("--split", type=Path, metavar="DIR", help="only write video_train.csv / video_test.csv in DIR")
    carla.add_argument("--num_test", type=int, default=CARLA_TEST_VIDEOS, help="test videos (the last by number)")
    _add_download_options(carla, CARLA_URL)

    for name, aliases in (("mazes", ["mazes_cwvae"]), ("minerl", [])):
        cwvae = actions.add_parser(name, aliases=aliases, help=f"download CWVAE's {name} videos and convert to .npy")
        cwvae.add_argument("--download", type=Path, metavar="DIR", required=True, help="directory to create")
        _add_download_options(cwvae, CWVAE_URLS[name])

    info = actions.add_parser("info", help="print counts, shapes and lengths of a dataset (and draw a contact sheet)")
    info.add_argument("target", help="a dataset name (with --data_dir) or a data directory")
    info.add_argument(
        "--dataset",
        default=None,
        help="the loader for a data directory (default: chosen from its layout, and the reason printed)",
    )
    info.add_argument("--data_dir", type=Path, default=None, help="the dataset's files, when TARGET is a name")
    info.add_argument("--split", choices=("train", "test"), default=None, help="one split (default: both)")
    info.add_argument("--T", type=int, default=None, help="clip length (default: dataset's, or shortest video)")
    info.add_argument("--image_size", type=int, default=None, help="frame size (default: the dataset's)")
    info.add_argument("--frame_stride", type=int, default=1, help="folder datasets: keep every n-th frame")
    info.add_argument("--num_videos", type=int, default=4, help="videos on the contact sheet")
    info.add_argument("--sheet", type=Path, default=None, help="write a contact sheet PNG here (default: none written)")


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen action."""
    if args.action == "info":
        return show_info(args)
    common: dict[str, Any] = {
        "url": args.url,
        "archive": args.archive,
        "sha256": args.sha256,
        "keep_archive": args.keep_archive,
        "progress": args.progress,
    }
    if args.action == "carla":
        if args.split is not None:
            n_train, n_test = write_carla_splits(args.split, args.num_test)
            print(f"Wrote {args.split}/video_train.csv ({n_train} videos) and video_test.csv ({n_test} videos).")
            return 0
        dest = prepare_carla(args.download, num_test=args.num_test, **common)
        print(f"CARLA is ready in {dest}; train with --dataset carla_no_traffic --data_dir {dest}.")
        return 0
    name = "mazes" if args.action == "mazes_cwvae" else args.action
    dest = prepare_cwvae(name, args.download, **common)
    print(f"{name} is ready in {dest}; train with --dataset {name} --data_dir {dest}.")
    return 0


def show_info(args: argparse.Namespace) -> int:
    """Print which loader reads the data and why, a summary of each split, and (with --sheet) write a
    contact sheet of a few videos."""
    name, data_dir = _choose_dataset(args)
    if dataset_spec(name).needs_data_dir and data_dir is None:
        raise DatasetError(f"Dataset {name!r} needs --data_dir pointing at its files.")
    sheet_source = None
    last_error: FlexvidError | None = None
    shown: set[str] = set()
    for split in [args.split] if args.split else ["train", "test"]:
        try:
            dataset = _build(name, split, data_dir, args, T=args.T or (1 if name in OWN_DATASETS else None))
        except FlexvidError as err:
            if args.split:
                raise
            print(f"  {split}: not available ({err})")
            last_error = err
            continue
        _print_split(split, dataset, shown)
        sheet_source = sheet_source or (split, dataset)
    if sheet_source is None:
        assert last_error is not None  # no split was readable
        raise last_error
    split, dataset = sheet_source
    if args.T is None and name in OWN_DATASETS:
        shortest = min(dataset.summary()["lengths"])
        dataset = _build(name, split, data_dir, args, T=min(dataset_spec(name).default_T, shortest))
    count = min(args.num_videos, len(dataset))
    clips = [dataset[i][0] for i in range(count)]
    print(f"  clips: {tuple(clips[0].shape)} (T, C, H, W), float32 in [-1, 1]")
    if args.sheet is None:
        print("add --sheet FILE.png for a contact sheet of a few videos")
        return 0
    sheet = save_contact_sheet(clips, args.sheet)
    print(f"contact sheet of {count} {split} video(s): {sheet}")
    return 0


def _choose_dataset(args: argparse.Namespace) -> tuple[str, Path | None]:
    """The dataset name and data directory to inspect, printed with how they were chosen."""
    if _is_dataset_name(args.target):
        if args.dataset is not None:
            raise DatasetError(f"{args.target!r} is a dataset name; give --dataset only with a data directory.")
        print(f"dataset {args.target}" + (f" in {args.data_dir}" if args.data_dir else ""))
        return args.target, args.data_dir
    if args.data_dir is not None:
        raise DatasetError(
            f"Unknown dataset {args.target!r}; give a dataset name with --data_dir, or a directory alone."
        )
    directory = Path(args.target)
    if args.dataset is not None:
        dataset_spec(args.dataset)
        print(f"dataset {args.dataset} in {directory} (chosen with --dataset)")
        return args.dataset, directory
    detection = detect_dataset(directory)
    print(f"dataset {detection.name} in {directory}: {detection.reason}; --dataset NAME chooses another loader")
    return detection.name, directory


def _is_dataset_name(target: str) -> bool:
    try:
        dataset_spec(target)
    except DatasetError:
        return False
    return True


def _build(name: str, split: str, data_dir: Path | None, args: argparse.Namespace, T: int | None):
    """One split; its unreadable files are printed by `_print_split`, so they are not also warned about."""
    options: dict[str, Any] = {}
    if name in OWN_DATASETS:
        options["short_videos"] = "skip"
    if name == "folder":
        options["frame_stride"] = args.frame_stride
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreadableFilesWarning)
        return build_dataset(name, split, T=T, image_size=args.image_size, data_dir=data_dir, **options)


def _print_split(split: str, dataset, shown: set[str]) -> None:
    """One line per split; each unreadable file is listed once (`shown`), though splits may share it."""
    summary: dict[str, Any] = dataset.summary() if hasattr(dataset, "summary") else {"videos": len(dataset)}
    line = f"  {split}: {summary['videos']} videos"
    if "frame_shape" in summary:
        line += ", stored frames " + "x".join(str(s) for s in summary["frame_shape"])
    lengths = summary.get("lengths")
    if lengths:
        line += f", length min {min(lengths)} / median {statistics.median(lengths):g} / max {max(lengths)}"
    if summary.get("kinds"):
        line += f", kinds {', '.join(summary['kinds'])}"
    if summary.get("coords"):
        line += ", with coords"
    print(line)
    for path, reason in summary.get("skipped", []):
        if path not in shown:
            print(f"    skipped unreadable {path}: {reason}")
            shown.add(path)
    if summary.get("skipped"):
        print(f"    {len(summary['skipped'])} file(s) skipped")


def _add_download_options(parser: argparse.ArgumentParser, default_url: str) -> None:
    parser.add_argument("--url", default=default_url, help="where to download from")
    parser.add_argument("--archive", type=Path, default=None, help="use this already downloaded archive instead")
    parser.add_argument("--sha256", default=None, help="expected SHA-256 of the archive")
    parser.add_argument(
        "--keep_archive", action=Switch, default=False, help="keep the downloaded archive after unpacking"
    )
    parser.add_argument("--progress", action=Switch, default=True, help="show progress bars")
