"""Fréchet video distance: feature statistics in float64 and a robust Fréchet distance between Gaussians.

d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).  The trace term is computed as
tr(sqrt(sqrt(S1) S2 sqrt(S1))), whose argument is symmetric PSD, so both square roots come from
symmetric eigendecompositions with tiny negative eigenvalues clipped to zero. This stays finite and
real for rank-deficient covariances (fewer videos than feature dimensions), where `scipy.linalg.sqrtm`
of the non-symmetric product can return NaNs or complex values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from flexvid.errors import DatasetError
from flexvid.eval.eval_dir import GroundTruth, count_leading_videos, paired_videos, read_settings


class RankDeficientCovarianceWarning(UserWarning):
    """Fewer feature vectors than dimensions: the covariance estimate is singular and FVD is biased."""


@dataclass(frozen=True)
class GaussianStats:
    """Mean and covariance of a set of feature vectors, in float64."""

    mean: np.ndarray  # (D,)
    cov: np.ndarray  # (D, D), unbiased (divides by N - 1) as numpy.cov in the reference
    count: int


def feature_statistics(features: np.ndarray | torch.Tensor) -> GaussianStats:
    """Mean and unbiased covariance of (N, D) features, computed in float64; warns when N < D."""
    x = np.asarray(features.cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise DatasetError(
            f"Need at least 2 feature vectors shaped (N, D) for a covariance, got shape {x.shape}; use more videos."
        )
    count, dim = x.shape
    if count < dim:
        warnings.warn(
            f"Only {count} videos for {dim}-dimensional features: the covariance is rank-deficient, so the "
            f"Fréchet distance is biased upwards and not comparable with results on >= {dim} videos.",
            RankDeficientCovarianceWarning,
            stacklevel=2,
        )
    mean = x.mean(axis=0)
    centred = x - mean
    cov = centred.T @ centred / (count - 1)
    return GaussianStats(mean, (cov + cov.T) / 2, count)


def _psd_eigenvalues_cleaned(values: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix with round-off noise (|v| below dim * eps * max) set to exactly zero.

    Without this, the square root of a rank-deficient matrix picks up sqrt(1e-16) = 1e-8 per zero eigenvalue.
    """
    tolerance = len(values) * np.finfo(np.float64).eps * max(float(np.abs(values).max(initial=0.0)), 1e-300)
    return np.where(values > tolerance, values, 0.0)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric PSD matrix via eigendecomposition."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(_psd_eigenvalues_cleaned(values))) @ vectors.T


def trace_sqrt_product(cov1: np.ndarray, cov2: np.ndarray) -> float:
    """tr((cov1 cov2)^(1/2)) for symmetric PSD matrices, as tr(sqrt(sqrt(cov1) cov2 sqrt(cov1)))."""
    root1 = _sqrt_psd(np.asarray(cov1, dtype=np.float64))
    inner = root1 @ np.asarray(cov2, dtype=np.float64) @ root1
    values = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(_psd_eigenvalues_cleaned(values)).sum())


def frechet_distance(stats1: GaussianStats, stats2: GaussianStats) -> float:
    """Fréchet distance between the Gaussians N(mean1, cov1) and N(mean2, cov2)."""
    if stats1.mean.shape != stats2.mean.shape:
        raise DatasetError(
            f"Feature dimensions differ ({stats1.mean.shape[0]} vs {stats2.mean.shape[0]}); compute both sets with the "
            "same network."
        )
    diff = stats1.mean - stats2.mean
    trace_term = trace_sqrt_product(stats1.cov, stats2.cov)
    distance = float(diff @ diff + np.trace(stats1.cov) + np.trace(stats2.cov) - 2.0 * trace_term)
    return max(distance, 0.0)


def frechet_distance_from_features(features1: np.ndarray | torch.Tensor, features2: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between the Gaussian fits of two (N, D) feature sets."""
    return frechet_distance(feature_statistics(features1), feature_statistics(features2))


def embed_videos(
    embed: Callable[[torch.Tensor], torch.Tensor],
    videos: Iterable[np.ndarray],
    batch_size: int,
    *,
    progress: bool = False,
    total: int | None = None,
) -> np.ndarray:
    """Embed uint8 (T, C, H, W) videos `batch_size` per network call; returns (N, D) float64.

    Only one batch of videos is held in memory at a time, so many long videos fit. With `progress`, a
    bar counts the videos (out of `total` when given).
    """
    if batch_size < 1:
        raise DatasetError(f"batch_size must be at least 1, got {batch_size}.")
    features: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    with tqdm(total=total, desc="I3D features", unit="video", disable=not progress) as bar:

        def flush() -> None:
            features.append(embed(torch.from_numpy(np.stack(batch))).double().numpy())
            bar.update(len(batch))
            batch.clear()

        for video in videos:
            batch.append(video)
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
    if not features:
        raise DatasetError("No videos to embed; check the evaluation directory and --num_videos.")
    return np.concatenate(features)


def paired_features(
    embed: Callable[[torch.Tensor], torch.Tensor],
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    batch_size: int,
    *,
    progress: bool = False,
    total: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed (sample, test video) pairs of same-shape uint8 (T, C, H, W) videos; returns two (N, D) float64 arrays.

    Samples and test videos share network calls of `batch_size` videos; `total` counts videos, two per pair.
    """
    features = embed_videos(
        embed, (video for pair in pairs for video in pair), batch_size, progress=progress, total=total
    )
    return features[0::2], features[1::2]


def fvd_of_eval_dir(
    eval_dir: str | Path,
    i3d: Callable[[torch.Tensor], torch.Tensor],
    *,
    num_videos: int | None = None,
    sample_idx: int = 0,
    batch_size: int = 2,
    gt_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """FVD between sample `sample_idx` of the first `num_videos` test videos and those test videos.

    The reference protocol: whole videos (observed frames included) at full length, the first N
    test videos in order. `batch_size` videos go through I3D per call; `progress` shows a bar.
    Returns the score with the protocol that produced it.
    """
    eval_dir = Path(eval_dir)
    settings = read_settings(eval_dir)
    if num_videos is None:
        num_videos = count_leading_videos(eval_dir, [sample_idx])
    if num_videos < 2:
        raise DatasetError(
            f"FVD needs at least 2 videos, got {num_videos}; generate more samples or raise --num_videos."
        )
    truth = GroundTruth(settings, gt_dir=gt_dir, data_dir=data_dir)
    shapes: list[tuple[int, ...]] = []

    def pairs() -> Iterable[tuple[np.ndarray, np.ndarray]]:
        for _, reference, (sample,) in paired_videos(eval_dir, truth, num_videos, [sample_idx]):
            shapes.append(sample.shape)
            yield sample, reference

    fake_features, real_features = paired_features(i3d, pairs(), batch_size, progress=progress, total=2 * num_videos)
    score = frechet_distance(feature_statistics(fake_features), feature_statistics(real_features))
    frames, channels, height, width = shapes[0]
    describe = getattr(i3d, "describe", None)
    return {
        "fvd": score,
        "protocol": {
            "num_videos": num_videos,
            "sample_idx": sample_idx,
            "frames_per_video": frames,
            "observed_frames_included": True,
            "n_obs": settings.n_obs,
            "video_resolution": [height, width],
            "channels": channels,
            "i3d_input": "frames resized to 224x224 (TF1 resize_bilinear), scaled to [-1, 1], whole video in one pass",
            "feature": "I3D Kinetics-400 logits averaged over time (400-D)",
            "statistics": "float64 mean and unbiased covariance (N - 1)",
            "covariance_rank_deficient": num_videos < real_features.shape[1],
            "ground_truth": truth.source,
            "ground_truth_quantisation": "float test videos rounded to uint8 like the samples",
            "i3d_weights": describe() if callable(describe) else None,
            "dataset": settings.dataset,
            "sampling_scheme": settings.sampling_scheme,
            "max_frames": settings.max_frames,
        },
    }


__all__ = [
    "GaussianStats",
    "RankDeficientCovarianceWarning",
    "embed_videos",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
    "fvd_of_eval_dir",
    "paired_features",
    "trace_sqrt_product",
]
