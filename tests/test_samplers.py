"""DDPM and DDIM samplers on videos with observed frames, on a Gaussian toy problem with an exact denoiser."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from flexvid.config import DiffusionConfig
from flexvid.diffusion import ModelVarType, build_diffusion, ddim_sample, ddpm_sample, respaced
from flexvid.errors import ConfigError, FlexvidError
from flexvid.frame_batch import FrameBatch

DATA_MEAN, DATA_STD = 0.3, 0.2
BASE = DiffusionConfig(diffusion_steps=1000)  # rescaled timesteps then equal original steps


class GaussianEpsilon:
    """The exact noise predictor E[eps | x_t] when every pixel of x_0 is N(DATA_MEAN, DATA_STD^2), independently.

    It reads alpha-bar at the original step it is called with, so it is only right if a respaced
    diffusion passes original timesteps. It records what it was called with.
    """

    def __init__(self) -> None:
        self.alphas_cumprod = build_diffusion(BASE).alphas_cumprod
        self.calls: list[dict] = []

    def __call__(self, x, timesteps, **kwargs):
        self.calls.append({"x": x.clone(), "timesteps": timesteps, **kwargs})
        ab = self.alphas_cumprod[timesteps.round().long()].float().view(-1, 1, 1, 1, 1)
        return (1 - ab).sqrt() * (x - ab.sqrt() * DATA_MEAN) / (ab * DATA_STD**2 + 1 - ab)


def video_task(B=2, K=4, C=1, H=6, W=6, seed=0):
    """Clean frames drawn from the data distribution, frame 0 observed, the rest latent."""
    g = torch.Generator().manual_seed(seed)
    x0 = DATA_MEAN + DATA_STD * torch.randn(B, K, C, H, W, generator=g)
    obs = torch.zeros(B, K, 1, 1, 1)
    obs[:, 0] = 1
    return x0, FrameBatch(x0, torch.arange(K).repeat(B, 1), obs, 1 - obs)


def generators(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_observed_frames_come_back_exactly_and_network_sees_them_clean(sampler):
    x0, batch = video_task()
    model = GaussianEpsilon()
    diffusion = respaced(BASE, 8, sampler)
    sample_fn = ddpm_sample if sampler == "ddpm" else ddim_sample
    out = sample_fn(model, diffusion, batch, generator=torch.Generator().manual_seed(1))
    assert out.shape == x0.shape and torch.isfinite(out).all()
    assert torch.equal(out[:, 0], x0[:, 0])
    assert not torch.allclose(out[:, 1:], x0[:, 1:])
    assert len(model.calls) == 8
    for call in model.calls:
        assert torch.equal(call["x"][:, 0], x0[:, 0])
        assert torch.equal(call["x0"], x0)


@pytest.mark.parametrize("sampler, eta", [("ddpm", None), ("ddim", 1.0)])
def test_generator_per_row_makes_rows_independent_of_the_batch(sampler, eta):
    _, batch = video_task(B=2)
    diffusion = respaced(BASE, 6, sampler)

    def run(rows, seeds):
        extra = {} if eta is None else {"eta": eta}
        fn = ddpm_sample if sampler == "ddpm" else ddim_sample
        return fn(GaussianEpsilon(), diffusion, batch[rows], generator=generators(seeds), **extra)

    together = run(slice(0, 2), [10, 11])
    assert torch.allclose(together[0:1], run(slice(0, 1), [10]), atol=1e-6)
    assert torch.allclose(together[1:2], run(slice(1, 2), [11]), atol=1e-6)
    assert not torch.allclose(together[:, 1:], run(slice(0, 2), [12, 13])[:, 1:])


def test_ddim_eta0_is_the_deterministic_ddim_update_from_the_initial_noise():
    x0, batch = video_task(B=1)
    diffusion = respaced(BASE, 5, "ddim")
    model = GaussianEpsilon()
    out = ddim_sample(model, diffusion, batch, generator=torch.Generator().manual_seed(3), clip_denoised=False)

    # The same first draw, then x_{t-1} = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev) eps_hat.
    x = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    x[:, 0] = x0[:, 0]
    ab = diffusion.alphas_cumprod
    for i in reversed(range(5)):
        eps = model(x, torch.tensor([float(diffusion.timestep_map[i])]))
        x0_hat = (x - (1 - ab[i]).sqrt() * eps) / ab[i].sqrt()
        ab_prev = ab[i - 1] if i > 0 else torch.tensor(1.0, dtype=torch.float64)
        x = (ab_prev.sqrt() * x0_hat + (1 - ab_prev).sqrt() * eps).float()
        x[:, 0] = x0[:, 0]
    assert torch.allclose(out, x, atol=1e-5)
    # Deterministic: other per-step noise (different global RNG state) changes nothing.
    torch.manual_seed(123)
    again = ddim_sample(model, diffusion, batch, generator=torch.Generator().manual_seed(3), clip_denoised=False)
    assert torch.equal(out, again)


def test_ddim_eta1_on_all_steps_equals_ddpm_with_posterior_variance():
    config = dataclasses.replace(BASE, diffusion_steps=40, sigma_small=True)
    diffusion = build_diffusion(config)
    _, batch = video_task()
    model = GaussianEpsilon()
    model.alphas_cumprod = diffusion.alphas_cumprod  # 40 steps, timesteps rescaled by 1000 / 40
    scale = 40 / 1000

    def model_40(x, timesteps, **kw):
        return model(x, timesteps * scale, **kw)

    ddpm = ddpm_sample(model_40, diffusion, batch, generator=torch.Generator().manual_seed(5))
    ddim = ddim_sample(model_40, diffusion, batch, generator=torch.Generator().manual_seed(5), eta=1.0)
    assert torch.allclose(ddpm, ddim, atol=1e-4)


def sample_gaussian_task(sampler, diffusion, eta=0.0):
    _, batch = video_task(B=4, K=5, H=8, W=8, seed=2)
    extra = {"eta": eta} if sampler == "ddim" else {}
    fn = ddpm_sample if sampler == "ddpm" else ddim_sample
    out = fn(GaussianEpsilon(), diffusion, batch, generator=torch.Generator().manual_seed(0), **extra)
    return out[:, 1:]  # the 1024 latent values


def test_ddpm_samples_of_a_gaussian_data_distribution_have_its_statistics():
    latent = sample_gaussian_task("ddpm", respaced(BASE, 200, "ddpm"))
    assert abs(latent.mean().item() - DATA_MEAN) < 0.03
    assert abs(latent.std().item() / DATA_STD - 1) < 0.08


def predicted_std(diffusion, sampler, eta):
    """Std of the samples, from the linear-Gaussian recursion the exact denoiser makes of each sampler.

    With x_0 ~ N(m, s^2) the denoised estimate is affine in x_t, so each step maps the spread of x_t
    to spread_{t-1}^2 = d_t^2 spread_t^2 + noise_variance_t, starting from the unit Gaussian.
    """
    s2 = DATA_STD**2
    ab, ab_prev = diffusion.alphas_cumprod, diffusion.alphas_cumprod_prev
    var = torch.tensor(1.0, dtype=torch.float64)
    for i in reversed(range(diffusion.num_timesteps)):
        v_t = ab[i] * s2 + 1 - ab[i]
        dxstart = ab[i].sqrt() * s2 / v_t  # d x0_hat / d x_t
        if sampler == "ddpm":
            d = diffusion.posterior_mean_coef1[i] * dxstart + diffusion.posterior_mean_coef2[i]
            small = diffusion.model_var_type == ModelVarType.FIXED_SMALL
            noise_var = (diffusion.posterior_variance if small else diffusion.fixed_large_variance)[i]
        else:
            noise_var = eta**2 * (1 - ab_prev[i]) / (1 - ab[i]) * (1 - ab[i] / ab_prev[i])
            deps = (1 - dxstart * ab[i].sqrt()) / (1 - ab[i]).sqrt()  # d eps_hat / d x_t
            d = ab_prev[i].sqrt() * dxstart + (1 - ab_prev[i] - noise_var).sqrt() * deps
        var = d**2 * var + (noise_var if i > 0 else 0.0)
    return var.sqrt().item()


@pytest.mark.parametrize(
    "sampler, steps, eta, sigma_small",
    [("ddpm", 20, 0.0, False), ("ddpm", 20, 0.0, True), ("ddim", 25, 0.0, False), ("ddim", 50, 1.0, False)],
)
def test_few_step_sample_spread_matches_the_gaussian_recursion(sampler, steps, eta, sigma_small):
    diffusion = respaced(dataclasses.replace(BASE, sigma_small=sigma_small), steps, sampler)
    latent = sample_gaussian_task(sampler, diffusion, eta)
    expected = predicted_std(diffusion, sampler, eta)
    assert abs(latent.std().item() / expected - 1) < 0.06
    assert abs(latent.mean().item() - DATA_MEAN) < 0.03


def test_callback_sees_every_step_and_progress_bar_runs():
    x0, batch = video_task(B=1)
    diffusion = respaced(BASE, 4, "ddpm")
    seen = []
    out = ddpm_sample(
        GaussianEpsilon(),
        diffusion,
        batch,
        progress=True,
        callback=lambda t, x, pred: seen.append((t, x.shape, pred.shape)),
    )
    assert [t for t, _, _ in seen] == [3, 2, 1, 0]
    assert all(shape == x0.shape and pred == x0.shape for _, shape, pred in seen)
    assert out.shape == x0.shape


def test_sampler_input_errors():
    x0, batch = video_task(B=2)
    diffusion = respaced(BASE, 3, "ddim")
    model = GaussianEpsilon()
    # Internal invariants (a plain AssertionError or ValueError); a bad eta flag is the user's error.
    with pytest.raises(AssertionError, match="Got 1 generators for a batch of 2 videos"):
        ddpm_sample(model, diffusion, batch, generator=generators([0]))
    missing_mask = r"obs_mask must be a float 0/1 tensor of shape \(2, 4, 1, 1, 1\), got nothing"
    with pytest.raises(ValueError, match=missing_mask) as bad:
        FrameBatch(x0, batch.frame_indices, None, batch.latent_mask)
    assert not isinstance(bad.value, FlexvidError)
    with pytest.raises(ConfigError, match="eta must be >= 0"):
        ddim_sample(model, diffusion, batch, eta=-0.5)
    with pytest.raises(ValueError, match=r"\(B, K, C, H, W\)"):
        FrameBatch(x0[0], batch.frame_indices, batch.obs_mask, batch.latent_mask)
