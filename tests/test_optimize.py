"""Optimised schemes: the greedy search finds the frames that lower the loss, resumes after an
interruption, and `flexvid schemes optimize` writes schedules that `optimized` and `flexvid sample` use."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from flexvid.config import DiffusionConfig
from flexvid.diffusion import build_diffusion
from flexvid.errors import ConfigError, SchemeError
from flexvid.schemes import load_schedule, scheme_stages
from flexvid.schemes.optimize import (
    OptimizeSettings,
    SetLossEstimator,
    evaluation_timesteps,
    optimize_schedule,
    read_partial,
    stage_noise,
    start_frames,
)

from helpers import run_cli
from trained_model import train_tiny_model

PERIOD = 6  # frame i + PERIOD of the test videos repeats frame i


class CopyOracle(torch.nn.Module):
    """Predicts a latent frame's clean value as the observed frame PERIOD before it, or zeros when that
    frame is not observed: only conditioning on the right frames lowers its loss."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x, timesteps, frame_indices, obs_mask, latent_mask, x0):
        self.calls += 1
        out = torch.zeros_like(x)
        observed = obs_mask.view(obs_mask.shape[:2]).bool()
        for b, indices in enumerate(frame_indices.tolist()):
            position = {i: k for k, i in enumerate(indices) if observed[b, k]}
            for k, i in enumerate(indices):
                if not observed[b, k] and i - PERIOD in position:
                    out[b, k] = x0[b, position[i - PERIOD]]
        return out


@pytest.fixture(scope="module")
def periodic_videos() -> torch.Tensor:
    """4 videos of 12 random 1x4x4 frames whose second half repeats the first."""
    first = torch.randint(0, 256, (4, PERIOD, 1, 4, 4), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    return torch.cat([first, first], dim=1)


X0_DIFFUSION = build_diffusion(DiffusionConfig(diffusion_steps=100, predict_xstart=True))
SETTINGS = OptimizeSettings(
    base="autoreg",
    video_length=12,
    num_observed_frames=6,
    max_frames=5,
    step_size=2,
    num_videos=4,
    num_timesteps=2,
    batch_size=8,
)


def fresh_estimate(model, videos, settings, number, latent, observed) -> float:
    """The loss of one observed set for stage `number`, from a new estimator with the same draws."""
    steps = torch.tensor(evaluation_timesteps(X0_DIFFUSION.num_timesteps, settings.num_timesteps))
    noise = stage_noise(settings.seed, number, (settings.num_videos, len(latent), *videos.shape[2:]))
    estimate = SetLossEstimator(
        model, X0_DIFFUSION, videos, latent, steps.repeat_interleave(2), noise, batch_size=3, device="cpu"
    )
    return estimate([observed])[0]


def test_greedy_search_finds_the_frames_that_explain_the_latent_ones(periodic_videos):
    model = CopyOracle()
    results = optimize_schedule(model, X0_DIFFUSION, periodic_videos, SETTINGS, progress=False)
    stages = scheme_stages("autoreg", video_length=12, num_observed_frames=6, max_frames=5, step_size=2)
    assert sorted(results) == [0, 1, 2]
    for number, stage in enumerate(stages):
        result = results[number]
        copies = {i - PERIOD for i in stage.latent}
        assert (
            copies <= set(result.observed)
            and start_frames(stage.latent, range(min(stage.latent)))[0] in result.observed
        )
        assert result.loss < 1e-9 < 1e-3 < result.base_loss  # the base's latest frames hold no copy
        # The same estimate, computed afresh, gives the recorded losses.
        assert fresh_estimate(model, periodic_videos, SETTINGS, number, stage.latent, stage.obs) == pytest.approx(
            result.base_loss
        )
        assert fresh_estimate(model, periodic_videos, SETTINGS, number, stage.latent, result.observed) == pytest.approx(
            result.loss, abs=1e-9
        )


def test_interrupted_search_resumes_after_the_last_finished_stage(periodic_videos, tmp_path):
    reference = optimize_schedule(CopyOracle(), X0_DIFFUSION, periodic_videos, SETTINGS, progress=False)
    partial = tmp_path / "opt.json.partial"

    class Interrupted(CopyOracle):
        def forward(self, *args, **kwargs):
            if self.calls == 8:  # stage 0 takes 6 calls (its base set, then 5 + 4 candidate sets of 4 videos)
                raise KeyboardInterrupt
            return super().forward(*args, **kwargs)

    with pytest.raises(KeyboardInterrupt):
        optimize_schedule(
            Interrupted(),
            X0_DIFFUSION,
            periodic_videos,
            SETTINGS,
            partial=partial,
            identity={"model": "oracle"},
            progress=False,
        )
    assert sorted(read_partial(partial, {"model": "oracle", **without_batch(SETTINGS)})) == [0]
    resumed_model = CopyOracle()
    resumed = optimize_schedule(
        resumed_model,
        X0_DIFFUSION,
        periodic_videos,
        SETTINGS,
        partial=partial,
        identity={"model": "oracle"},
        progress=False,
    )
    assert resumed == reference
    fresh = CopyOracle()
    optimize_schedule(fresh, X0_DIFFUSION, periodic_videos, SETTINGS, progress=False)
    assert resumed_model.calls == fresh.calls - 6

    # Other settings or another model do not resume this file; a new batch size does.
    with pytest.raises(ConfigError, match=r"other settings \(seed differ\)"):
        optimize_schedule(
            CopyOracle(),
            X0_DIFFUSION,
            periodic_videos,
            dataclasses.replace(SETTINGS, seed=1),
            partial=partial,
            identity={"model": "oracle"},
            progress=False,
        )
    with pytest.raises(ConfigError, match=r"\(model differ\)"):
        optimize_schedule(
            CopyOracle(),
            X0_DIFFUSION,
            periodic_videos,
            SETTINGS,
            partial=partial,
            identity={"model": "other"},
            progress=False,
        )
    again = CopyOracle()
    assert (
        optimize_schedule(
            again,
            X0_DIFFUSION,
            periodic_videos,
            dataclasses.replace(SETTINGS, batch_size=50),
            partial=partial,
            identity={"model": "oracle"},
            progress=False,
        )
        == reference
    )
    assert again.calls == 0
    partial.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="is not a partial schedule"):
        read_partial(partial, {})


def without_batch(settings: OptimizeSettings) -> dict:
    return {k: v for k, v in dataclasses.asdict(settings).items() if k != "batch_size"}


def test_timesteps_and_settings():
    assert evaluation_timesteps(1000, 10) == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert OptimizeSettings("autoreg", 10, 2, 4, 2).num_videos == 100
    assert start_frames([4, 5], [0, 1, 2, 3, 9]) == [3, 9] and start_frames([4, 5], [0, 1]) == [1]
    videos = torch.zeros(10, 12, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(ConfigError, match="multiple of --num_timesteps"):
        optimize_schedule(
            CopyOracle(), X0_DIFFUSION, videos, dataclasses.replace(SETTINGS, num_videos=10, num_timesteps=3)
        )
    with pytest.raises(SchemeError, match="no fixed stages"):
        optimize_schedule(
            CopyOracle(), X0_DIFFUSION, videos[:4], dataclasses.replace(SETTINGS, base="adaptive-autoreg")
        )


# ---- `flexvid schemes optimize` on a small trained model ----


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    return train_tiny_model(tmp_path_factory.mktemp("trained"))


def optimize_cli(run_dir, base, out, capsys) -> list[tuple[float, float]]:
    """Run the command; returns each stage's (optimised loss, base loss) as printed."""
    assert (
        run_cli(
            "schemes",
            "optimize",
            str(run_dir),
            "--base",
            base,
            *"--T 10 --n_obs 2 --num_videos 4 --num_timesteps 2 --batch_size 16 --out".split(),
            str(out),
        )
        == 0
    )
    printed = capsys.readouterr().out
    return [(float(a), float(b)) for a, b in re.findall(r"loss ([0-9.]+) \(base ([0-9.]+)\)", printed)]


def test_optimize_command_writes_a_scheme_file_that_sample_uses(trained_run, tmp_path, capsys):
    out = tmp_path / "opt.yaml"
    losses = optimize_cli(trained_run, "autoreg", out, capsys)
    assert out.is_file() and not (tmp_path / "opt.yaml.partial").exists()
    # K=4, 2 latent frames per stage: the greedy set is the closest frame plus the best other one, and the
    # base's two latest frames are among the sets it tried, so it can only do as well or better.
    assert len(losses) == 4 and all(loss <= base + 1e-9 for loss, base in losses)
    stages = scheme_stages(out, video_length=10, num_observed_frames=2, max_frames=4, step_size=2)
    assert [s.latent for s in stages] == [(2, 3), (4, 5), (6, 7), (8, 9)]
    assert all(len(s.obs) == 2 and max(s.obs) == min(s.latent) - 1 for s in stages)
    eval_dir = tmp_path / "eval"
    assert (
        run_cli(
            "sample",
            str(trained_run),
            "--sampling_scheme",
            str(out),
            *"--n_obs 2 --T 10 --steps 2 --stop_index 1 --eval_dir".split(),
            str(eval_dir),
        )
        == 0
    )
    assert np.load(eval_dir / "samples" / "sample_0000-0.npy").shape == (10, 1, 16, 16)


def test_optimize_hierarchy_writes_the_schedule_that_optimized_reads(trained_run, tmp_path, capsys):
    out = tmp_path / "opt.json"
    losses = optimize_cli(trained_run, "hierarchy-2", out, capsys)
    schedule = load_schedule(out)
    assert sorted(schedule) == [0, 1, 2, 3] and len(losses) == 4
    assert json.loads(out.read_text()).keys() == {"0", "1", "2", "3"}
    stages = scheme_stages(
        "optimized", video_length=10, num_observed_frames=2, max_frames=4, step_size=2, schedule=out, base="hierarchy-2"
    )
    base = scheme_stages("hierarchy-2", video_length=10, num_observed_frames=2, max_frames=4, step_size=2)
    assert [s.latent for s in stages] == [s.latent for s in base]
    assert [list(s.obs) for s in stages] == [schedule[n] for n in range(4)]
    pt = tmp_path / "opt.pt"
    assert (
        run_cli(
            "schemes",
            "optimize",
            str(trained_run),
            *"--base hierarchy-2 --T 10 --n_obs 2 --num_videos 4 --num_timesteps 2 --out".split(),
            str(pt),
        )
        == 0
    )
    assert load_schedule(pt) == schedule


def test_optimize_command_errors(trained_run, tmp_path, capsys):
    for argv, match in [
        (["--out", str(tmp_path / "x.txt")], "must end in .pt or .json"),
        (["--out", str(tmp_path / "x.pt"), "--num_videos", "5"], "multiple of --num_timesteps"),
        (["--out", str(tmp_path / "x.pt"), "--base", "spiral"], "Unknown sampling scheme 'spiral'"),
    ]:
        base = ["--base", "autoreg"] if "--base" not in argv else []
        assert run_cli("schemes", "optimize", str(trained_run), "--T", "10", "--n_obs", "2", *base, *argv) == 2
        assert match in capsys.readouterr().err
