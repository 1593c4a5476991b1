"""FVD sanity table on Moving MNIST: test clips against other test clips, blurred, time-shuffled and noise.

The reference set is test clips N..2N-1; each row compares it with N clips made from the disjoint
test clips 0..N-1 (unchanged, blurred, frames permuted in time) or with uniform noise. Features and
distances go through the code `flexvid fvd` uses (`load_i3d`, `embed_videos`, `feature_statistics`,
`frechet_distance`), on uint8 clips as the samples are. A sensible metric orders the rows from the
other half (lowest) to noise (highest).

    OMP_NUM_THREADS=1 python scripts/fvd_sanity.py --num_clips 100 --out fvd_sanity.md
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from flexvid.data.base import build_dataset
from flexvid.eval.frame_metrics import gaussian_window
from flexvid.eval.fvd import GaussianStats, embed_videos, feature_statistics, frechet_distance
from flexvid.eval.i3d import load_i3d
from flexvid.files import atomic_write_text
from flexvid.video_io import to_uint8


def test_clips(start: int, count: int, frames: int, image_size: int) -> list[np.ndarray]:
    """uint8 (T, C, H, W) Moving MNIST test clips start..start+count-1, quantised as `flexvid fvd`
    quantises test videos."""
    dataset = build_dataset("moving_mnist", "test", T=frames, image_size=image_size)
    return [to_uint8(dataset[index][0]) for index in range(start, start + count)]


def blurred(video: np.ndarray, sigma: float) -> np.ndarray:
    """Every frame Gaussian-blurred with standard deviation `sigma` pixels (reflected borders), back to uint8."""
    size = 2 * math.ceil(3 * sigma) + 1
    window = gaussian_window(size, sigma).float()
    x = torch.from_numpy(video).float()
    channels = x.shape[1]
    x = F.pad(x, [size // 2] * 4, mode="reflect")
    x = F.conv2d(x, window.view(1, 1, size, 1).expand(channels, 1, size, 1), groups=channels)
    x = F.conv2d(x, window.view(1, 1, 1, size).expand(channels, 1, 1, size), groups=channels)
    return x.round().clamp(0, 255).to(torch.uint8).numpy()


def shuffled(video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The clip's frames in a random order (a permutation drawn per clip)."""
    return video[rng.permutation(len(video))]


def noise_like(video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Independent uniform uint8 noise of the clip's shape."""
    return rng.integers(0, 256, video.shape, dtype=np.uint8)


def sanity_rows(args: argparse.Namespace) -> tuple[list[tuple[str, float]], dict[str, object]]:
    """FVD of each comparison set against the reference half, and the I3D weights' provenance."""
    i3d = load_i3d(args.i3d)
    candidates = test_clips(0, args.num_clips, args.frames, args.image_size)
    reference = test_clips(args.num_clips, args.num_clips, args.frames, args.image_size)
    rng = np.random.default_rng(args.seed)
    sets: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = [
        ("test clips 0..N-1 (the other half)", lambda video: video),
        (
            f"test clips 0..N-1, blurred (Gaussian, sigma {args.blur_sigma:g} px)",
            lambda video: blurred(video, args.blur_sigma),
        ),
        ("test clips 0..N-1, frames shuffled in time", lambda video: shuffled(video, rng)),
        ("uniform noise", lambda video: noise_like(video, rng)),
    ]

    def statistics(name: str, videos: list[np.ndarray]) -> GaussianStats:
        print(name, flush=True)
        features = embed_videos(i3d, videos, args.batch_size, progress=True, total=len(videos))
        return feature_statistics(features)

    real = statistics("reference: test clips N..2N-1", reference)
    rows = [(name, frechet_distance(statistics(name, [make(v) for v in candidates]), real)) for name, make in sets]
    return rows, i3d.describe()


def markdown(rows: list[tuple[str, float]], weights: dict[str, object], args: argparse.Namespace) -> str:
    """The table, with the setting that produced it."""
    lines = [
        f"Moving MNIST test split, N = {args.num_clips} clips per set, {args.frames} frames of "
        f"{args.image_size}x{args.image_size}; reference: test clips N..2N-1 (N = {args.num_clips}); "
        f"I3D `{weights['file']}` (SHA-256 `{weights['sha256']}`); seed {args.seed}.",
        "",
        "| compared with the reference | FVD |",
        "|---|---:|",
        *(f"| {name} | {score:.1f} |" for name, score in rows),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_clips", type=int, default=100, help="N, clips per set (the test split gives 2N)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--image_size", type=int, default=64, help="frame size (Moving MNIST's canvas is 64)")
    parser.add_argument("--blur_sigma", type=float, default=2.0, help="Gaussian blur of the blurred set, in pixels")
    parser.add_argument(
        "--batch_size", type=int, default=4, help="clips per I3D call (memory only; no effect on the scores)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the frame permutations and the noise")
    parser.add_argument("--i3d", default=None, help="I3D weights (default: the installed ones, as `flexvid fvd`)")
    parser.add_argument("--out", default=None, help="also write the Markdown table to this file")
    args = parser.parse_args()
    started = time.monotonic()
    rows, weights = sanity_rows(args)
    table = markdown(rows, weights, args)
    print(table, end="", flush=True)
    if args.out is not None:
        atomic_write_text(args.out, table)
    print(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
