"""`flexvid video`: outlines in the observed/generated colours, a frame counter, and the ground truth
beside each sample."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from flexvid.errors import ConfigError, DatasetError
from flexvid.sampling.counter import TEXT_COLOUR, number_mask
from flexvid.sampling.viewing import export_videos, sample_frames
from flexvid.video_io import GENERATED_COLOUR, OBSERVED_COLOUR, TRUTH_COLOUR

from helpers import make_eval_dir, run_cli

T, N_OBS, SIZE, BORDER = 12, 3, 16, 2


def video(seed: int, channels: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (T, channels, SIZE, SIZE), dtype=np.uint8)


def trimmed(mask: np.ndarray) -> np.ndarray:
    """The smallest box around the True pixels of a bool image."""
    rows, cols = np.nonzero(mask)
    return mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def test_ground_truth_stands_left_of_the_sample_with_a_counter_below():
    sample, truth = video(0), video(1)
    frames = sample_frames(sample, N_OBS, truth)
    panel = SIZE + 2 * BORDER
    assert frames.shape[0] == T and frames.shape[2] == 2 * panel + 2
    left, right = frames[:, :panel, :panel], frames[:, :panel, panel + 2 :]
    inner = (slice(None), slice(BORDER, BORDER + SIZE), slice(BORDER, BORDER + SIZE), 0)
    np.testing.assert_array_equal(left[inner], truth[:, 0])
    np.testing.assert_array_equal(right[inner], sample[:, 0])
    assert (left[:, 0, 0] == TRUTH_COLOUR).all()
    assert (right[:N_OBS, 0, 0] == OBSERVED_COLOUR).all() and (right[N_OBS:, 0, 0] == GENERATED_COLOUR).all()
    # The counter: below the panels, frame t's strip shows the digits of t.
    strips = frames[:, panel:]
    for t in (0, 7, 11):
        np.testing.assert_array_equal(trimmed((strips[t] == TEXT_COLOUR).all(axis=-1)), trimmed(number_mask(t)))
    assert len({strips[t].tobytes() for t in range(T)}) == T


def test_without_ground_truth_only_the_sample_is_shown():
    frames = sample_frames(video(0, channels=3), N_OBS)
    assert frames.shape[2] == SIZE + 2 * BORDER
    np.testing.assert_array_equal(
        frames[:, BORDER : BORDER + SIZE, BORDER : BORDER + SIZE], np.moveaxis(video(0, 3), 1, -1)
    )


def test_export_with_truth_writes_side_by_side_videos(tmp_path):
    truths = [video(10), video(11)]
    eval_dir = make_eval_dir(tmp_path, truths, [[video(0)], [video(1)]], N_OBS)
    assert run_cli("video", str(eval_dir), "--truth", "--gt_dir", str(tmp_path / "gt"), "--scale", "1") == 0
    gif = np.asarray(imageio.mimread(eval_dir / "videos" / "sample_0001-0.gif"))
    assert gif.shape[:3] == (T, SIZE + 2 * BORDER + 8, 2 * (SIZE + 2 * BORDER) + 2)
    assert (eval_dir / "videos" / "grid.mp4").stat().st_size > 0


def test_truth_of_another_shape_or_without_truth_is_refused(tmp_path):
    eval_dir = make_eval_dir(tmp_path, [video(10)[:-1]], [[video(0)]], N_OBS)
    with pytest.raises(DatasetError, match=r"sample_0000-0.npy has shape \(12, 1, 16, 16\).*\(11, 1, 16, 16\)"):
        export_videos(eval_dir, truth=True, gt_dir=tmp_path / "gt")
    with pytest.raises(ConfigError, match="add --truth"):
        export_videos(eval_dir, gt_dir=tmp_path / "gt")


def test_unconditional_samples_have_no_truth(tmp_path):
    eval_dir = make_eval_dir(tmp_path, [video(10)], [[video(0)]], n_obs=0)
    with pytest.raises(ConfigError, match="unconditional"):
        export_videos(eval_dir, truth=True, gt_dir=tmp_path / "gt")


def test_training_sample_grid_uses_the_same_outline_colours() -> None:
    """Logged training samples outline truth, observed and generated frames as `flexvid video` does."""
    from flexvid.training.video_log import sample_grid

    truth = torch.zeros(2, 4, 1, 8, 8)
    obs_mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]).view(2, 4, 1, 1, 1)
    grid = sample_grid(truth, truth.clone(), obs_mask)  # (K, 2 rows, 2 columns)
    cell = 8 + 4
    for b, n_obs in enumerate([2, 1]):
        left = b * cell
        assert (grid[:, 0, left] == TRUTH_COLOUR).all()
        assert (grid[:n_obs, cell, left] == OBSERVED_COLOUR).all()
        assert (grid[n_obs:, cell, left] == GENERATED_COLOUR).all()
