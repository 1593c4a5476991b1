"""The panorama long-range dataset: determinism, exact revisits, view labels, revisit masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flexvid.data.base import build_dataset
from flexvid.data.panorama import revisit_mask, view_positions
from flexvid.errors import DatasetError


def test_videos_are_deterministic_and_splits_differ() -> None:
    a = build_dataset("panorama", "test", T=30)
    b = build_dataset("panorama", "test", T=30)
    train = build_dataset("panorama", "train", T=30)
    assert torch.equal(a[3][0], b[3][0])
    assert not torch.equal(a[3][0], a[4][0])
    assert not torch.equal(a[3][0], train[3][0])
    video = a[0][0]
    assert video.shape == (30, 3, 32, 32) and video.dtype == torch.float32
    assert video.min() >= -1 and video.max() <= 1


def test_train_epochs_give_new_videos() -> None:
    train = build_dataset("panorama", "train", T=10)
    first = train[0][0]
    train.set_epoch(1)
    assert not torch.equal(first, train[0][0])


def test_views_repeat_exactly_after_one_period_and_match_their_labels() -> None:
    dataset = build_dataset("panorama", "test", T=60)
    assert dataset.period == 32
    for index in range(3):
        video, info = dataset[index]
        view_x = info["view_x"].numpy()
        assert torch.equal(video[:28], video[32:60])
        # Frames with the same view position show the same pixels, wherever they are in the video.
        for t in range(60):
            same = np.flatnonzero(view_x == view_x[t])
            for s in same:
                assert torch.equal(video[t], video[s])
        # Neighbouring views overlap: the shifted columns agree.
        for t in range(59):
            shift = int(view_x[t + 1] - view_x[t])
            if shift > 0:
                assert torch.equal(video[t, ..., shift:], video[t + 1, ..., : 32 - shift])


def test_clip_matches_the_whole_video() -> None:
    dataset = build_dataset("panorama", "test", T=40)
    video, info = dataset[2]
    frames, clip_info = dataset.clip(2, [7, 3, 39])
    assert torch.equal(frames, video[[7, 3, 39]])
    assert clip_info["view_x"].tolist() == info["view_x"][[7, 3, 39]].tolist()


def test_view_positions_reflect_at_both_edges() -> None:
    positions = view_positions(start=80, speed=8, free_range=96, length=30)
    assert positions[:5].tolist() == [80, 88, 96, 88, 80]
    assert positions.min() >= 0 and positions.max() <= 96
    assert positions[14] == 0 and positions[15] == 8  # bounced off the left edge, too


def test_revisit_mask_on_a_hand_made_path() -> None:
    # A 4-pixel view over a 12-pixel scene: out to the right, a long stay away, then back to the start.
    view_x = np.array([0, 4, 8, 8, 8, 8, 8, 8, 4, 0])
    revisit = revisit_mask(view_x, view_width=4, max_frames=3)
    # Frame 8 (x=4) last saw its columns at frame 1 (7 frames before, more than K=3): a revisit;
    # frame 9 (x=0) last saw them at frame 0. Frames 3..7 repeat the previous view: not revisits.
    assert revisit.tolist() == [False] * 8 + [True, True]
    # With K large enough to remember, nothing counts as a revisit.
    assert not revisit_mask(view_x, view_width=4, max_frames=10).any()


def test_revisit_mask_on_a_slow_pan_counts_columns_that_came_back() -> None:
    # An 8-pixel view panning 2 pixels per frame over a 16-pixel scene, reflecting at x = 8 (frame 4).
    view_x = view_positions(start=0, speed=2, free_range=8, length=11)
    assert view_x.tolist() == [0, 2, 4, 6, 8, 6, 4, 2, 0, 2, 4]
    revisit = revisit_mask(view_x, view_width=8, max_frames=3)
    # Frame 5 brings back columns 6-7, out of view for 2 frames only. Frame 6 brings back 4-5 (last
    # seen at frame 2: 4 > K frames): a quarter of the view. Frames 7 and 8 add 2-3 and 0-1 and keep
    # 4-5. Frame 9 brings back 8-9 after 2 frames but still shows 2-5; frame 10 brings back 10-11
    # (out of view since frame 6) beside 4-5.
    assert revisit.tolist() == [False] * 6 + [True] * 5
    # Each frame alone has at most 2 of 8 columns stale: the share of columns that came back and
    # stayed is what makes frames 7-10 revisits.
    assert not revisit_mask(view_x, view_width=8, max_frames=8).any()


def test_default_panorama_marks_revisits_only_after_the_view_turns_back() -> None:
    dataset = build_dataset("panorama", "test", T=64)
    for index in range(4):
        view_x = dataset[index][1]["view_x"].numpy()
        revisit = revisit_mask(view_x, view_width=32, max_frames=8)
        assert revisit.any()
        turns = np.flatnonzero(np.diff(np.sign(np.diff(view_x))) != 0) + 1  # frames where the pan reverses
        first = int(np.flatnonzero(revisit)[0])
        # The view must turn back first, and the content it returns to must have left more than K frames ago.
        assert turns.size and first > turns[0] + 4


def test_bad_options_are_one_sentence_errors() -> None:
    with pytest.raises(DatasetError, match="split"):
        build_dataset("panorama", "valid", T=10)
    with pytest.raises(DatasetError, match="speed"):
        build_dataset("panorama", "test", T=10, speed=0)
    with pytest.raises(IndexError):
        build_dataset("panorama", "test", T=10, num_videos=2)[2]
