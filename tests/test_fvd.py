"""FVD: the Fréchet distance math, the I3D network and its weight files, and `flexvid fvd` on a tiny eval dir."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from flexvid.errors import DatasetError, WeightsError
from flexvid.eval import weights as weights_module
from flexvid.eval.fvd import (
    GaussianStats,
    RankDeficientCovarianceWarning,
    embed_videos,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
    paired_features,
)
from flexvid.eval.i3d import (
    MIN_FRAMES,
    InceptionI3D,
    is_torchscript_archive,
    load_i3d,
    preprocess_videos,
    tf_resize_bilinear,
)
from flexvid.eval.weights import download_weights, locate_weights
from flexvid.files import sha256_of

from helpers import make_eval_dir, run_cli

# ---------------------------------------------------------------------------------------------
# Fréchet distance


def stats(mean: np.ndarray, cov: np.ndarray) -> GaussianStats:
    return GaussianStats(np.asarray(mean, dtype=np.float64), np.asarray(cov, dtype=np.float64), count=1000)


def test_diagonal_covariances_match_the_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(stats(mu1, np.diag(a)), stats(mu2, np.diag(b))) == pytest.approx(expected, rel=1e-10)


def test_commuting_covariances_match_the_closed_form():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    a, b = rng.uniform(0.0, 2.0, 5), rng.uniform(0.0, 2.0, 5)
    a[0] = 0.0  # one direction with no variance in the first Gaussian
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(stats(np.zeros(5), q @ np.diag(a) @ q.T), stats(np.zeros(5), q @ np.diag(b) @ q.T))
    assert got == pytest.approx(expected, rel=1e-8, abs=1e-10)


def test_non_commuting_2x2_matches_the_trace_of_sqrt_formula():
    # For a 2x2 matrix M with non-negative eigenvalues, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)).
    s1 = np.array([[2.0, 0.7], [0.7, 1.0]])
    s2 = np.array([[0.5, -0.3], [-0.3, 1.5]])
    product = s1 @ s2
    trace_sqrt = math.sqrt(np.trace(product) + 2 * math.sqrt(np.linalg.det(product)))
    mu1, mu2 = np.array([1.0, -2.0]), np.array([0.5, 0.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    assert frechet_distance(stats(mu1, s1), stats(mu2, s2)) == pytest.approx(expected, rel=1e-10)


def test_random_covariances_agree_with_scipy_sqrtm_when_available():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(7, 7)), rng.normal(size=(7, 7))
    s1, s2 = x @ x.T, y @ y.T
    expected = np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(stats(np.zeros(7), s1), stats(np.zeros(7), s2)) == pytest.approx(expected, rel=1e-8)


def test_statistics_are_float64_mean_and_unbiased_covariance():
    features = np.random.default_rng(3).normal(size=(30, 4)).astype(np.float32)
    result = feature_statistics(torch.from_numpy(features))
    assert result.mean.dtype == np.float64 and result.cov.dtype == np.float64
    np.testing.assert_allclose(result.mean, features.astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.cov, np.cov(features.astype(np.float64), rowvar=False), rtol=1e-12)


def test_identical_sets_give_zero_and_shifted_sets_the_squared_shift_even_when_rank_deficient():
    features = np.random.default_rng(4).normal(size=(10, 40))
    with pytest.warns(RankDeficientCovarianceWarning, match="rank-deficient"):
        same = frechet_distance_from_features(features, features.copy())
    assert same == pytest.approx(0.0, abs=1e-6)
    shift = np.full(40, 0.25)
    with pytest.warns(RankDeficientCovarianceWarning):
        shifted = frechet_distance_from_features(features, features + shift)
    assert np.isfinite(shifted) and shifted == pytest.approx(float(shift @ shift), rel=1e-6)


def test_enough_samples_do_not_warn(recwarn):
    features = np.random.default_rng(5).normal(size=(50, 8))
    frechet_distance_from_features(features, features + 1)
    assert not [w for w in recwarn if issubclass(w.category, RankDeficientCovarianceWarning)]


def test_feature_dimension_mismatch_is_an_error():
    with pytest.raises(DatasetError, match="Feature dimensions differ"):
        frechet_distance(stats(np.zeros(3), np.eye(3)), stats(np.zeros(4), np.eye(4)))


# ---------------------------------------------------------------------------------------------
# I3D network and preprocessing


def test_tf_resize_bilinear_uses_tf1_corner_alignment():
    # TF1 resize_bilinear (no half-pixel centres) samples input coordinate i * in/out and repeats the edge.
    frame = torch.tensor([[[[0.0, 10.0], [20.0, 30.0]]]])
    up = tf_resize_bilinear(frame, 4)[0, 0]
    assert torch.equal(up[0], torch.tensor([0.0, 5.0, 10.0, 10.0]))
    assert torch.equal(up[:, 0], torch.tensor([0.0, 10.0, 20.0, 20.0]))
    big = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(tf_resize_bilinear(big, 2)[0, 0], torch.tensor([[0.0, 2.0], [8.0, 10.0]]))


def test_preprocessing_gives_224_frames_in_minus_one_to_one_and_repeats_gray_channels():
    videos = torch.randint(0, 256, (2, MIN_FRAMES, 1, 12, 20), dtype=torch.uint8)
    videos[0, 0] = 0
    videos[1, 0] = 255
    x = preprocess_videos(videos)
    assert x.shape == (2, 3, MIN_FRAMES, 224, 224)
    assert x[0, :, 0].eq(-1).all() and x[1, :, 0].eq(1).all()
    assert torch.equal(x[:, 0], x[:, 2])


def test_videos_shorter_than_i3d_accepts_are_an_error():
    with pytest.raises(DatasetError, match=f"at least {MIN_FRAMES} frames"):
        preprocess_videos(torch.zeros(1, MIN_FRAMES - 1, 3, 8, 8, dtype=torch.uint8))


def test_state_dict_uses_the_videogpt_tats_module_names():
    keys = InceptionI3D().state_dict().keys()
    for name in (
        "Conv3d_1a_7x7.conv3d.weight",
        "Conv3d_1a_7x7.bn.running_var",
        "Conv3d_2c_3x3.conv3d.weight",
        "Mixed_3b.b1b.conv3d.weight",
        "Mixed_4f.b2a.bn.bias",
        "Mixed_5c.b3b.conv3d.weight",
        "logits.conv3d.weight",
        "logits.conv3d.bias",
    ):
        assert name in keys
    assert sum(k.endswith("conv3d.weight") for k in keys) == 3 + 9 * 6 + 1
    assert not any("b3a" in k or "MaxPool" in k for k in keys)


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory) -> Path:
    """A state dict of a randomly initialised I3D, saved as a user's i3d_pretrained_400.pt would be."""
    torch.manual_seed(0)
    model = InceptionI3D()
    for module in model.modules():  # non-trivial batch-norm statistics, as trained weights have
        if isinstance(module, nn.BatchNorm3d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("i3d") / "i3d_random.pt"
    torch.save(model.state_dict(), path)
    return path


def test_network_on_random_weights_gives_400_features_per_video(i3d_file):
    i3d = load_i3d(i3d_file)
    videos = torch.randint(0, 256, (2, MIN_FRAMES, 3, 16, 16), dtype=torch.uint8)
    features = i3d(videos)
    assert features.shape == (2, 400) and features.dtype == torch.float64
    assert torch.isfinite(features).all()
    assert not torch.allclose(features[0], features[1])
    assert i3d.describe() == {
        "format": "state_dict",
        "file": "i3d_random.pt",
        "sha256": sha256_of(i3d_file),
        "checksum_verified": False,
    }


def test_state_dict_without_num_batches_tracked_loads_the_same_weights(i3d_file, tmp_path):
    state = torch.load(i3d_file, weights_only=True)
    old_style = tmp_path / "old.pt"
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, old_style)
    loaded = load_i3d(old_style).network.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.endswith("num_batches_tracked"))


class StyleGANVCallingConvention(nn.Module):
    """A small network with the call signature of StyleGAN-V's i3d_torchscript.pt (x, rescale, resize,
    return_features)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(3, 400))

    def forward(self, x: Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False) -> Tensor:
        if rescale or resize or not return_features:
            raise RuntimeError("flexvid must call the TorchScript I3D on preprocessed input, asking for features")
        return self.head(x)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_file_is_detected_and_called_on_preprocessed_input(i3d_file, tmp_path):
    torch.manual_seed(0)
    network = StyleGANVCallingConvention().eval()
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.save(torch.jit.script(network), str(path))
    assert is_torchscript_archive(path) and not is_torchscript_archive(i3d_file)
    loaded = load_i3d(path)
    videos = torch.randint(0, 256, (2, MIN_FRAMES, 3, 16, 16), dtype=torch.uint8)
    assert loaded.weights_format == "torchscript" and loaded.describe()["sha256"] == sha256_of(path)
    with torch.no_grad():
        expected = network.head(preprocess_videos(videos)).double()
    torch.testing.assert_close(loaded(videos), expected)


def test_wrong_keys_or_shapes_are_a_clear_weights_error(tmp_path):
    wrong_keys = tmp_path / "wrong_keys.pt"
    torch.save({"features.0.weight": torch.zeros(3)}, wrong_keys)
    with pytest.raises(WeightsError, match="VideoGPT/TATS layout.*missing Conv3d"):
        load_i3d(wrong_keys)
    wrong_shape = tmp_path / "wrong_shape.pt"
    state = InceptionI3D(num_classes=10).state_dict()
    torch.save(state, wrong_shape)
    with pytest.raises(WeightsError, match="wrong shape logits.conv3d"):
        load_i3d(wrong_shape)
    not_weights = tmp_path / "text.pt"
    not_weights.write_text("hello")
    with pytest.raises(WeightsError, match="Could not read"):
        load_i3d(not_weights)


def test_missing_weights_say_where_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEXVID_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match=r"No I3D weights found.*flexvid weights install i3d"):
        load_i3d()
    with pytest.raises(WeightsError, match="does not exist"):
        load_i3d(tmp_path / "nowhere.pt")


def test_weights_directory_file_is_found_and_a_wrong_published_hash_is_rejected(tmp_path, monkeypatch, i3d_file):
    monkeypatch.setenv("FLEXVID_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / "i3d_pretrained_400.pt").write_bytes(i3d_file.read_bytes())
    assert load_i3d().describe()["sha256"] == sha256_of(i3d_file)  # no published hash: recorded only
    (tmp_path / "alexnet-owt-7be5be79.pth").write_bytes(b"not the torchvision file")
    with pytest.raises(WeightsError, match="SHA-256 .* starts with 7be5be79"):
        locate_weights("alexnet")


def test_download_checks_the_hash_and_keeps_nothing_on_mismatch(tmp_path):
    good = tmp_path / "source_heads.pth"
    good.write_bytes(b"pretend heads")
    spec = weights_module.WeightSpec(
        name="test-heads", filename="heads.pth", url=good.as_uri(), description="test", sha256=sha256_of(good)
    )
    weights_module.register_weights(spec)
    try:
        target = tmp_path / "weights"
        located = download_weights("test-heads", target)
        assert located.verified and located.path.read_bytes() == b"pretend heads"
        bad = tmp_path / "other.pth"
        bad.write_bytes(b"something else")
        located.path.unlink()
        with pytest.raises(WeightsError, match="nothing was saved"):
            download_weights("test-heads", target, url=bad.as_uri())
        assert list(target.iterdir()) == []
        with pytest.raises(WeightsError, match="Could not download"):
            download_weights("test-heads", target, url=(tmp_path / "absent").as_uri())
    finally:
        del weights_module.WEIGHTS["test-heads"]


# ---------------------------------------------------------------------------------------------
# `flexvid fvd` on a tiny evaluation directory


def random_videos(count: int, frames: int = MIN_FRAMES, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (frames, 3, 16, 16), dtype=np.uint8) for _ in range(count)]


def test_fvd_command_writes_the_score_and_its_protocol(tmp_path, i3d_file, capsys):
    # Samples equal to their test videos: the distance is zero only if each sample meets its own video.
    truth = random_videos(2)
    eval_dir = make_eval_dir(tmp_path, truth, [[video.copy()] for video in truth], n_obs=2)
    with pytest.warns(RankDeficientCovarianceWarning):
        assert run_cli("fvd", str(eval_dir), "--i3d", str(i3d_file), "--gt_dir", str(tmp_path / "gt")) == 0
    text = float((eval_dir / "fvd-2-0.txt").read_text())
    result = json.loads((eval_dir / "fvd-2-0.json").read_text())
    protocol = result["protocol"]
    assert result["fvd"] == text == pytest.approx(0.0, abs=1e-3)
    assert protocol["num_videos"] == 2 and protocol["frames_per_video"] == MIN_FRAMES
    assert protocol["observed_frames_included"] is True and protocol["covariance_rank_deficient"] is True
    assert protocol["video_resolution"] == [16, 16]
    assert protocol["i3d_weights"]["sha256"] == sha256_of(i3d_file)
    assert "FVD" in capsys.readouterr().out


def test_videos_are_embedded_in_batches_and_pairs_keep_samples_apart_from_test_videos():
    calls: list[int] = []

    def embed(videos: Tensor) -> Tensor:  # one feature per video: its first pixel, and the batch size
        calls.append(len(videos))
        return torch.stack([videos[:, 0, 0, 0, 0].double(), torch.full((len(videos),), float(len(videos)))], dim=1)

    videos = [np.full((MIN_FRAMES, 1, 4, 4), value, dtype=np.uint8) for value in range(7)]
    features = embed_videos(embed, videos, batch_size=3)
    assert calls == [3, 3, 1] and features.dtype == np.float64
    assert features[:, 0].tolist() == list(range(7))
    calls.clear()
    samples, references = paired_features(embed, zip(videos[:3], videos[3:6], strict=True), batch_size=4)
    assert calls == [4, 2]  # samples and test videos share calls
    assert samples[:, 0].tolist() == [0, 1, 2] and references[:, 0].tolist() == [3, 4, 5]
    with pytest.raises(DatasetError, match="No videos to embed"):
        embed_videos(embed, [], batch_size=2)


def test_fvd_prints_its_score_before_a_failed_write_and_shows_progress(tmp_path, i3d_file, capsys, monkeypatch):
    import flexvid.cli.fvd as fvd_command

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    truth = random_videos(2)
    eval_dir = make_eval_dir(tmp_path, truth, [[video.copy()] for video in truth], n_obs=2)
    monkeypatch.setattr(fvd_command, "atomic_write_text", full_disk)
    with pytest.warns(RankDeficientCovarianceWarning):
        code = run_cli("fvd", str(eval_dir), "--i3d", str(i3d_file), "--gt_dir", str(tmp_path / "gt"))
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    assert "FVD 0.000 on 2 videos" in captured.out
    assert "No space left on device" in captured.err and "the score is printed above" in captured.err
    assert "I3D features" in captured.err and "4/4" in captured.err  # two samples and two test videos
    assert not list(eval_dir.glob("fvd-*"))


def test_fvd_errors_on_length_mismatch_and_too_few_samples(tmp_path, i3d_file, capsys):
    truth = random_videos(3, frames=MIN_FRAMES + 1)
    eval_dir = make_eval_dir(tmp_path, truth, [[video] for video in random_videos(3)], n_obs=2)
    gt = str(tmp_path / "gt")
    assert run_cli("fvd", str(eval_dir), "--i3d", str(i3d_file), "--gt_dir", gt) == 2
    assert "has shape (9, 3, 16, 16) (T, C, H, W) but test video 0 has (10, 3, 16, 16)" in capsys.readouterr().err
    assert run_cli("fvd", str(eval_dir), "--i3d", str(i3d_file), "--gt_dir", gt, "--num_videos", "5") == 2
    assert "only the first 3 have samples [0]" in capsys.readouterr().err
    assert run_cli("fvd", str(tmp_path), "--i3d", str(i3d_file)) == 2
    assert "settings.json not found" in capsys.readouterr().err


def test_weights_list_shows_what_is_installed_and_what_is_wrong(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLEXVID_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / "alexnet-owt-7be5be79.pth").write_bytes(b"not the torchvision file")
    assert run_cli("weights", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("alexnet-owt-7be5be79.pth" in line and "WRONG CHECKSUM" in line for line in lines)
    assert any("i3d_pretrained_400.pt" in line and "missing" in line for line in lines)


def test_weights_list_reports_the_lpips_heads_shipped_in_the_lpips_wheel(tmp_path, monkeypatch, capsys):
    from flexvid.eval.lpips import wheel_heads_path

    wheel = wheel_heads_path()
    assert wheel is not None, "the lpips wheel is installed by scripts/setup.sh"
    monkeypatch.setenv("FLEXVID_WEIGHTS_DIR", str(tmp_path))
    assert run_cli("weights", "list") == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("lpips-alex"))
    assert f"found in the lpips package ({wheel}), checksum ok" in line
    (tmp_path / "LPIPS_v0.1_alex-df73285e.pth").write_bytes(wheel.read_bytes())  # the weights directory comes first
    assert run_cli("weights", "list") == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("lpips-alex"))
    assert line.endswith("installed, checksum ok")
