"""CARLA position networks (ResNet, classifier + 100-head regressor), their training, and WD/OP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flexvid.errors import DatasetError, WeightsError
from flexvid.eval.carla_metrics import (
    carla_speed_metrics,
    evaluate_eval_dir,
    speeds_from_positions,
    wasserstein_1d,
)
from flexvid.eval.carla_position import (
    build_classifier,
    build_regressor,
    coords_to_cell,
    load_classifier,
    load_position_model,
    load_regressor,
)
from flexvid.eval.carla_train import (
    CarlaFrames,
    TrainConfig,
    augment_frame,
    gaussian_blur,
    hsv_to_rgb,
    rgb_to_hsv,
    shift_hue,
    train_position_network,
)
from flexvid.eval.resnet import build_resnet, infer_resnet_spec, resnet18, resnet50, resnet152

from helpers import run_cli

TINY = dict(arch="resnet18", base_width=4)


# ---------------------------------------------------------------- ResNet


def test_resnet_shapes_and_torchvision_names():
    net = resnet18(num_classes=10, base_width=8).eval()
    x = torch.randn(2, 3, 32, 32)
    assert net(x).shape == (2, 10)
    assert net.forward_features(x).shape == (2, 64)
    bottleneck = resnet50(num_classes=None, base_width=4).eval()
    assert bottleneck(x).shape == (2, 4 * 8 * 4)  # last stage width x expansion 4
    keys = set(net.state_dict())
    for key in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.1.conv2.weight",
        "layer2.0.downsample.0.weight",
        "layer4.0.downsample.1.num_batches_tracked",
        "fc.bias",
    ):
        assert key in keys
    assert "layer1.0.downsample.0.weight" not in keys  # resnet18's first stage keeps its shape


def test_standard_sizes_match_torchvision_parameter_counts():
    # Published torchvision figures: resnet18 11,689,512 and resnet152 60,192,808 parameters.
    net18 = build_resnet("resnet18")
    assert sum(p.numel() for p in net18.parameters()) == 11_689_512
    assert len(net18.state_dict()) == 122
    net152 = resnet152(num_classes=100)
    assert sum(p.numel() for p in net152.parameters()) == 60_192_808 - 1000 * 2049 + 100 * 2049
    assert "layer3.35.conv3.weight" in net152.state_dict()
    assert "layer1.0.downsample.1.running_mean" in net152.state_dict()


def test_state_dict_round_trip_and_spec_inference(tmp_path):
    torch.manual_seed(0)
    net = resnet18(num_classes=7, base_width=4)
    with torch.no_grad():  # non-trivial running statistics, so buffers are exercised too
        net.train()(torch.randn(4, 3, 32, 32))
    path = tmp_path / "net.pth"
    torch.save(net.state_dict(), path)
    state = torch.load(path, weights_only=True)
    spec = infer_resnet_spec(state)
    assert (spec.bottleneck, spec.layers, spec.base_width, spec.num_classes) == (False, (2, 2, 2, 2), 4, 7)
    copy = build_resnet("resnet18", num_classes=7, base_width=4)
    copy.load_state_dict(state)
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(copy.eval()(x), net.eval()(x))


# ---------------------------------------------------------------- position networks


def test_cells_match_a_2d_histogram_of_the_town():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform(-10, 400, size=(200, 2)), [[-10, -10], [400, 400], [31, 399.9], [-10, 400]]])
    for point, cell in zip(points, coords_to_cell(points).tolist(), strict=True):
        counts, _, _ = np.histogram2d([point[0]], [point[1]], bins=10, range=[[-10, 400], [-10, 400]])
        assert counts.ravel().nonzero()[0].tolist() == [cell]
    assert coords_to_cell(np.array([[-50.0, 1000.0]])).tolist() == [9]  # outside: clamped to the border cell


def test_regressor_uses_the_head_of_each_rows_cell():
    torch.manual_seed(0)
    regressor = build_regressor(**TINY).eval()
    images = torch.randn(3, 3, 32, 32)
    cells = torch.tensor([5, 99, 5])
    out = regressor(images, cells)
    features = regressor.resnet(images)
    expected = torch.stack([regressor.regressors[c](f) for c, f in zip(cells.tolist(), features, strict=True)])
    torch.testing.assert_close(out, expected)


def _save_tiny_networks(folder: Path, cell: int | None = None) -> tuple[Path, Path]:
    """Random tiny networks; with `cell`, the classifier always picks it and each head outputs its cell centre."""
    torch.manual_seed(1)
    classifier, regressor = build_classifier(**TINY), build_regressor(**TINY)
    if cell is not None:
        with torch.no_grad():
            classifier.fc.weight.zero_()
            classifier.fc.bias.copy_(torch.nn.functional.one_hot(torch.tensor(cell), 100).float())
            for index, head in enumerate(regressor.regressors):
                head.weight.zero_()
                head.bias.copy_(torch.tensor([-10 + 41 * (index // 10 + 0.5), -10 + 41 * (index % 10 + 0.5)]))
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "classifier_checkpoint.pth", folder / "regressor_checkpoint.pth"
    torch.save(classifier.state_dict(), paths[0])
    torch.save(regressor.state_dict(), paths[1])
    return paths


def test_pipeline_maps_a_video_to_positions_in_the_classifiers_cell(tmp_path):
    model = load_position_model(*_save_tiny_networks(tmp_path, cell=37))
    video = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    coords = model.predict_video(video, batch_size=4)
    assert coords.shape == (6, 2) and coords.dtype == np.float32
    assert ((coords >= -10) & (coords <= 400)).all()
    assert coords_to_cell(coords).tolist() == [37] * 6
    np.testing.assert_allclose(coords, [[-10 + 41 * 3.5, -10 + 41 * 7.5]] * 6)


def test_pipeline_on_random_weights_gives_one_position_per_frame(tmp_path):
    model = load_position_model(*_save_tiny_networks(tmp_path))
    video = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    coords = model.predict_video(video, batch_size=2)
    assert coords.shape == (5, 2) and np.isfinite(coords).all()
    images = (video.float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    positions, cells = model(images)
    assert cells.tolist() == model.classifier(images).argmax(1).tolist()
    np.testing.assert_allclose(coords, positions.numpy(), rtol=1e-5, atol=1e-5)


def test_missing_regressor_weights_say_where_to_get_them(tmp_path, monkeypatch):
    classifier, _ = _save_tiny_networks(tmp_path)
    with pytest.raises(
        WeightsError, match=r"regressor weights not found.*wsgh/fdm/carla-regressor-ckpts/regressor_checkpoint\.pth"
    ):
        load_position_model(classifier, tmp_path / "nowhere" / "regressor_checkpoint.pth")
    monkeypatch.setenv("FLEXVID_WEIGHTS_DIR", str(tmp_path / "weights"))
    with pytest.raises(WeightsError, match=r"classifier weights not found at .*weights/classifier_checkpoint\.pth"):
        load_position_model()


def test_wrong_keys_are_reported(tmp_path):
    classifier, regressor = _save_tiny_networks(tmp_path)
    with pytest.raises(WeightsError, match="no 'regressors.<cell>' heads"):
        load_regressor(classifier)
    with pytest.raises(WeightsError, match="holds regressor weights"):
        load_classifier(regressor)
    state = torch.load(regressor, weights_only=True)
    del state["regressors.42.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(WeightsError, match=r"missing: regressors\.42\.bias; unexpected: extra\.weight"):
        load_regressor(tmp_path / "broken.pth")
    torch.save(build_resnet("resnet18", base_width=4).state_dict(), tmp_path / "imagenet.pth")
    with pytest.raises(WeightsError, match="1000 classifier outputs, not 100"):
        load_classifier(tmp_path / "imagenet.pth")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="no ResNet stem"):
        load_classifier(tmp_path / "other.pth")


# ---------------------------------------------------------------- augmentation


def test_hsv_round_trip_and_hue_rotation():
    image = torch.rand(3, 8, 8)
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(image)), image, atol=1e-5, rtol=0)
    red = torch.zeros(3, 2, 2)
    red[0] = 1.0
    torch.testing.assert_close(shift_hue(red, 1 / 3)[1], torch.ones(2, 2), atol=1e-5, rtol=0)  # red -> green
    grey = torch.full((3, 2, 2), 0.4)
    torch.testing.assert_close(shift_hue(grey, 0.25), grey)


def test_blur_keeps_constants_and_smooths_a_spike():
    constant = torch.full((3, 12, 12), 0.3)
    torch.testing.assert_close(gaussian_blur(constant, 2.0), constant)
    spike = torch.zeros(1, 12, 12)
    spike[0, 6, 6] = 1.0
    blurred = gaussian_blur(spike, 1.0)
    assert blurred[0, 6, 6] < 0.2 and blurred[0, 6, 5] > 0 and blurred[0, 3, 6] > 0  # 9 rows tall, 5 wide
    assert blurred[0, 6, 3] == 0
    out = augment_frame(torch.rand(3, 16, 16), torch.Generator().manual_seed(0))
    assert out.shape == (3, 16, 16) and out.min() >= 0 and out.max() <= 1


# ---------------------------------------------------------------- data and training


def _carla_dir(folder: Path, num_videos: int = 3, T: int = 6, size: int = 32, test: tuple[int, ...] = (2,)) -> Path:
    """A synthetic CARLA directory in the dataset's layout (video_<i>.pt T x H x W x 3, coords_<i>.npy)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(num_videos):
        torch.save(torch.from_numpy(rng.integers(0, 256, (T, size, size, 3), dtype=np.uint8)), folder / f"video_{i}.pt")
        start = rng.uniform(0, 300, size=2)
        coords = np.stack([start + [0.5 * t, 0.0] for t in range(T)])
        np.save(folder / f"coords_{i}.npy", np.concatenate([coords, np.zeros((T, 1))], axis=1))
    train = [i for i in range(num_videos) if i not in test]
    for split, numbers in (("train", train), ("test", test)):
        rows = "".join(f"{n},datasets/carla/no-traffic/video_{n}.pt\n" for n in numbers)
        (folder / f"video_{split}.csv").write_text("index,path\n" + rows)
    return folder


def test_one_epoch_of_classifier_training_saves_loadable_weights(tmp_path):
    data = _carla_dir(tmp_path / "carla")
    out = tmp_path / "out" / "classifier.pth"
    config = TrainConfig(kind="classifier", epochs=1, num_workers=0, **TINY)
    assert config.use_augmentation and not TrainConfig(kind="regressor").use_augmentation
    history = train_position_network(data, out, config, log=lambda _: None)
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"]) and np.isfinite(history[0]["test_loss"])
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["config"]["kind"] == "classifier" and summary["best_test_loss"] == history[0]["test_loss"]
    assert load_classifier(out).spec.base_width == 4


def test_frames_dataset_items_and_coords_mismatch(tmp_path):
    data = _carla_dir(tmp_path / "carla")
    frames = CarlaFrames(data, "train")
    assert len(frames) == 12
    image, position, cell = frames[7]
    coords = np.load(data / "coords_1.npy")
    assert image.shape == (3, 32, 32)
    np.testing.assert_allclose(position.numpy(), coords[1, :2], rtol=1e-6)
    assert int(cell) == int(coords_to_cell(coords[1:2])[0])
    np.save(data / "coords_1.npy", coords[:-1])
    with pytest.raises(DatasetError, match="has 5 positions but its video has 6 frames"):
        CarlaFrames(data, "train")
    (data / "video_test.csv").unlink()
    with pytest.raises(DatasetError, match="video_test.csv not found"):
        CarlaFrames(data, "test")


# ---------------------------------------------------------------- speeds, WD and OP


def _line(speed: float, T: int = 31, fps: float = 10.0, direction=(0.6, 0.8), start=(100.0, 50.0)) -> np.ndarray:
    t = np.arange(T)[:, None] / fps
    return np.asarray(start) + speed * t * np.asarray(direction)


def test_constant_speed_line_gives_that_speed():
    speeds = speeds_from_positions(_line(7.0))
    assert speeds.shape == (21,)
    np.testing.assert_allclose(speeds, 7.0)
    with pytest.raises(DatasetError, match="no pair 10 frames apart"):
        speeds_from_positions(_line(7.0, T=10))


def test_wasserstein_known_answers():
    rng = np.random.default_rng(0)
    a = rng.normal(size=50)
    assert wasserstein_1d(a, a + 2.5) == pytest.approx(2.5)
    assert wasserstein_1d(a, rng.permutation(a)) == pytest.approx(0.0)
    assert wasserstein_1d([0.0, 1.0], [0.0, 0.5, 1.0]) == pytest.approx(1 / 6)
    # Different sizes against the CDF form: integral of |F_a(x) - F_b(x)| dx.
    a, b = rng.normal(size=7), rng.normal(1.0, 2.0, size=11)
    grid = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), grid[:-1], side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid[:-1], side="right") / len(b)
    assert wasserstein_1d(a, b) == pytest.approx(np.sum(np.abs(cdf_a - cdf_b) * np.diff(grid)))


def test_op_counts_fast_speeds_and_wd_ignores_them():
    dataset = [_line(5.0), _line(5.0, direction=(1.0, 0.0))]
    slow = _line(6.0)
    jumpy = _line(6.0)
    jumpy[20:] += [30.0, 0.0]  # a 30 m jump: speeds over the 10 windows spanning frame 19 -> 20 exceed 10 m/s
    result = carla_speed_metrics([slow, jumpy], dataset)
    assert result["OP"] == pytest.approx(100 * 10 / 42)
    assert result["WD"] == pytest.approx(1.0)
    assert result["protocol"]["num_speeds"] == 42 and result["protocol"]["num_dataset_speeds"] == 42
    all_fast = carla_speed_metrics([_line(20.0)], dataset)
    assert all_fast["OP"] == 100.0 and all_fast["WD"] is None


def test_eval_dir_metrics_file_uses_the_settings_data_dir(tmp_path):
    data = tmp_path / "data"
    (data).mkdir()
    for i in range(2):
        np.save(data / f"coords_{i}.npy", np.concatenate([_line(5.0), np.zeros((31, 1))], axis=1))
    eval_dir = tmp_path / "eval"
    (eval_dir / "coords").mkdir(parents=True)
    (eval_dir / "settings.json").write_text(json.dumps({"data_dir": str(data)}))
    np.save(eval_dir / "coords" / "coords_0000-0.npy", _line(8.0))
    result = evaluate_eval_dir(eval_dir)
    written = json.loads((eval_dir / "carla_metrics.json").read_text())
    assert written["WD"] == pytest.approx(3.0) == result["WD"] and written["OP"] == 0.0
    assert written["protocol"]["dataset_coords"] == str(data)
    (data / "predicted_coords").mkdir()
    np.save(data / "predicted_coords" / "coords_0.npy", _line(8.0))
    assert evaluate_eval_dir(eval_dir)["WD"] == pytest.approx(0.0)
    with pytest.raises(DatasetError, match="No coords_"):
        evaluate_eval_dir(tmp_path / "empty", data)
    with pytest.raises(DatasetError, match="no settings.json naming the dataset's data_dir"):
        evaluate_eval_dir(tmp_path / "empty")


# ---------------------------------------------------------------- commands


def test_coords_and_metrics_commands(tmp_path, capsys):
    classifier, regressor = _save_tiny_networks(tmp_path / "weights", cell=55)
    weights = ["--classifier", str(classifier), "--regressor", str(regressor), "--device", "cpu"]
    data = _carla_dir(tmp_path / "carla", T=12)
    eval_dir = tmp_path / "results" / "run"
    (eval_dir / "samples").mkdir(parents=True)
    (eval_dir / "settings.json").write_text(json.dumps({"data_dir": str(data), "T": 12}))
    for name in ("sample_0000-0", "sample_0001-0"):
        np.save(eval_dir / "samples" / f"{name}.npy", np.zeros((12, 3, 32, 32), dtype=np.uint8))
    assert run_cli("carla-coords", str(eval_dir), *weights) == 0
    coords = np.load(eval_dir / "coords" / "coords_0001-0.npy")
    assert coords.shape == (12, 2) and coords_to_cell(coords).tolist() == [55] * 12
    assert run_cli("carla-coords", str(data), *weights, "--split", "test") == 0
    assert sorted(p.name for p in (data / "predicted_coords").iterdir()) == ["coords_2.npy", "position_model.json"]
    assert run_cli("carla-metrics", str(eval_dir)) == 0
    metrics = json.loads((eval_dir / "carla_metrics.json").read_text())
    assert metrics["OP"] == 0.0 and metrics["WD"] == pytest.approx(0.0)  # constant positions on both sides
    provenance = metrics["protocol"]["sample_position_model"]
    assert (
        provenance["regressor"]["file"] == "regressor_checkpoint.pth" and len(provenance["regressor"]["sha256"]) == 64
    )
    np.save(eval_dir / "samples" / "sample_0002-0.npy", np.zeros((12, 32, 32, 3), dtype=np.uint8))
    assert run_cli("carla-coords", str(eval_dir), *weights) == 2
    assert "samples must be uint8 RGB videos of shape (T, 3, H, W)" in capsys.readouterr().err


def test_regressor_training_command(tmp_path):
    data = _carla_dir(tmp_path / "carla")
    out = tmp_path / "reg.pth"
    code = run_cli(
        "carla-regressor",
        "train",
        str(data),
        *"--kind regressor --arch resnet18 --base_width 4 --epochs 1 --num_workers 0 --out".split(),
        str(out),
    )
    assert code == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["config"]["kind"] == "regressor" and np.isfinite(summary["best_test_loss"])
    assert len(load_regressor(out).regressors) == 100


@pytest.mark.slow
def test_full_size_resnet152_pair_loads_and_predicts(tmp_path):
    paths = tmp_path / "classifier_checkpoint.pth", tmp_path / "regressor_checkpoint.pth"
    torch.save(build_classifier().state_dict(), paths[0])
    torch.save(build_regressor().state_dict(), paths[1])
    model = load_position_model(*paths)
    assert model.classifier.spec.layers == (3, 8, 36, 3) and model.regressor.resnet.spec.base_width == 64
    coords = model.predict_video(torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8))
    assert coords.shape == (2, 2) and np.isfinite(coords).all()
