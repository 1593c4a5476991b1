"""The FDM network: exact agreement with the authors' reference outputs, its invariances, bf16, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from flexvid.checkpoint import config_from_reference
from flexvid.config import ModelConfig
from flexvid.errors import ConfigError, FlexvidError
from flexvid.nn import FrameIndexError, ModelInputError, UNetVideo
from flexvid.nn.attention import SpatialAttention, masked_softmax
from flexvid.nn.layers import NORM_GROUPS, group_norm_rows

from helpers import TINY_NETWORK, randomised


def video_inputs(config: ModelConfig, batch: int = 2, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random inputs; video 0 has frame 0 observed, video 1 also has a padding frame at the end."""
    gen = torch.Generator().manual_seed(seed)
    k, size, c = config.max_frames, config.image_size, config.in_channels
    obs = torch.zeros(batch, k, 1, 1, 1)
    latent = torch.ones(batch, k, 1, 1, 1)
    obs[:, 0], latent[:, 0] = 1, 0
    latent[-1, -1] = 0  # padding: neither observed nor latent
    return {
        "x": torch.randn(batch, k, c, size, size, generator=gen),
        "timesteps": torch.tensor([5, 700][:batch]),
        "frame_indices": torch.stack([torch.arange(k) * (i + 1) for i in range(batch)]),
        "obs_mask": obs,
        "latent_mask": latent,
        "x0": torch.randn(batch, k, c, size, size, generator=gen),
    }


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm())


def test_reference_network_output_is_reproduced(reference_dir):
    payload = torch.load(reference_dir / "reference_small.pt", map_location="cpu", weights_only=True)
    config = config_from_reference(payload["config"]).network
    model = UNetVideo(config)
    model.load_state_dict(payload["state_dict"])  # the authors' parameter names load unchanged
    io = {k: torch.from_numpy(v) for k, v in np.load(reference_dir / "reference_small_io.npz").items()}
    with torch.no_grad():
        out = model.eval()(io["x_t"], io["t"], io["frame_indices"], io["obs_mask"], io["latent_mask"], io["x_start"])
    expected = io["model_output"]
    assert out.shape == expected.shape
    assert relative_error(out, expected) < 1e-5
    assert float((out - expected).abs().max()) < 1e-5 * float(expected.abs().max()) * 10


def test_layouts_and_attention_paths_agree():
    model = randomised(TINY_NETWORK)
    inputs = video_inputs(TINY_NETWORK)
    with torch.no_grad():
        fused = model(**inputs)
        model.channels_last = False
        for module in model.modules():
            if isinstance(module, SpatialAttention):
                module.use_sdpa = False
        plain = model(**inputs)
    assert relative_error(fused, plain) < 1e-5


def plain_group_norm_rows(rows, weight, bias, eps, scale, shift, silu):
    """The same operation through PyTorch's NCHW GroupNorm and autograd: the exact path to compare with."""
    images = rows.transpose(1, 2)[..., None]  # (N, C, R, 1)
    out = torch.nn.functional.group_norm(images, NORM_GROUPS, weight, bias, eps)[..., 0].transpose(1, 2)
    if scale is not None:
        out = out * (1 + scale[:, None]) + shift[:, None]
    return torch.nn.functional.silu(out) if silu else out


@pytest.mark.parametrize("modulated", [False, True])
@pytest.mark.parametrize("silu", [False, True])
def test_group_norm_rows_forward_and_backward_match_pytorch(modulated, silu):
    n, r, c = 2, 5, 2 * NORM_GROUPS

    def inputs(dtype):
        gen = torch.Generator().manual_seed(0)
        rows = (torch.randn(n, r, c, generator=gen) * 3 + 1).to(dtype)
        tensors = [rows, torch.randn(c, generator=gen).to(dtype), torch.randn(c, generator=gen).to(dtype)]
        if modulated:
            tensors += [torch.randn(n, c, generator=gen).to(dtype), torch.randn(n, c, generator=gen).to(dtype)]
        else:
            tensors += [None, None]
        return [t.requires_grad_() if t is not None else None for t in tensors]

    # The hand-written backward against finite differences, in float64.
    rows, weight, bias, scale, shift = inputs(torch.float64)
    leaves = [t for t in (rows, weight, bias, scale, shift) if t is not None]

    def fused(*args):
        it = iter(args)
        tensors = [next(it), next(it), next(it)] + ([next(it), next(it)] if modulated else [None, None])
        return group_norm_rows(tensors[0], tensors[1], tensors[2], 1e-5, tensors[3], tensors[4], silu)

    assert torch.autograd.gradcheck(fused, leaves)
    # Forward and every gradient against PyTorch's own GroupNorm, in float32.
    fused_in, plain_in = inputs(torch.float32), inputs(torch.float32)
    grad_out = torch.randn(n, r, c, generator=torch.Generator().manual_seed(1))
    outs = []
    for fn, args in ((group_norm_rows, fused_in), (plain_group_norm_rows, plain_in)):
        out = fn(args[0], args[1], args[2], 1e-5, args[3], args[4], silu=silu)
        out.backward(grad_out)
        outs.append(out)
    assert relative_error(outs[0], outs[1]) < 1e-6
    for a, b in zip(fused_in, plain_in, strict=True):
        if a is not None:
            assert relative_error(a.grad, b.grad) < 1e-5


def test_network_gradients_agree_across_layouts():
    model = randomised(TINY_NETWORK)
    inputs = video_inputs(TINY_NETWORK)
    grads = []
    for channels_last in (True, False):  # channels-last runs the hand-written GroupNorm backward
        model.zero_grad()
        model.channels_last = channels_last
        model(**inputs).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert relative_error(grads[0], grads[1]) < 1e-5


def test_attention_mask_separates_real_and_padding_frames():
    real = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    allowed = real[:, :, None] == real[:, None, :]
    weights = masked_softmax(torch.randn(1, 4, 4), allowed)
    assert torch.allclose(weights.sum(-1), torch.ones(1, 4))
    assert torch.all(weights[0, 2, [0, 1, 3]] == 0) and weights[0, 2, 2] == 1
    assert torch.all(weights[0, [0, 1, 3], 2] == 0)


def test_turning_padding_into_a_latent_frame_changes_the_real_frames():
    model = randomised(TINY_NETWORK)
    inputs = video_inputs(TINY_NETWORK)
    unpadded = dict(inputs, latent_mask=torch.ones_like(inputs["latent_mask"]))
    unpadded["latent_mask"][:, 0] = 0
    with torch.no_grad():
        out, out_unpadded = model(**inputs), model(**unpadded)
    assert torch.allclose(out[0], out_unpadded[0], atol=1e-6)  # video 0 had no padding
    assert relative_error(out_unpadded[1, :-1], out[1, :-1]) > 1e-4


def test_observed_frames_enter_as_x0_and_latent_frames_interact():
    model = randomised(TINY_NETWORK)
    inputs = video_inputs(TINY_NETWORK)
    noisy_changed = {name: t.clone() for name, t in inputs.items()}
    noisy_changed["x"][:, 0] += 5.0  # noisy values of observed frames are ignored
    clean_changed = {name: t.clone() for name, t in inputs.items()}
    clean_changed["x0"][:, 0] += 1.0  # clean values of observed frames are used
    with torch.no_grad():
        out = model(**inputs)
        assert torch.allclose(out, model(**noisy_changed), atol=1e-6)
        changed = model(**clean_changed)
    assert not torch.allclose(out[:, 1], changed[:, 1], atol=1e-4)  # other frames see it


def test_output_follows_a_permutation_of_the_frames():
    model = randomised(TINY_NETWORK)
    inputs = video_inputs(TINY_NETWORK, batch=1)
    order = torch.tensor([2, 0, 3, 1])
    permuted = {name: (t[:, order] if t.dim() > 1 else t) for name, t in inputs.items()}
    with torch.no_grad():
        out, out_permuted = model(**inputs), model(**permuted)
    assert relative_error(out_permuted, out[:, order]) < 1e-5


def test_frame_distances_change_the_output():
    model = randomised(TINY_NETWORK)
    inputs = video_inputs(TINY_NETWORK, batch=1)
    spread = dict(inputs, frame_indices=inputs["frame_indices"] * 7)
    with torch.no_grad():
        assert relative_error(model(**inputs), model(**spread)) > 1e-4


def test_learned_sigma_lookup_table_variant_and_its_range():
    config = dataclasses.replace(TINY_NETWORK, learn_sigma=True, use_rpe_net=False, num_heads=4)
    model = randomised(config)
    assert model.state_dict()["input_blocks.3.1.temporal_attention.rpe_v.lookup_table_weight"].shape == (7, 4, 16)
    inputs = dict(video_inputs(config), frame_indices=torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]]))
    with torch.no_grad():
        out = model(**inputs)
    assert out.shape == (2, 4, 6, 16, 16)
    far = dict(inputs, frame_indices=torch.tensor([[0, 1, 2, 3], [0, 1, 2, 4]]))
    with pytest.raises(FrameIndexError, match="4 apart exceed the look-up-table encodings' range of 3"):
        model(**far)


def test_bf16_autocast_forward_and_backward_close_to_float32():
    model = randomised(TINY_NETWORK)
    inputs = video_inputs(TINY_NETWORK)
    with torch.no_grad():
        reference = model(**inputs)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**inputs)
    assert out.dtype == torch.bfloat16
    # bf16 keeps about 3 significant digits; through the network the output stays within 2%.
    assert relative_error(out, reference) < 2e-2
    out.float().square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_gradient_checkpointing_gives_the_same_gradients():
    inputs = video_inputs(TINY_NETWORK)
    grads = []
    for use_checkpoint in (False, True):
        model = randomised(dataclasses.replace(TINY_NETWORK, use_checkpoint=use_checkpoint)).train()
        model(**inputs).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert relative_error(grads[1], grads[0]) < 1e-5


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": 48, "channel_mult": None}, r"Unsupported image_size 48: supported sizes are 32, 64, 128"),
        ({"num_channels": 48}, r"num_channels=48 is not divisible by the 32 GroupNorm groups"),
        ({"num_heads": 3}, r"num_heads=3 does not divide the 64 channels"),
        ({"attention_resolutions": (12,)}, r"attention_resolutions contains 12.*choose from \[16, 8\]"),
    ],
)
def test_bad_configs_are_rejected(changes, message):
    with pytest.raises(ConfigError, match=message):
        UNetVideo(dataclasses.replace(TINY_NETWORK, **changes))


@pytest.mark.parametrize(
    ("name", "bad", "message"),
    [
        ("obs_mask", torch.zeros(2, 4), r"obs_mask has shape \(2, 4\) but must be \(2, 4, 1, 1, 1\)"),
        ("latent_mask", torch.zeros(2, 3, 1, 1, 1), r"latent_mask has shape \(2, 3, 1, 1, 1\)"),
        ("frame_indices", torch.zeros(2, 5, dtype=torch.long), r"frame_indices has shape \(2, 5\)"),
        ("x", torch.zeros(2, 4, 1, 16, 16), r"x has shape \(2, 4, 1, 16, 16\), but the network expects"),
    ],
)
def test_inputs_of_the_wrong_shape_are_rejected(name, bad, message):
    model = UNetVideo(TINY_NETWORK)
    inputs = dict(video_inputs(TINY_NETWORK), **{name: bad})
    with pytest.raises(ModelInputError, match=message):
        model(**inputs)
    assert issubclass(ModelInputError, FlexvidError)
