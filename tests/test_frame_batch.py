"""FrameBatch: its constructors' layout (observed, latent, padding), stacking and slicing, the one shape check."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from flexvid.data.tasks import build_example
from flexvid.errors import FlexvidError
from flexvid.frame_batch import FrameBatch

from helpers import TINY_NETWORK, randomised


def numbered_videos(B: int = 2, T: int = 10) -> torch.Tensor:
    """(B, T, 1, 2, 2) videos whose pixel value is 100 * video + frame, so gathered frames name themselves."""
    values = 100 * torch.arange(B).view(B, 1) + torch.arange(T).view(1, T)
    return values.float().view(B, T, 1, 1, 1).expand(B, T, 1, 2, 2)


def test_from_indices_puts_observed_frames_first_then_latent():
    batch = FrameBatch.from_indices(numbered_videos(), [7, 2], [3, 9, 0])
    assert batch.x0.shape == (2, 5, 1, 2, 2)
    assert batch.frame_indices.dtype == torch.int64
    assert batch.frame_indices.tolist() == [[7, 2, 3, 9, 0]] * 2
    assert batch.x0[:, :, 0, 0, 0].tolist() == [[7, 2, 3, 9, 0], [107, 102, 103, 109, 100]]
    assert batch.obs_mask.view(2, 5).tolist() == [[1, 1, 0, 0, 0]] * 2
    assert batch.latent_mask.view(2, 5).tolist() == [[0, 0, 1, 1, 1]] * 2
    assert batch.obs_mask.dtype == batch.latent_mask.dtype == batch.x0.dtype


def test_training_examples_keep_index_order_and_mark_padding():
    video = numbered_videos(1)[0]
    example = build_example(video, (np.array([6]), np.array([1, 4])), 5, np.random.default_rng(0))
    assert example.frame_indices[0, :3].tolist() == [1, 4, 6]
    assert example.obs_mask.view(-1).tolist() == [0, 0, 1, 0, 0]
    assert example.latent_mask.view(-1).tolist() == [1, 1, 0, 0, 0]  # the last two slots are padding


def test_cat_slice_and_move_keep_every_field():
    videos = numbered_videos(3)
    rows = [FrameBatch.from_indices(videos[b : b + 1], [b], [5, 6]) for b in range(3)]
    batch = FrameBatch.cat(rows)
    assert batch.frame_indices[:, 0].tolist() == [0, 1, 2]
    middle = batch[1:2]
    for field in dataclasses.fields(FrameBatch):
        assert torch.equal(getattr(middle, field.name), getattr(rows[1], field.name)), field.name
    moved = batch.to("cpu")
    assert torch.equal(moved.x0, batch.x0)


def test_network_inputs_call_the_network_like_its_keywords():
    model = randomised(dataclasses.replace(TINY_NETWORK, in_channels=1))
    batch = FrameBatch.from_indices(torch.rand(2, 8, 1, 16, 16) * 2 - 1, [0], [3, 5, 7])
    x, t = torch.randn(batch.x0.shape), torch.tensor([10, 600])
    with torch.no_grad():
        direct = model(x, t, batch.frame_indices, batch.obs_mask, batch.latent_mask, batch.x0)
        assert torch.equal(model(x, t, **batch.network_inputs()), direct)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("x0", torch.zeros(2, 4, 1, 2), r"x0 must be a float tensor of shape \(B, K, C, H, W\)"),
        ("x0", torch.zeros(2, 4, 1, 2, 2, dtype=torch.uint8), "x0 must be a float tensor"),
        ("frame_indices", torch.zeros(2, 4, dtype=torch.int32), r"frame_indices must be an int64 .* \(2, 4\)"),
        ("obs_mask", torch.zeros(2, 4), r"obs_mask must be a float 0/1 tensor of shape \(2, 4, 1, 1, 1\)"),
        ("latent_mask", None, "latent_mask must be .* got nothing"),
    ],
)
def test_the_shape_check_is_an_internal_error_not_a_user_error(field, value, message):
    good = FrameBatch.from_indices(numbered_videos(2, 4), [0], [1, 2, 3])
    with pytest.raises(ValueError, match=message) as error:
        dataclasses.replace(good, **{field: value})
    assert not isinstance(error.value, FlexvidError)
