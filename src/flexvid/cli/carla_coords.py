"""`flexvid carla-coords EVAL_DIR|DATASET_DIR`: map every frame to its CARLA Town01 (x, y) position."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from flexvid.cli.options import Switch
from flexvid.errors import DatasetError
from flexvid.eval.carla_metrics import COORDS_SUBDIR, PREDICTED_DATASET_COORDS_SUBDIR, PROVENANCE_FILE
from flexvid.eval.carla_position import CarlaPositionModel, load_position_model
from flexvid.eval.carla_train import SPLITS, carla_split_files, load_frames
from flexvid.eval_layout import sample_files, sample_id, samples_dir
from flexvid.files import atomic_write, atomic_write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", help="an evaluation directory (samples/*.npy) or a CARLA dataset directory (video_<i>.pt)"
    )
    parser.add_argument(
        "--classifier",
        default=None,
        help="classifier_checkpoint.pth (default: $FLEXVID_WEIGHTS_DIR/carla/, else ~/.cache/flexvid/carla/)",
    )
    parser.add_argument(
        "--regressor", default=None, help="regressor_checkpoint.pth (default: next to the classifier's default)"
    )
    parser.add_argument("--batch_size", type=int, default=8, help="frames per network call")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument(
        "--split", choices=SPLITS, default="all", help="dataset videos to map (dataset directories only)"
    )
    parser.add_argument(
        "--out",
        default=None,
        help=f"output folder (default: EVAL_DIR/{COORDS_SUBDIR} or DATASET_DIR/{PREDICTED_DATASET_COORDS_SUBDIR})",
    )
    parser.add_argument("--overwrite", action=Switch, default=False, help="recompute coordinates that already exist")


def run(args: argparse.Namespace) -> int:
    path = Path(args.path)
    is_eval_dir = samples_dir(path).is_dir()
    if not is_eval_dir and not any(path.glob("video_*.pt")):
        raise DatasetError(
            f"{path} has neither a samples/ folder nor video_<i>.pt files; give an evaluation or CARLA dataset "
            "directory."
        )
    model = load_position_model(args.classifier, args.regressor, args.device)
    if is_eval_dir:
        out = Path(args.out) if args.out else path / COORDS_SUBDIR
        written = write_sample_coords(model, path, out, args.batch_size, args.overwrite)
    else:
        out = Path(args.out) if args.out else path / PREDICTED_DATASET_COORDS_SUBDIR
        written = write_dataset_coords(model, path, out, args.split, args.batch_size, args.overwrite)
    print(f"wrote {written} coordinate files to {out}")
    return 0


def write_sample_coords(
    model: CarlaPositionModel, eval_dir: Path, out_dir: Path, batch_size: int = 8, overwrite: bool = False
) -> int:
    """EVAL_DIR/samples/sample_NNNN-K.npy (uint8 T x 3 x H x W) -> out_dir/coords_NNNN-K.npy (T x 2);
    returns the number of files written."""
    files = sample_files(eval_dir)
    if not files:
        raise DatasetError(f"No .npy samples in {samples_dir(eval_dir)}; run the sampler first.")

    def load(path: Path) -> torch.Tensor:
        video = np.load(path)
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[1] != 3:
            raise DatasetError(
                f"{path} holds {video.dtype} {video.shape}; samples must be uint8 RGB videos of shape (T, 3, H, W)."
            )
        return torch.from_numpy(video)

    names = [(path, f"coords_{sample_id(video, sample)}.npy") for video, sample, path in files]
    return _write_all(model, names, load, out_dir, batch_size, overwrite)


def write_dataset_coords(
    model: CarlaPositionModel,
    data_dir: Path,
    out_dir: Path,
    split: str = "all",
    batch_size: int = 8,
    overwrite: bool = False,
) -> int:
    """video_<i>.pt of a CARLA split -> out_dir/coords_<i>.npy predicted positions; returns files written."""
    names = [(video, coords.name) for video, coords in carla_split_files(data_dir, split)]
    return _write_all(model, names, load_frames, out_dir, batch_size, overwrite)


def _write_all(
    model: CarlaPositionModel,
    names: list[tuple[Path, str]],
    load: Callable[[Path], torch.Tensor],
    out_dir: Path,
    batch_size: int,
    overwrite: bool,
) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for source, name in tqdm(names, desc="CARLA coordinates", unit="video"):
        target = out_dir / name
        if target.exists() and not overwrite:
            continue
        coords = model.predict_video(load(source), batch_size)
        atomic_write(target, functools.partial(np.save, arr=coords))
        written += 1
    if written:
        atomic_write_json(out_dir / PROVENANCE_FILE, model.provenance)
    return written
