"""Per-frame PSNR, SSIM and LPIPS of sampled videos against the ground truth, best of k samples per frame.

PSNR and SSIM are computed per frame on [0, 1] data (all channels). SSIM uses the standard 11x11
Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, over the 'valid' region, averaged over channels
and positions. PSNR is capped at 100 dB (identical frames). As in the paper, each frame of each test
video gets the best score over its k samples; these are averaged over videos, giving one curve over
frame indices, which is then averaged over the latent (generated) frames and over all frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from flexvid.errors import DatasetError
from flexvid.eval.lpips import LPIPS

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
PSNR_MAX_DB = 100.0


@dataclass(frozen=True)
class MetricSpec:
    """A per-frame score and which direction is better (for best-of-k)."""

    name: str
    higher_is_better: bool


PSNR = MetricSpec("psnr", True)
SSIM = MetricSpec("ssim", True)
LPIPS_METRIC = MetricSpec("lpips", False)


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """PSNR in dB of (N, C, H, W) frames in [0, 1], per frame; capped at 100 dB."""
    mse = (x.double() - y.double()).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(1.0 / mse.clamp(min=10 ** (-PSNR_MAX_DB / 10)))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """Normalised 1-D Gaussian of `size` taps, float64."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    window = torch.exp(-(coords**2) / (2 * sigma**2))
    return window / window.sum()


def _blur(x: Tensor, window: Tensor) -> Tensor:
    """Separable 'valid' Gaussian filtering of (N, C, H, W), channel by channel."""
    channels = x.shape[1]
    size = window.numel()
    x = F.conv2d(x, window.view(1, 1, size, 1).expand(channels, 1, size, 1), groups=channels)
    return F.conv2d(x, window.view(1, 1, 1, size).expand(channels, 1, 1, size), groups=channels)


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """SSIM of (N, C, H, W) frames in [0, 1], per frame (mean over channels and valid positions)."""
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise DatasetError(
            f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {tuple(x.shape[-2:])}."
        )
    x, y = x.double(), y.double()
    window = gaussian_window().to(x.device)
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    mu_x, mu_y = _blur(x, window), _blur(y, window)
    var_x = _blur(x * x, window) - mu_x**2
    var_y = _blur(y * y, window) - mu_y**2
    cov_xy = _blur(x * y, window) - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    structure = (2 * cov_xy + c2) / (var_x + var_y + c2)
    return (luminance * structure).mean(dim=(1, 2, 3))


def to_unit(video: np.ndarray) -> Tensor:
    """uint8 (T, C, H, W) -> float32 in [0, 1]."""
    return torch.from_numpy(video).float() / 255.0


def video_scores(
    sample: np.ndarray,
    truth: np.ndarray,
    lpips: LPIPS | None = None,
    lpips_batch: int = 64,
) -> dict[str, Tensor]:
    """Per-frame scores (T,) of one uint8 (T, C, H, W) sample against its ground truth."""
    x, y = to_unit(sample), to_unit(truth)
    scores = {PSNR.name: psnr(x, y), SSIM.name: ssim(x, y)}
    if lpips is not None:
        device = lpips.shift.device
        parts = [
            lpips(x[i : i + lpips_batch].to(device) * 2 - 1, y[i : i + lpips_batch].to(device) * 2 - 1).double().cpu()
            for i in range(0, len(x), lpips_batch)
        ]
        scores[LPIPS_METRIC.name] = torch.cat(parts)
    return scores


def best_of_k(scores: Tensor, higher_is_better: bool) -> Tensor:
    """(k, T) scores of k samples -> (T,) best per frame."""
    return scores.max(dim=0).values if higher_is_better else scores.min(dim=0).values


def summarise(per_frame: np.ndarray, frame_indices: list[int]) -> dict[str, object]:
    """Mean over videos per frame, and the mean of that curve, restricted to `frame_indices`."""
    curve = per_frame[:, frame_indices].mean(axis=0)
    return {"per_frame": [float(v) for v in curve], "mean": float(curve.mean()) if len(curve) else math.nan}


def evaluate_videos(
    pairs: Iterable[tuple[int, np.ndarray, list[np.ndarray]]],
    n_obs: int,
    lpips: LPIPS | None = None,
    *,
    progress: bool = False,
    total: int | None = None,
) -> dict[str, dict[str, dict[str, object]]]:
    """Best-of-k per-frame scores over (index, truth, samples) pairs, summarised for latent and all frames.

    With `progress`, a bar counts the test videos (out of `total` when given).
    """
    metrics = [PSNR, SSIM] + ([LPIPS_METRIC] if lpips is not None else [])
    best: dict[str, list[np.ndarray]] = {m.name: [] for m in metrics}
    length = None
    for _, truth, samples in tqdm(pairs, total=total, desc="frame metrics", unit="video", disable=not progress):
        length = truth.shape[0]
        per_sample = [video_scores(sample, truth, lpips) for sample in samples]
        for metric in metrics:
            stacked = torch.stack([scores[metric.name] for scores in per_sample])
            best[metric.name].append(best_of_k(stacked, metric.higher_is_better).numpy())
    if length is None:
        raise DatasetError("No videos to score; check the evaluation directory and --num_videos.")
    if not 0 <= n_obs < length:
        raise DatasetError(f"n_obs = {n_obs} leaves no generated frames in {length}-frame videos; check settings.json.")
    groups = {"latent_frames": list(range(n_obs, length)), "all_frames": list(range(length))}
    return {
        group: {m.name: summarise(np.stack(best[m.name]), indices) for m in metrics}
        for group, indices in groups.items()
    }


__all__ = [
    "LPIPS_METRIC",
    "MetricSpec",
    "PSNR",
    "PSNR_MAX_DB",
    "SSIM",
    "best_of_k",
    "evaluate_videos",
    "gaussian_window",
    "psnr",
    "ssim",
    "summarise",
    "video_scores",
]
