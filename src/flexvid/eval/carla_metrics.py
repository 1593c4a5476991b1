"""The paper's CARLA Town01 metrics from position trajectories: WD and OP.

A speed is the distance between positions `frame_gap` frames apart divided by the time between
them (10 frames = 1 s at CARLA's 10 fps), taken at every start frame. OP is the percentage of
speeds above 10 m/s (physically implausible jumps); WD is the 1-D Wasserstein-1 distance between
the remaining speeds and the dataset's speeds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from flexvid.errors import DatasetError
from flexvid.eval_layout import settings_path as eval_settings_path
from flexvid.files import atomic_write_json

FRAME_GAP = 10  # frames between the two positions of one speed
FPS = 10.0  # CARLA dataset frame rate
OUTLIER_SPEED = 10.0  # m/s; faster is an outlier (OP) and left out of WD
METRICS_FILE = "carla_metrics.json"
COORDS_SUBDIR = "coords"
PREDICTED_DATASET_COORDS_SUBDIR = "predicted_coords"
PROVENANCE_FILE = "position_model.json"  # written next to predicted coords: which weights made them


def speeds_from_positions(positions: np.ndarray, frame_gap: int = FRAME_GAP, fps: float = FPS) -> np.ndarray:
    """(T, >=2) positions in metres -> (T - frame_gap,) speeds in m/s over every window of `frame_gap` frames."""
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] < 2:
        raise DatasetError(f"Positions must have shape (T, 2), got {positions.shape}; pass one trajectory at a time.")
    if len(positions) <= frame_gap:
        raise DatasetError(
            f"A trajectory of {len(positions)} positions has no pair {frame_gap} frames apart; use longer videos or a "
            "smaller frame gap."
        )
    xy = positions[:, :2]
    distance = np.linalg.norm(xy[frame_gap:] - xy[:-frame_gap], axis=1)
    return distance / (frame_gap / fps)


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    """W1 between two empirical distributions (any sizes): the integral over u of |F_a^-1(u) - F_b^-1(u)|."""
    a = np.sort(np.asarray(a, dtype=np.float64).ravel())
    b = np.sort(np.asarray(b, dtype=np.float64).ravel())
    if len(a) == 0 or len(b) == 0:
        raise DatasetError(
            "The Wasserstein distance needs at least one value on each side; got an empty set of speeds."
        )
    # Both quantile functions are constant between consecutive points of {i/n} U {j/m}.
    breaks = np.union1d(np.arange(len(a) + 1) / len(a), np.arange(len(b) + 1) / len(b))
    widths = np.diff(breaks)
    middles = (breaks[:-1] + breaks[1:]) / 2
    quantile_a = a[np.minimum((middles * len(a)).astype(np.int64), len(a) - 1)]
    quantile_b = b[np.minimum((middles * len(b)).astype(np.int64), len(b) - 1)]
    return float(np.sum(widths * np.abs(quantile_a - quantile_b)))


def carla_speed_metrics(
    sample_trajectories: Iterable[np.ndarray],
    dataset_trajectories: Iterable[np.ndarray],
    *,
    frame_gap: int = FRAME_GAP,
    fps: float = FPS,
    outlier_speed: float = OUTLIER_SPEED,
) -> dict[str, Any]:
    """WD (m/s; None when every sample speed is an outlier) and OP (%) of sampled against dataset trajectories."""
    sample_speeds = _pooled_speeds(sample_trajectories, frame_gap, fps, "sampled")
    dataset_speeds = _pooled_speeds(dataset_trajectories, frame_gap, fps, "dataset")
    outliers = sample_speeds > outlier_speed
    remaining = sample_speeds[~outliers]
    return {
        "WD": wasserstein_1d(remaining, dataset_speeds) if len(remaining) else None,
        "OP": float(100.0 * outliers.mean()),
        "protocol": {
            "frame_gap": frame_gap,
            "fps": fps,
            "outlier_speed_m_s": outlier_speed,
            "speed_windows": "every start frame (overlapping)",
            "WD": "Wasserstein-1 between non-outlier sample speeds and all dataset speeds, m/s",
            "OP": "percentage of sample speeds above the outlier speed",
            "num_speeds": int(len(sample_speeds)),
            "num_dataset_speeds": int(len(dataset_speeds)),
        },
    }


def _pooled_speeds(trajectories: Iterable[np.ndarray], frame_gap: int, fps: float, what: str) -> np.ndarray:
    speeds = [speeds_from_positions(t, frame_gap, fps) for t in trajectories]
    if not speeds:
        raise DatasetError(f"No {what} trajectories were given; compute coordinates with `flexvid carla-coords` first.")
    return np.concatenate(speeds)


def read_provenance(folder: str | Path) -> dict[str, Any] | str:
    """The weight files that predicted a folder's coords, or a note that the coords are not predictions."""
    path = Path(folder) / PROVENANCE_FILE
    return json.loads(path.read_text()) if path.is_file() else "coordinates from files (not predicted by flexvid)"


def read_coords_dir(folder: str | Path) -> dict[str, np.ndarray]:
    """All coords_*.npy files of a folder, by file stem, in name order."""
    folder = Path(folder)
    files = sorted(folder.glob("coords_*.npy"))
    if not files:
        raise DatasetError(f"No coords_*.npy files in {folder}; run `flexvid carla-coords` on that directory first.")
    return {path.stem: np.load(path) for path in files}


def default_dataset_coords_dir(data_dir: str | Path) -> Path:
    """The regressor's coords of the dataset if computed (`predicted_coords/`), else the coords shipped with it."""
    data_dir = Path(data_dir)
    predicted = data_dir / PREDICTED_DATASET_COORDS_SUBDIR
    return predicted if any(predicted.glob("coords_*.npy")) else data_dir


def evaluate_eval_dir(
    eval_dir: str | Path,
    dataset_coords_dir: str | Path | None = None,
    *,
    frame_gap: int = FRAME_GAP,
    fps: float = FPS,
    outlier_speed: float = OUTLIER_SPEED,
) -> dict[str, Any]:
    """WD/OP of EVAL_DIR/coords against a dataset's coords; written to EVAL_DIR/carla_metrics.json."""
    eval_dir = Path(eval_dir)
    if dataset_coords_dir is None:
        settings_path = eval_settings_path(eval_dir)
        data_dir = json.loads(settings_path.read_text()).get("data_dir") if settings_path.is_file() else None
        if not data_dir:
            raise DatasetError(
                f"{eval_dir} has no settings.json naming the dataset's data_dir; pass the dataset's coords folder "
                "(--dataset_coords DIR)."
            )
        dataset_coords_dir = default_dataset_coords_dir(data_dir)
    samples = read_coords_dir(eval_dir / COORDS_SUBDIR)
    dataset = read_coords_dir(dataset_coords_dir)
    result = carla_speed_metrics(
        samples.values(), dataset.values(), frame_gap=frame_gap, fps=fps, outlier_speed=outlier_speed
    )
    result["protocol"].update(
        {
            "num_videos": len(samples),
            "num_dataset_videos": len(dataset),
            "dataset_coords": str(dataset_coords_dir),
            "sample_position_model": read_provenance(eval_dir / COORDS_SUBDIR),
            "dataset_position_model": read_provenance(dataset_coords_dir),
            "observed_frames_included": True,
        }
    )
    atomic_write_json(eval_dir / METRICS_FILE, result)
    return result
