"""Where an evaluation directory keeps its files; `flexvid sample` writes it, every evaluation command reads it.

EVAL_DIR/settings.json                   how the samples were made (flexvid.sampling.job)
EVAL_DIR/samples/sample_NNNN-K.npy       sample K of test video NNNN, uint8 (T, C, H, W)
EVAL_DIR/samples/.sample_NNNN-K.npy.*.tmp  a video still being written (or left by a killed job)
EVAL_DIR/metrics-<N>-<k>.json            `flexvid metrics`: the first N videos, best of k samples
EVAL_DIR/fvd-<N>-<i>.txt and .json       `flexvid fvd`: the first N videos, sample i
EVAL_DIR/*.json                          any other metric file (e.g. carla_metrics.json)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

SETTINGS_FILE = "settings.json"
SAMPLES_DIR = "samples"
_SAMPLE_NAME = re.compile(r"^sample_(\d{4,})-(\d+)\.npy$")
_FVD_NAME = re.compile(r"^fvd-(\d+)-(\d+)\.(?:json|txt)$")
_COUNTS = re.compile(r"-\d+-\d+(?=\.)")  # the -<N>-<k> of a metric file's name


class SampleFile(NamedTuple):
    """One saved sample: which test video, which sample of it, and its file."""

    video: int
    sample: int
    path: Path


def settings_path(eval_dir: str | Path) -> Path:
    """EVAL_DIR/settings.json."""
    return Path(eval_dir) / SETTINGS_FILE


def samples_dir(eval_dir: str | Path) -> Path:
    """EVAL_DIR/samples, the folder of sample videos."""
    return Path(eval_dir) / SAMPLES_DIR


def sample_id(video: int, sample: int) -> str:
    """The id "NNNN-K" of sample `sample` of test video `video` (also in files derived from it, e.g. coords)."""
    return f"{video:04d}-{sample}"


def sample_path(eval_dir: str | Path, video: int, sample: int) -> Path:
    """Where sample `sample` of test video `video` lives."""
    return samples_dir(eval_dir) / f"sample_{sample_id(video, sample)}.npy"


def parse_sample_name(name: str) -> tuple[int, int] | None:
    """(video, sample) of a sample file's name, or None for any other file."""
    match = _SAMPLE_NAME.match(name)
    return None if match is None else (int(match[1]), int(match[2]))


def sample_files(eval_dir: str | Path) -> list[SampleFile]:
    """Every sample of an evaluation directory, ordered by video and then sample ([] without samples/)."""
    folder = samples_dir(eval_dir)
    if not folder.is_dir():
        return []
    found = [(parse_sample_name(p.name), p) for p in folder.iterdir()]
    return sorted(SampleFile(*key, path) for key, path in found if key is not None)


def partial_samples(eval_dir: str | Path) -> list[Path]:
    """Temporary files of videos being written (flexvid.files.temp_path_beside names them `.NAME.*.tmp`)."""
    folder = samples_dir(eval_dir)
    return sorted(folder.glob(".sample_*.tmp")) if folder.is_dir() else []


def metrics_path(eval_dir: str | Path, num_videos: int, num_samples: int) -> Path:
    """`flexvid metrics`' result for the first `num_videos` videos, best of `num_samples`."""
    return Path(eval_dir) / f"metrics-{num_videos}-{num_samples}.json"


def fvd_paths(eval_dir: str | Path, num_videos: int, sample: int) -> tuple[Path, Path]:
    """`flexvid fvd`'s number (.txt) and number with its protocol (.json), for sample `sample` of the
    first `num_videos` videos."""
    stem = Path(eval_dir) / f"fvd-{num_videos}-{sample}"
    return stem.with_suffix(".txt"), stem.with_suffix(".json")


def parse_fvd_name(name: str) -> tuple[int, int] | None:
    """(num_videos, sample) of an FVD file's name (.txt or .json), or None for any other file."""
    match = _FVD_NAME.match(name)
    return None if match is None else (int(match[1]), int(match[2]))


def metric_files(eval_dir: str | Path) -> list[Path]:
    """The JSON metric files of an evaluation directory (every .json but settings.json), by name."""
    return sorted(p for p in Path(eval_dir).glob("*.json") if p.name != SETTINGS_FILE)


def fvd_text_files(eval_dir: str | Path) -> list[Path]:
    """The FVD .txt files of an evaluation directory, by name."""
    return sorted(p for p in Path(eval_dir).glob("fvd-*.txt") if parse_fvd_name(p.name) is not None)


def metric_kind(name: str) -> str:
    """A metric file's name with its counts generalised (fvd-100-0.json -> fvd-<N>-<k>.json), to group runs."""
    return _COUNTS.sub("-<N>-<k>", name)


def find_eval_dirs(results_dir: str | Path) -> list[Path]:
    """Every evaluation directory (a folder with settings.json) at or under `results_dir`, by path."""
    return [path.parent for path in sorted(Path(results_dir).rglob(SETTINGS_FILE))]


__all__ = [
    "SAMPLES_DIR",
    "SETTINGS_FILE",
    "SampleFile",
    "find_eval_dirs",
    "fvd_paths",
    "fvd_text_files",
    "metric_files",
    "metric_kind",
    "metrics_path",
    "parse_fvd_name",
    "parse_sample_name",
    "partial_samples",
    "sample_files",
    "sample_id",
    "sample_path",
    "samples_dir",
    "settings_path",
]
