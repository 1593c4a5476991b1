"""Gaussian diffusion: reference equivalence, schedules, respacing, learned variance, losses, timestep samplers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from flexvid.config import DiffusionConfig
from flexvid.diffusion import (
    GaussianDiffusion,
    build_diffusion,
    create_named_schedule_sampler,
    get_named_beta_schedule,
    respaced,
    space_timesteps,
)
from flexvid.diffusion.losses import masked_mean
from flexvid.diffusion.timestep_samplers import LossSecondMomentResampler, UniformSampler
from flexvid.errors import ConfigError, FlexvidError
from flexvid.frame_batch import FrameBatch


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


class FixedOutputModel:
    """Stands in for the network (tested separately): returns a stored output and records its inputs."""

    def __init__(self, output: torch.Tensor) -> None:
        self.output = output
        self.calls: list[dict] = []

    def __call__(self, x, timesteps, **kwargs):
        self.calls.append({"x": x, "timesteps": timesteps, **kwargs})
        return self.output


@pytest.fixture(scope="module")
def reference_io(reference_dir):
    data = np.load(reference_dir / "reference_small_io.npz")
    return {k: torch.from_numpy(data[k]) for k in data.files}


def reference_batch(io):
    return FrameBatch(io["x_start"], io["frame_indices"], io["obs_mask"], io["latent_mask"])


def small_batch(B=2, K=4, C=3, H=4, W=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_start = torch.rand(B, K, C, H, W, generator=g) * 2 - 1
    obs = torch.zeros(B, K, 1, 1, 1)
    obs[:, 0] = 1
    latent = 1 - obs
    latent[-1, -1] = 0  # one padding frame in the last video
    return x_start, FrameBatch(x_start, torch.arange(K).repeat(B, 1), obs, latent), g


# ---------------------------------------------------------------- reference equivalence
def test_q_sample_matches_reference(reference_io):
    diffusion = build_diffusion(DiffusionConfig())
    x_t = diffusion.q_sample(reference_io["x_start"], reference_io["t"], reference_io["noise"])
    assert rel_err(x_t, reference_io["x_t"]) < 1e-5


def test_p_mean_variance_matches_reference(reference_io):
    diffusion = build_diffusion(DiffusionConfig())
    model = FixedOutputModel(reference_io["model_output"])
    out = diffusion.p_mean_variance(model, reference_io["x_t"], reference_io["t"], reference_batch(reference_io))
    for ours, theirs in [
        ("mean", "p_mean"),
        ("variance", "p_variance"),
        ("log_variance", "p_log_variance"),
        ("pred_xstart", "pred_xstart"),
    ]:
        assert out[ours].shape == reference_io[theirs].shape
        assert rel_err(out[ours], reference_io[theirs]) < 1e-5, ours
    # With 1000 steps and rescale_timesteps the network sees t itself, as a float.
    call = model.calls[0]
    assert call["timesteps"].dtype == torch.float32
    assert torch.equal(call["timesteps"], reference_io["t"].float())
    assert torch.equal(call["x0"], reference_io["x_start"])


def test_training_losses_match_reference(reference_io):
    diffusion = build_diffusion(DiffusionConfig())
    model = FixedOutputModel(reference_io["model_output"])
    batch = reference_batch(reference_io)
    losses = diffusion.training_losses(model, batch, reference_io["t"], noise=reference_io["noise"])
    assert set(losses) == {"loss", "mse", "eval-mse"}
    for key in ("mse", "eval-mse", "loss"):
        assert losses[key].shape == (2,)
        assert rel_err(losses[key], reference_io[f"loss_{key}"]) < 1e-5, key
    # The network is called on q_sample(x_start, t, noise) for every frame, observed ones included.
    assert rel_err(model.calls[0]["x"], reference_io["x_t"]) < 1e-6


def test_real_network_reproduces_reference_diffusion_outputs(reference_dir, reference_io):
    from flexvid.checkpoint import load_pretrained

    pretrained = load_pretrained(reference_dir / "reference_small.pt")
    batch = reference_batch(reference_io)
    with torch.no_grad():
        out = pretrained.diffusion.p_mean_variance(pretrained.model, reference_io["x_t"], reference_io["t"], batch)
        losses = pretrained.diffusion.training_losses(
            pretrained.model, batch, reference_io["t"], noise=reference_io["noise"]
        )
    for ours, theirs in [
        ("mean", "p_mean"),
        ("variance", "p_variance"),
        ("log_variance", "p_log_variance"),
        ("pred_xstart", "pred_xstart"),
    ]:
        assert rel_err(out[ours], reference_io[theirs]) < 1e-5, ours
    for key in ("mse", "eval-mse", "loss"):
        assert rel_err(losses[key], reference_io[f"loss_{key}"]) < 1e-5, key


# ---------------------------------------------------------------- schedules and respacing
def test_linear_schedule_closed_form():
    for steps in (1000, 250):
        betas = get_named_beta_schedule("linear", steps)
        scale = 1000 / steps
        assert betas.dtype == np.float64 and betas.shape == (steps,)
        assert betas[0] == pytest.approx(1e-4 * scale) and betas[-1] == pytest.approx(0.02 * scale)
        assert np.allclose(np.diff(betas), (0.02 - 1e-4) * scale / (steps - 1))


def test_cosine_schedule_closed_form():
    steps = 100
    betas = get_named_beta_schedule("cosine", steps)
    f = lambda t: math.cos((t / steps + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    expected = np.array([f(i + 1) / f(0) for i in range(steps)])
    alphas_cumprod = np.cumprod(1 - betas)
    # The telescoping product holds until beta hits its 0.999 cap at the very end.
    assert np.allclose(alphas_cumprod[:-1], expected[:-1], rtol=1e-10, atol=1e-12)
    assert betas.max() <= 0.999


def test_unknown_or_impossible_schedule_is_rejected():
    with pytest.raises(ConfigError, match="Unknown noise_schedule 'quadratic'"):
        get_named_beta_schedule("quadratic", 100)
    with pytest.raises(ConfigError, match="linear noise schedule needs more than 20 diffusion steps"):
        get_named_beta_schedule("linear", 20)
    assert get_named_beta_schedule("cosine", 5).max() < 1


def test_space_timesteps_sections_and_ddim():
    steps = space_timesteps(300, [10, 15, 20])
    assert len(steps) == 45
    sections = [sorted(s for s in steps if lo <= s < lo + 100) for lo in (0, 100, 200)]
    assert [len(s) for s in sections] == [10, 15, 20]
    assert [s[0] for s in sections] == [0, 100, 200] and [s[-1] for s in sections] == [99, 199, 299]
    assert space_timesteps(100, "ddim10") == set(range(0, 100, 10))
    assert space_timesteps(100, "25") == space_timesteps(100, [25])
    assert space_timesteps(10, "10") == set(range(10))


@pytest.mark.parametrize(
    "spec, match",
    [("ddim600", "Cannot take exactly 600 DDIM steps"), ("1001", "only 1000"), ("fast", "Invalid timestep_respacing")],
)
def test_bad_respacing_is_rejected(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_diffusion(DiffusionConfig(timestep_respacing=spec))


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_respacing_keeps_alphas_cumprod(schedule):
    base = build_diffusion(DiffusionConfig(noise_schedule=schedule))
    spaced = build_diffusion(DiffusionConfig(noise_schedule=schedule, timestep_respacing="ddim50"))
    kept = spaced.timestep_map
    assert spaced.num_timesteps == 50 and torch.equal(kept, torch.arange(0, 1000, 20))
    assert torch.allclose(spaced.alphas_cumprod, base.alphas_cumprod[kept], rtol=1e-12)


def test_respaced_diffusion_calls_model_with_original_timesteps():
    config = DiffusionConfig(diffusion_steps=100, timestep_respacing="10")
    diffusion = build_diffusion(config)
    x_start, batch, _ = small_batch(B=2)
    model = FixedOutputModel(torch.zeros_like(x_start))
    t = torch.tensor([0, 9])
    diffusion.p_mean_variance(model, x_start, t, batch)
    expected = diffusion.timestep_map[t].float() * (1000 / 100)
    assert torch.equal(model.calls[0]["timesteps"], expected)
    assert expected[-1] == 990.0  # the last kept step of 100 is step 99
    unscaled = build_diffusion(dataclasses.replace(config, rescale_timesteps=False))
    unscaled.p_mean_variance(model, x_start, t, batch)
    assert torch.equal(model.calls[1]["timesteps"], torch.tensor([0, 99]))


def test_respaced_helper_picks_spacing_per_sampler():
    config = DiffusionConfig(diffusion_steps=100)
    assert torch.equal(respaced(config, 10, "ddim").timestep_map, torch.arange(0, 100, 10))
    assert respaced(config, 10, "ddpm").timestep_map.tolist() == sorted(space_timesteps(100, "10"))
    assert respaced(config, None, "ddpm").num_timesteps == 100
    with pytest.raises(ConfigError, match="between 2 and diffusion_steps"):
        respaced(config, 101, "ddpm")
    with pytest.raises(ConfigError, match="Unknown sampler 'plms'"):
        respaced(config, 10, "plms")


# ---------------------------------------------------------------- parameterisations and losses
def test_eps_xstart_round_trip():
    diffusion = build_diffusion(DiffusionConfig(diffusion_steps=50, noise_schedule="cosine"))
    x_start, _, g = small_batch()
    noise = torch.randn(x_start.shape, generator=g)
    t = torch.tensor([3, 35])
    x_t = diffusion.q_sample(x_start, t, noise)
    assert torch.allclose(diffusion.predict_xstart_from_eps(x_t, t, noise), x_start, atol=1e-4)
    assert torch.allclose(diffusion.predict_eps_from_xstart(x_t, t, x_start), noise, atol=1e-4)


def test_masked_losses_divide_by_all_elements():
    diffusion = build_diffusion(DiffusionConfig(diffusion_steps=40))
    x_start, batch, g = small_batch(B=2, K=4)
    noise = torch.randn(x_start.shape, generator=g)
    model = FixedOutputModel(torch.zeros_like(x_start))  # squared error = noise ** 2
    losses = diffusion.training_losses(model, batch, torch.tensor([5, 6]), noise=noise)
    sq = noise**2
    per_video = sq[0, 0].numel() * 4
    expected_mse = torch.stack([sq[b, 1:].sum() / per_video for b in range(2)])  # all but the observed frame 0
    expected_eval = torch.stack([sq[0, 1:].sum() / per_video, sq[1, 1:3].sum() / per_video])  # latent only
    assert torch.allclose(losses["mse"], expected_mse)
    assert torch.allclose(losses["eval-mse"], expected_eval)
    assert torch.equal(losses["loss"], losses["mse"])


def test_xstart_prediction():
    diffusion = build_diffusion(DiffusionConfig(diffusion_steps=40, predict_xstart=True))
    x_start, batch, _ = small_batch()
    model = FixedOutputModel(x_start * 3)
    t = torch.tensor([4, 10])
    out = diffusion.p_mean_variance(model, x_start, t, batch)
    assert torch.equal(out["pred_xstart"], (x_start * 3).clamp(-1, 1))
    losses = diffusion.training_losses(FixedOutputModel(x_start), batch, t)
    assert torch.all(losses["loss"] == 0)


def test_fixed_small_and_large_variances():
    large = build_diffusion(DiffusionConfig(diffusion_steps=40))
    small = build_diffusion(DiffusionConfig(diffusion_steps=40, sigma_small=True))
    x, batch, _ = small_batch()
    model = FixedOutputModel(torch.zeros_like(x))
    t = torch.tensor([0, 7])
    v_large = large.p_mean_variance(model, x, t, batch)["variance"][:, 0, 0, 0, 0].double()
    v_small = small.p_mean_variance(model, x, t, batch)["variance"][:, 0, 0, 0, 0].double()
    assert torch.allclose(v_large, torch.stack([large.posterior_variance[1], large.betas[7]]), rtol=1e-6)
    assert torch.allclose(v_small, torch.stack([small.posterior_variance[0], small.posterior_variance[7]]), rtol=1e-6)


def learned_sigma_setup(var_value: float, requires_grad: bool = False):
    diffusion = build_diffusion(DiffusionConfig(diffusion_steps=30, learn_sigma=True))
    x_start, batch, g = small_batch(B=2, K=5, C=3)  # K != 2C: a frame-axis split would fail
    eps = torch.randn(x_start.shape, generator=g)
    output = torch.cat([eps, torch.full_like(eps, var_value)], dim=2).requires_grad_(requires_grad)
    return diffusion, x_start, batch, output


def test_learned_variance_splits_channels_and_interpolates():
    t = torch.tensor([0, 12])
    logs = {}
    for v in (-1.0, 0.0, 1.0):
        diffusion, x_start, batch, output = learned_sigma_setup(v)
        out = diffusion.p_mean_variance(FixedOutputModel(output), x_start, t, batch)
        for key in ("mean", "variance", "log_variance", "pred_xstart"):
            assert out[key].shape == x_start.shape, key
        logs[v] = out["log_variance"][:, 0, 0, 0, 0].double()
    min_log = diffusion.posterior_log_variance_clipped[t]
    max_log = torch.log(diffusion.betas[t])
    assert torch.allclose(logs[-1.0], min_log, rtol=1e-6)
    assert torch.allclose(logs[1.0], max_log, rtol=1e-6)
    assert torch.allclose(logs[0.0], (min_log + max_log) / 2, rtol=1e-6)
    assert torch.all(max_log[1:] > min_log[1:])  # beta > beta-tilde away from t = 0


def test_learned_variance_training_loss_has_finite_vb_that_trains_only_the_variance():
    diffusion, x_start, batch, output = learned_sigma_setup(0.3, requires_grad=True)
    losses = diffusion.training_losses(FixedOutputModel(output), batch, torch.tensor([0, 17]))
    assert set(losses) == {"loss", "mse", "eval-mse", "vb"}
    assert torch.isfinite(losses["vb"]).all() and torch.all(losses["vb"] > 0)
    assert torch.allclose(losses["loss"], losses["mse"] + losses["vb"])
    losses["vb"].sum().backward()
    C = x_start.shape[2]
    assert torch.all(output.grad[:, :, :C] == 0)  # mean channels are frozen in the vb term
    assert output.grad[:, 1:, C:].abs().sum() > 0  # variance channels of unobserved frames get gradient
    assert torch.all(output.grad[:, 0, C:] == 0)  # observed frames are outside the loss


def test_learned_variance_with_the_real_network_trains():
    from flexvid.config import ModelConfig
    from flexvid.nn import UNetVideo

    model = UNetVideo(
        ModelConfig(
            image_size=8,
            num_channels=32,
            num_res_blocks=1,
            channel_mult=(1, 2),
            num_heads=2,
            attention_resolutions=(4,),
            learn_sigma=True,
            max_frames=3,
        )
    )
    diffusion = build_diffusion(DiffusionConfig(diffusion_steps=30, learn_sigma=True))
    x_start, batch, _ = small_batch(B=2, K=3, C=3, H=8, W=8)
    losses = diffusion.training_losses(model, batch, torch.tensor([0, 20]))
    assert set(losses) == {"loss", "mse", "eval-mse", "vb"}
    assert all(torch.isfinite(v).all() for v in losses.values())
    losses["loss"].mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_kl_loss_is_rescaled_variational_bound():
    diffusion = build_diffusion(DiffusionConfig(diffusion_steps=30, use_kl=True))
    x_start, batch, g = small_batch()
    noise = torch.randn(x_start.shape, generator=g)
    output = torch.randn(x_start.shape, generator=g)
    t = torch.tensor([0, 20])
    losses = diffusion.training_losses(FixedOutputModel(output), batch, t, noise=noise)
    x_t = diffusion.q_sample(x_start, t, noise)
    vb = diffusion.vb_terms_bpd(output, x_start, x_t, t, mask=1 - batch.obs_mask)
    assert torch.allclose(losses["loss"], vb * 30)
    assert torch.isfinite(losses["loss"]).all()


def test_vb_term_is_zero_when_the_model_matches_the_posterior():
    diffusion = build_diffusion(DiffusionConfig(diffusion_steps=30, sigma_small=True))
    x_start, _, g = small_batch()
    noise = torch.randn(x_start.shape, generator=g)
    t = torch.tensor([5, 25])
    x_t = diffusion.q_sample(x_start, t, noise)
    assert torch.allclose(diffusion.vb_terms_bpd(noise, x_start, x_t, t), torch.zeros(2), atol=1e-4)


def test_masked_mean_zeroes_and_divides_by_all():
    values = torch.ones(1, 4, 1, 1, 2)
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 4, 1, 1, 1)
    assert masked_mean(values, mask).item() == pytest.approx(0.5)


# ---------------------------------------------------------------- bad input
def test_wrong_model_output_shape_is_reported():
    diffusion = build_diffusion(DiffusionConfig(diffusion_steps=30, learn_sigma=True))
    x_start, batch, _ = small_batch()
    with pytest.raises(AssertionError, match="learn_sigma must be the same"):
        diffusion.p_mean_variance(FixedOutputModel(x_start), x_start, torch.tensor([1, 2]), batch)


def test_bad_masks_and_shapes_are_reported():
    diffusion = build_diffusion(DiffusionConfig(diffusion_steps=30))
    x_start, batch, _ = small_batch()
    model = FixedOutputModel(torch.zeros_like(x_start))
    t = torch.tensor([1, 2])
    # Internal invariants, not user errors: plain ValueError (FrameBatch.check) and AssertionError.
    with pytest.raises(ValueError, match=r"obs_mask must be a float 0/1 tensor of shape \(2, 4, 1, 1, 1\)") as bad:
        dataclasses.replace(batch, obs_mask=torch.zeros(2, 4))
    assert not isinstance(bad.value, FlexvidError)
    with pytest.raises(ValueError, match=r"latent_mask must be .* got nothing"):
        dataclasses.replace(batch, latent_mask=None)
    with pytest.raises(AssertionError, match=r"\(B, K, C, H, W\)"):
        diffusion.p_mean_variance(model, x_start[:, 0], t, batch)
    with pytest.raises(AssertionError, match="one per video"):
        diffusion.p_mean_variance(model, x_start, torch.tensor([1]), batch)


# ---------------------------------------------------------------- timestep samplers
def test_uniform_schedule_sampler():
    diffusion = build_diffusion(DiffusionConfig(diffusion_steps=30))
    sampler = create_named_schedule_sampler("uniform", diffusion)
    assert isinstance(sampler, UniformSampler)
    t, weights = sampler.sample(64, "cpu", generator=torch.Generator().manual_seed(0))
    assert t.shape == (64,) and t.min() >= 0 and t.max() < 30
    assert torch.all(weights == 1)


def test_loss_second_moment_sampler_prefers_high_loss_steps():
    diffusion = build_diffusion(DiffusionConfig(diffusion_steps=4, noise_schedule="cosine"))
    sampler = create_named_schedule_sampler("loss-second-moment", diffusion)
    assert isinstance(sampler, LossSecondMomentResampler)
    assert np.all(sampler.weights() == 1)  # uniform until warmed up
    for _ in range(sampler.history_per_term):
        sampler.update_with_local_losses(torch.arange(4), torch.tensor([4.0, 1.0, 1.0, 2.0]))
    assert sampler.warmed_up()
    probs = sampler.weights() / sampler.weights().sum()
    assert probs[0] == pytest.approx(0.5, abs=1e-3) and probs[3] == pytest.approx(0.25, abs=1e-3)
    t, weights = sampler.sample(1000, "cpu", generator=torch.Generator().manual_seed(0))
    assert 0.45 < (t == 0).float().mean() < 0.55
    assert torch.allclose(weights, torch.from_numpy(1 / (4 * probs[t.numpy()])).float())
    # The history keeps only the newest losses.
    sampler.update_with_all_losses([1] * sampler.history_per_term, [8.0] * sampler.history_per_term)
    assert np.all(sampler.loss_history[1] == 8.0)


def test_unknown_schedule_sampler_is_rejected():
    with pytest.raises(ConfigError, match="Unknown schedule sampler 'importance'"):
        create_named_schedule_sampler("importance", build_diffusion(DiffusionConfig(diffusion_steps=30)))


def test_build_diffusion_picks_types_like_the_reference():
    from flexvid.diffusion import LossType, ModelMeanType, ModelVarType

    cases = [
        (DiffusionConfig(), ModelMeanType.EPSILON, ModelVarType.FIXED_LARGE, LossType.RESCALED_MSE),
        (
            DiffusionConfig(sigma_small=True, rescale_learned_sigmas=False),
            ModelMeanType.EPSILON,
            ModelVarType.FIXED_SMALL,
            LossType.MSE,
        ),
        (
            DiffusionConfig(learn_sigma=True, predict_xstart=True, use_kl=True),
            ModelMeanType.START_X,
            ModelVarType.LEARNED_RANGE,
            LossType.RESCALED_KL,
        ),
    ]
    for config, mean_type, var_type, loss_type in cases:
        diffusion = build_diffusion(dataclasses.replace(config, diffusion_steps=30))
        assert isinstance(diffusion, GaussianDiffusion)
        assert (diffusion.model_mean_type, diffusion.model_var_type, diffusion.loss_type) == (
            mean_type,
            var_type,
            loss_type,
        )
