"""Consistency metrics on known inputs, the bootstrap interval, and the scheme comparison end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from flexvid.checkpoint import save_weights
from flexvid.config import DiffusionConfig, to_dict
from flexvid.data.base import build_dataset
from flexvid.diffusion import build_diffusion
from flexvid.eval.compare import CompareSettings, markdown_table, run_comparison
from flexvid.eval.consistency import DataRange, mean_interval, score_video, summarise_consistency
from flexvid.frame_batch import FrameBatch
from flexvid.training.diagnostics import conditioning_gain, sample_statistics
from flexvid.video_io import to_uint8

from helpers import TINY_NETWORK, randomised


def test_mean_interval_brackets_the_mean_and_shrinks_with_more_videos() -> None:
    rng = np.random.default_rng(0)
    small = mean_interval(rng.normal(10, 1, size=20))
    large = mean_interval(rng.normal(10, 1, size=400))
    assert small.low < small.mean < small.high and small.n == 20
    assert (large.high - large.low) < (small.high - small.low) / 2
    assert abs(large.mean - 10) < 0.2
    constant = mean_interval(np.full(5, 3.0))
    assert constant.low == constant.mean == constant.high == 3.0
    assert mean_interval(np.array([np.nan])).n == 0


def test_best_of_k_groups_and_clean_share_on_known_videos() -> None:
    truth = np.zeros((6, 1, 16, 16), dtype=np.uint8)
    truth[:, :, 4:12, 4:12] = 200
    perfect = truth.copy()
    wrong = truth.copy()
    wrong[[3, 5]] = 255  # white frames: wrong and out of the data's brightness range
    result = score_video(truth, [wrong, perfect])
    assert np.all(result.psnr == 100.0)  # best of k picks the perfect sample everywhere
    only_wrong = score_video(truth, [wrong])
    revisit = np.array([False, False, False, True, False, True])
    summary = summarise_consistency([only_wrong, result], n_obs=2, revisits=[revisit, revisit])
    # Video 0: frames 3 and 5 (revisits) are wrong, frames 2 and 4 (rest) exact; video 1 exact.
    psnr_bad = float(10 * np.log10(1 / ((255 - truth[3] / 1.0) / 255).astype(np.float64).__pow__(2).mean()))
    assert summary["psnr_rest"]["mean"] == pytest.approx(100.0)
    assert summary["psnr_revisited"]["mean"] == pytest.approx((psnr_bad + 100.0) / 2)
    assert summary["psnr_latent"]["mean"] == pytest.approx(((2 * 100 + 2 * psnr_bad) / 4 + 100) / 2)
    # Generated frames of every sample: 4 of video 0, 8 of video 1; two white frames in each video.
    assert summary["clean_share"] == pytest.approx(1 - 4 / 12)
    assert summary["revisited_frames_per_video"] == 2
    assert math.isclose(summary["truth_brightness"], truth[2:].mean() / 255, rel_tol=1e-6)


def test_clean_frames_are_judged_against_the_data_range_when_one_is_given() -> None:
    truth = np.full((4, 1, 16, 16), 100, dtype=np.uint8)
    darker = truth.copy()
    darker[2:] = 40  # generated frames darker than this video's truth, as dark as other test videos
    result = score_video(truth, [darker])
    assert summarise_consistency([result], n_obs=2)["clean_share"] == 0.0
    dark_video = np.full((3, 1, 16, 16), 30, dtype=np.uint8)
    dark_video[1, :, :, ::2] = 60  # stripes: the largest high-frequency energy of the data
    wide = DataRange.of_videos([truth, dark_video])
    assert wide.brightness_low == pytest.approx(30 / 255) and wide.brightness_high == pytest.approx(100 / 255)
    assert wide.energy_high == pytest.approx(30 / 255 / 2, rel=1e-5)  # every column step, no row step
    assert wide.videos == 2
    assert summarise_consistency([result], n_obs=2, data_range=wide)["clean_share"] == 1.0
    white = truth.copy()
    white[2:] = 255
    assert summarise_consistency([score_video(truth, [white])], n_obs=2, data_range=wide)["clean_share"] == 0.0


def test_conditioning_gain_is_one_for_a_network_blind_to_observed_frames() -> None:
    class Blind(torch.nn.Module):
        def forward(self, x, timesteps, frame_indices, obs_mask, latent_mask, x0):
            return x * 0.5

    diffusion = build_diffusion(DiffusionConfig(diffusion_steps=1000))

    class Peeking(torch.nn.Module):
        """Returns the exact noise (computed from the clean frames) whenever some frame is observed."""

        def forward(self, x, timesteps, frame_indices, obs_mask, latent_mask, x0):
            t = timesteps.long()
            ab = torch.as_tensor(diffusion.alphas_cumprod, dtype=x.dtype)[t].view(-1, 1, 1, 1, 1)
            exact = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
            sees = obs_mask.flatten(1).amax(dim=1).view(-1, 1, 1, 1, 1)
            return sees * exact + (1 - sees) * x * 0.5

    K = 4
    batch = FrameBatch(
        x0=torch.rand(2, K, 1, 8, 8) * 2 - 1,
        frame_indices=torch.arange(K).repeat(2, 1),
        obs_mask=torch.tensor([1.0, 1, 0, 0]).view(1, K, 1, 1, 1).repeat(2, 1, 1, 1, 1),
        latent_mask=torch.tensor([0.0, 0, 1, 1]).view(1, K, 1, 1, 1).repeat(2, 1, 1, 1, 1),
    )
    blind = conditioning_gain(Blind(), diffusion, batch)
    assert all(v == pytest.approx(1.0) for v in blind.values()) and len(blind) == 3
    peeking = conditioning_gain(Peeking(), diffusion, batch)
    assert all(v > 1.5 for v in peeking.values())


def test_sample_statistics() -> None:
    truth = -torch.ones(1, 4, 1, 8, 8)
    samples = truth.clone()
    samples[0, 2:] = 1.0
    latent = torch.tensor([0.0, 0, 1, 1]).view(1, 4, 1, 1, 1)
    stats = sample_statistics(truth, samples, latent)
    assert stats["sample_brightness"] == pytest.approx(1.0)
    assert stats["truth_brightness"] == pytest.approx(0.0)
    assert stats["sample_psnr_first"] == pytest.approx(0.0, abs=1e-6)


def test_comparison_end_to_end_on_a_tiny_model(tmp_path) -> None:
    model = randomised(TINY_NETWORK.__class__(**{**to_dict(TINY_NETWORK), "in_channels": 3}))
    config = {
        "model": to_dict(model.config) if hasattr(model, "config") else {**to_dict(TINY_NETWORK), "in_channels": 3},
        "diffusion": to_dict(DiffusionConfig(diffusion_steps=100)),
        "data": {"dataset": "panorama", "T": 12, "max_frames": 4, "data_dir": None},
    }
    checkpoint = tmp_path / "ckpt"
    save_weights(checkpoint, model.state_dict(), config)
    settings = CompareSettings(
        checkpoint=str(checkpoint),
        out=str(tmp_path / "cmp"),
        schemes=("autoreg", "hierarchy-2"),
        T=12,
        n_obs=4,
        num_videos=3,
        num_samples=2,
        steps=2,
        batch_size=2,
    )
    report = run_comparison(settings)
    out = tmp_path / "cmp"
    for name in ("comparison.json", "comparison.md", "per_frame_psnr.png", "strips.png"):
        assert (out / name).stat().st_size > 0
    saved = json.loads((out / "comparison.json").read_text())
    assert set(saved["schemes"]) == {"autoreg", "hierarchy-2"}
    row = saved["schemes"]["autoreg"]
    assert row["psnr_latent"]["n"] == 3 and len(row["psnr_per_frame"]) == 12
    assert row["timing"]["network_evaluations_per_video"] > 0
    # Observed frames are copied, so their PSNR is capped at 100 dB.
    assert row["psnr_per_frame"][:4] == [100.0] * 4
    # The revisit labels come from the dataset's view positions (16-pixel frames, K = 4).
    dataset = build_dataset("panorama", "test", T=12, image_size=16)
    assert saved["revisit_per_frame"][0] is not None and len(saved["revisit_per_frame"]) == 3
    # Samples of a second run are reused, not regenerated: the table is the same.
    again = run_comparison(settings)
    assert again["schemes"]["autoreg"]["psnr_latent"] == report["schemes"]["autoreg"]["psnr_latent"]
    assert "| autoreg |" in markdown_table(again)
    # hierarchy-2 paired with autoreg: the mean of the per-video differences, in the table too.
    ours, base = (np.array(saved["schemes"][s]["psnr_latent_per_video"]) for s in ("hierarchy-2", "autoreg"))
    assert saved["paired"]["hierarchy-2"]["psnr_latent"]["mean"] == pytest.approx((ours - base).mean())
    assert "autoreg" not in saved["paired"] and "| hierarchy-2 | " in markdown_table(again).split("Paired with")[1]
    assert to_uint8(dataset[0][0]).shape == (12, 3, 16, 16)
