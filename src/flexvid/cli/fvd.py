"""`flexvid fvd EVAL_DIR`: Fréchet video distance of sampled videos against the matching test videos.

Protocol of the reference: whole videos at full length (observed frames included), sample
`--sample_idx` of each of the first N test videos. Writes fvd-<N>-<sample_idx>.txt (the number) and
fvd-<N>-<sample_idx>.json (the number with its protocol and the I3D weights' SHA-256).
"""

from __future__ import annotations

import argparse

import torch

from flexvid.errors import ConfigError
from flexvid.eval.fvd import fvd_of_eval_dir
from flexvid.eval.i3d import load_i3d
from flexvid.eval_layout import fvd_paths
from flexvid.files import atomic_write_json, atomic_write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("eval_dir", help="evaluation directory with settings.json and samples/")
    parser.add_argument(
        "--i3d",
        default=None,
        help="I3D weights: i3d-kinetics-400.ckpt (`flexvid weights install i3d`), i3d_pretrained_400.pt or "
        "i3d_torchscript.pt (default: the first of these in $FLEXVID_WEIGHTS_DIR or ~/.cache/flexvid)",
    )
    parser.add_argument(
        "--num_videos", type=int, default=None, help="N, the first N test videos (default: all with samples)"
    )
    parser.add_argument("--sample_idx", type=int, default=0, help="which sample of each test video")
    parser.add_argument(
        "--batch_size",
        type=int,
        default=2,
        help="videos per I3D call, samples and test videos alike (memory only; no effect on the score)",
    )
    parser.add_argument("--gt_dir", default=None, help="folder of NNNN.npy uint8 test videos, instead of the dataset")
    parser.add_argument("--data_dir", default=None, help="dataset location, overriding settings.json")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def run(args: argparse.Namespace) -> int:
    i3d = load_i3d(args.i3d, device=args.device)
    result = fvd_of_eval_dir(
        args.eval_dir, i3d, num_videos=args.num_videos, sample_idx=args.sample_idx,
        batch_size=args.batch_size, gt_dir=args.gt_dir, data_dir=args.data_dir, progress=True,
    )  # fmt: skip
    protocol = result["protocol"]
    weights = protocol["i3d_weights"]
    print(  # before writing, so a failed write loses nothing
        f"FVD {result['fvd']:.3f} on {protocol['num_videos']} videos of {protocol['frames_per_video']} frames "
        f"(sample {args.sample_idx}, observed frames included; I3D {weights['file']} sha256 "
        f"{weights['sha256'][:12]}...)",
        flush=True,
    )
    text_path, json_path = fvd_paths(args.eval_dir, protocol["num_videos"], args.sample_idx)
    try:
        atomic_write_text(text_path, f"{result['fvd']!r}\n")
        atomic_write_json(json_path, result, sort_keys=True, default=str)
    except OSError as err:
        raise ConfigError(
            f"Could not write {text_path} and {json_path.name} ({err.strerror or err}); the score is printed above, "
            "and running again once the evaluation directory is writable saves it with its protocol."
        ) from None
    print(f"wrote {text_path} and {json_path}")
    return 0
