"""Long-range consistency against ground truth: per-frame PSNR/SSIM, revisited frames apart from the rest.

Protocol (the paper's per-frame metrics, plus the split by revisits):
- every frame of every sample is scored against its test video on [0, 1] data (flexvid.eval.frame_metrics);
- each frame takes the best score of the video's k samples (best-of-k);
- a video's score for a group of frames is the mean over those frames; groups are `latent` (every
  generated frame), `revisited` (generated frames that show content unseen for more than K frames,
  from the dataset's per-frame view positions) and `rest` (the other generated frames);
- the table reports the mean over test videos with a 95% bootstrap interval (percentile method,
  2,000 resamples of the videos, fixed seed).
It also reports the mean brightness of generated frames against the true frames', and the share of
*clean* generated frames: brightness and high-frequency energy both inside the range of the data's
true frames (`DataRange`: of the scored videos, or of a larger sample of the test split).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from flexvid.eval.frame_metrics import PSNR, SSIM, best_of_k, to_unit, video_scores

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CLEAN_MARGIN = 0.02  # brightness margin (on [0, 1]) around the true frames' range
CLEAN_ENERGY_FACTOR = 1.25  # a clean frame's high-frequency energy is at most this times the data's largest
GROUPS = ("latent", "revisited", "rest")


@dataclass(frozen=True)
class Interval:
    """A mean over videos with its 95% bootstrap interval; `n` videos contributed."""

    mean: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


def mean_interval(values: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Interval:
    """Mean of per-video values (NaNs dropped) with a 95% percentile-bootstrap interval."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(float(values.mean()), float(low), float(high), len(values))


def high_frequency_energy(frames: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels per frame of (N, C, H, W) data on [0, 1]."""
    dx = (frames[..., 1:] - frames[..., :-1]).abs().mean(dim=(1, 2, 3))
    dy = (frames[..., 1:, :] - frames[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    return (dx + dy) / 2


def frame_statistics(video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame mean brightness and high-frequency energy (T,) of a uint8 (T, C, H, W) video, on [0, 1]."""
    unit = to_unit(video)
    return unit.mean(dim=(1, 2, 3)).numpy(), high_frequency_energy(unit).numpy()


@dataclass(frozen=True)
class DataRange:
    """What true frames span: the range of their mean brightness and their largest high-frequency energy
    (on [0, 1]), over `videos` videos. A generated frame is clean when it stays inside (with margins)."""

    brightness_low: float
    brightness_high: float
    energy_high: float
    videos: int

    @classmethod
    def of_videos(cls, videos: Iterable[np.ndarray]) -> DataRange:
        """The range of uint8 (T, C, H, W) true videos."""
        statistics = [frame_statistics(video) for video in videos]
        if not statistics:
            raise ValueError("DataRange.of_videos needs at least one video")
        return cls.of_statistics([b for b, _ in statistics], [e for _, e in statistics])

    @classmethod
    def of_statistics(cls, brightness: list[np.ndarray], energy: list[np.ndarray]) -> DataRange:
        """The range of per-frame brightness and energy arrays, one pair per video."""
        b, e = np.concatenate(brightness), np.concatenate(energy)
        return cls(float(b.min()), float(b.max()), float(e.max()), len(brightness))

    def clean(self, brightness: np.ndarray, energy: np.ndarray) -> np.ndarray:
        """Which frames (given their brightness and energy) stay inside the range."""
        return (
            (brightness >= self.brightness_low - CLEAN_MARGIN)
            & (brightness <= self.brightness_high + CLEAN_MARGIN)
            & (energy <= self.energy_high * CLEAN_ENERGY_FACTOR)
        )

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass
class VideoResult:
    """Best-of-k per-frame scores (T,) of one test video, and its generated frames' statistics."""

    psnr: np.ndarray
    ssim: np.ndarray
    brightness: np.ndarray  # (k, T) mean of each sample frame on [0, 1]
    energy: np.ndarray  # (k, T) high-frequency energy of each sample frame
    truth_brightness: np.ndarray  # (T,)
    truth_energy: np.ndarray  # (T,)


def score_video(truth: np.ndarray, samples: list[np.ndarray]) -> VideoResult:
    """Score k uint8 (T, C, H, W) samples of one test video against it."""
    per_sample = [video_scores(sample, truth) for sample in samples]
    stacked = {m.name: torch.stack([s[m.name] for s in per_sample]) for m in (PSNR, SSIM)}
    sample_stats = [frame_statistics(sample) for sample in samples]
    truth_brightness, truth_energy = frame_statistics(truth)
    return VideoResult(
        psnr=best_of_k(stacked[PSNR.name], True).numpy(),
        ssim=best_of_k(stacked[SSIM.name], True).numpy(),
        brightness=np.stack([b for b, _ in sample_stats]),
        energy=np.stack([e for _, e in sample_stats]),
        truth_brightness=truth_brightness,
        truth_energy=truth_energy,
    )


def frame_groups(length: int, n_obs: int, revisit: np.ndarray | None) -> dict[str, np.ndarray]:
    """Boolean (T,) masks of the latent frames, and of the revisited and other latent frames."""
    latent = np.arange(length) >= n_obs
    groups = {"latent": latent}
    if revisit is not None:
        groups["revisited"] = latent & revisit
        groups["rest"] = latent & ~revisit
    return groups


def summarise_consistency(
    results: list[VideoResult],
    n_obs: int,
    revisits: list[np.ndarray] | None = None,
    data_range: DataRange | None = None,
) -> dict[str, object]:
    """The scheme's table row: per-group PSNR/SSIM intervals, per-frame curves, brightness, clean share.

    Clean frames stay inside `data_range`; without one, inside the range of the scored videos' true frames.
    """
    if not results:
        raise ValueError("summarise_consistency needs at least one scored video")
    length = len(results[0].psnr)
    summary: dict[str, object] = {"num_videos": len(results), "n_obs": n_obs, "T": length}
    for metric in ("psnr", "ssim"):
        curves = np.stack([getattr(r, metric) for r in results])
        summary[f"{metric}_per_frame"] = [float(v) for v in curves.mean(axis=0)]
        for group in GROUPS:
            per_video = []
            for i, curve in enumerate(curves):
                masks = frame_groups(length, n_obs, None if revisits is None else revisits[i])
                if group in masks:
                    chosen = curve[masks[group]]
                    per_video.append(chosen.mean() if len(chosen) else np.nan)
            if per_video:
                summary[f"{metric}_{group}"] = mean_interval(np.array(per_video)).to_dict()
                summary[f"{metric}_{group}_per_video"] = [float(v) for v in per_video]  # NaN: no such frames
    if revisits is not None:
        summary["revisited_frames_per_video"] = float(np.mean([(r[n_obs:]).sum() for r in revisits]))
    if data_range is None:
        data_range = DataRange.of_statistics([r.truth_brightness for r in results], [r.truth_energy for r in results])
    gen_b = np.concatenate([r.brightness[:, n_obs:].ravel() for r in results])
    gen_e = np.concatenate([r.energy[:, n_obs:].ravel() for r in results])
    clean = data_range.clean(gen_b, gen_e)
    summary["brightness"] = float(gen_b.mean())
    summary["truth_brightness"] = float(np.concatenate([r.truth_brightness[n_obs:] for r in results]).mean())
    summary["clean_share"] = float(clean.mean())
    return summary


__all__ = [
    "GROUPS",
    "DataRange",
    "Interval",
    "VideoResult",
    "frame_groups",
    "high_frequency_energy",
    "mean_interval",
    "score_video",
    "summarise_consistency",
]
