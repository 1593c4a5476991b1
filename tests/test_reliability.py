"""Faults and bad input: failed saves, interrupts, non-finite values, bad flags, damaged run directories."""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import io
import json
import multiprocessing
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from flexvid.checkpoint import load_pretrained, save_weights
from flexvid.cli.main import main
from flexvid.config import DataConfig, DiffusionConfig
from flexvid.data.loader import _init_worker
from flexvid.errors import CheckpointError, ConfigError, DatasetError, DirectoryInUseError
from flexvid.eval.eval_dir import load_video_file
from flexvid.files import atomic_write, exclusive_lock
from flexvid.sampling.job import SampleJob, SampleSettings
from flexvid.training.checkpointing import list_checkpoints, load_checkpoint
from flexvid.training.config import merge_overrides, resolve_run_config
from flexvid.training.trainer import Trainer, TrainingDivergedError

from helpers import TINY_NETWORK, make_eval_dir, randomised, run_cli, tiny_run_config

_PR_GET_PDEATHSIG = 2


def _full_disk(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _second_ctrl_c(*_args, **_kwargs):
    raise KeyboardInterrupt


def _wait_for_no_children(seconds: float = 10.0) -> list:
    deadline = time.monotonic() + seconds
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    return multiprocessing.active_children()


# ----------------------------------------------------------------------------- item 1: no hang at exit


@pytest.mark.parametrize("failure", [_full_disk, _second_ctrl_c])
def test_loader_workers_stop_when_a_save_fails(tmp_path, monkeypatch, failure):
    """A failed save (full disk, second Ctrl-C) must not leave SIGTERM-immune workers for exit to wait on."""
    overrides = tiny_run_config(max_steps=1)
    overrides["data"]["num_workers"] = 1
    trainer = Trainer(resolve_run_config(overrides), tmp_path, out=io.StringIO())
    monkeypatch.setattr("flexvid.training.trainer.save_checkpoint", failure)
    with pytest.raises((OSError, KeyboardInterrupt)) as raised:
        trainer.train()
    assert raised.value is not None  # the traceback (and with it the loader iterator) is still alive
    assert _wait_for_no_children(2.0) == []


_FULL_DISK_TRAIN = """
import errno, io, sys, yaml
import flexvid.training.trainer as trainer
from flexvid.training.config import resolve_run_config
def full(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")
trainer.save_checkpoint = full
config = resolve_run_config(yaml.safe_load(open(sys.argv[1])))
trainer.Trainer(config, sys.argv[2], out=io.StringIO()).train()
"""


def test_training_with_workers_exits_after_an_uncaught_save_error(tmp_path):
    """Python's exit used to wait forever on the SIGTERM-immune workers of the failed run's loader."""
    overrides = tiny_run_config(max_steps=1)
    overrides["data"]["num_workers"] = 1
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(overrides))
    process = subprocess.Popen(
        [sys.executable, "-c", _FULL_DISK_TRAIN, str(preset), str(tmp_path / "run")],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("training hung after a failed checkpoint save")
    assert process.returncode == 1 and "No space left on device" in output, output


def test_cli_reports_a_full_disk_and_an_interrupt_without_a_traceback(tmp_path, monkeypatch, capsys):
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(tiny_run_config(max_steps=1)))
    argv = ["train", "--config", str(preset), "--run_dir", str(tmp_path / "run")]
    monkeypatch.setattr("flexvid.training.trainer.save_checkpoint", _full_disk)
    assert run_cli(*argv) == 2
    assert "error: No space left on device; check that the location" in capsys.readouterr().err
    monkeypatch.setattr("flexvid.training.trainer.save_checkpoint", _second_ctrl_c)
    assert run_cli(*argv) == 128 + signal.SIGINT
    assert "flexvid train: interrupted" in capsys.readouterr().err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux-only")
def test_loader_workers_die_with_their_parent():
    def report(queue) -> None:
        _init_worker(0)
        signum = ctypes.c_int()
        ctypes.CDLL(None).prctl(_PR_GET_PDEATHSIG, ctypes.byref(signum))
        queue.put(signum.value)

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=report, args=(queue,))
    child.start()
    child.join(10)
    assert queue.get(timeout=1) == signal.SIGKILL


# ----------------------------------------------------------------------------- item 3: non-finite values


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("train", "lr", float("inf"), "lr must be a finite number above 0"),
        ("train", "lr", float("nan"), "lr must be a finite number above 0"),
        ("train", "grad_clip", float("nan"), "grad_clip must be a finite number at least 0"),
        ("train", "weight_decay", float("-inf"), "weight_decay must be a finite number at least 0"),
        ("model", "dropout", 2.0, "dropout must be a finite number at least 0.0 and below 1.0"),
        ("model", "num_channels", 0, "num_channels must be an integer at least 1, got 0"),
        ("data", "num_workers", -1, "num_workers must be an integer at least 0, got -1"),
    ],
)
def test_numeric_training_settings_must_be_finite_and_in_range(section, key, value, message):
    with pytest.raises(ConfigError, match=message):
        resolve_run_config(merge_overrides(tiny_run_config(), {section: {key: value}}))


def test_training_never_saves_non_finite_weights(tmp_path):
    trainer = Trainer(resolve_run_config(tiny_run_config()), tmp_path, out=io.StringIO())
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("inf"))
    with pytest.raises(TrainingDivergedError, match="The weights became NaN or infinite at step 0"):
        trainer.save()
    assert list_checkpoints(tmp_path) == []


def test_non_finite_weights_are_neither_saved_nor_loaded(tmp_path):
    model = randomised(TINY_NETWORK)
    config = {"model": dataclasses.asdict(TINY_NETWORK), "diffusion": {}, "data": {}}
    state = {name: t.clone() for name, t in model.state_dict().items()}
    next(iter(state.values())).view(-1)[0] = float("nan")
    with pytest.raises(CheckpointError, match="Refusing to save weights with NaN or infinite values"):
        save_weights(tmp_path / "bad", state, config)
    assert not (tmp_path / "bad" / "model.safetensors").exists()
    good = save_weights(tmp_path / "good.safetensors", model.state_dict(), config)
    tensors = load_file(good)
    next(iter(tensors.values())).view(-1)[0] = float("inf")
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=_metadata(good))
    with pytest.raises(CheckpointError, match="holds NaN or infinite weights"):
        load_pretrained(tmp_path / "bad.safetensors")


def _metadata(file: Path) -> dict:
    with safe_open(str(file), framework="pt") as handle:
        return handle.metadata()


# ----------------------------------------------------------------------------- items 4, 5: sample flags


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch_size", "-1"], "--batch_size must be at least 1, got -1"),
        (["--batch_size", "0"], "--batch_size must be at least 1, got 0"),
        (["--max_batch", "0"], "--max_batch must be at least 1, got 0"),
        (["--steps", "0"], "--steps must be at least 1, got 0"),
        (["--T", "0"], "--T must be at least 1, got 0"),
        (["--max_frames", "0"], "--max_frames must be at least 2, got 0"),
        (["--seed", "-3"], "--seed must be at least 0, got -3"),
        (["--start_index", "-1"], "--start_index must be at least 0, got -1"),
        (["--start_index", "4", "--stop_index", "2"], r"--stop_index \(2\) must be above --start_index \(4\)"),
        (["--sampler", "ddim", "--eta", "nan"], "--eta must be a finite number of at least 0, got nan"),
    ],
)
def test_sample_rejects_flags_that_would_do_other_work_than_asked(tmp_path, capsys, flags, message):
    code = run_cli(
        "sample",
        str(tmp_path / "missing"),
        "--sampling_scheme",
        "autoreg",
        "--eval_dir",
        str(tmp_path / "eval"),
        *flags,
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert re.search(message, err), err
    assert not (tmp_path / "eval").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_sample_on_cuda_without_a_gpu_says_so(tmp_path, capsys):
    assert run_cli("sample", str(tmp_path), "--sampling_scheme", "autoreg", "--device", "cuda") == 2
    assert "no CUDA GPU is available; use --device cpu" in capsys.readouterr().err


# ----------------------------------------------------------------------------- item 5: ordinary user errors


def _eval_dir_with_one_sample(root: Path) -> Path:
    (root / "samples").mkdir(parents=True)
    np.save(root / "samples" / "sample_0000-0.npy", np.zeros((3, 1, 8, 8), dtype=np.uint8))
    return root


def _cli_error(capsys, *argv: str) -> str:
    code = run_cli(*argv)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    return err


def test_unwritable_output_location_is_an_error_not_a_traceback(tmp_path, capsys):
    eval_dir = _eval_dir_with_one_sample(tmp_path / "eval")
    (tmp_path / "file").write_text("not a folder")
    err = _cli_error(capsys, "video", str(eval_dir), "--out_dir", str(tmp_path / "file" / "videos"))
    assert "check that the location exists and is writable" in err


def test_video_rejects_fps_zero(tmp_path, capsys):
    eval_dir = _eval_dir_with_one_sample(tmp_path / "eval")
    assert "fps must be a positive number, got 0.0" in _cli_error(capsys, "video", str(eval_dir), "--fps", "0")


@pytest.mark.parametrize("damage", ["empty", "truncated", "huge_header"])
def test_damaged_sample_files_are_reported(tmp_path, capsys, damage):
    eval_dir = _eval_dir_with_one_sample(tmp_path / "eval")
    path = eval_dir / "samples" / "sample_0000-0.npy"
    data = path.read_bytes()
    damaged = {
        "empty": b"",
        "truncated": data[: len(data) - 40],
        "huge_header": data[:8] + struct.pack("<H", 60000) + data[10:],
    }[damage]
    path.write_bytes(damaged)
    assert "is not a readable .npy array" in _cli_error(capsys, "video", str(eval_dir))
    with pytest.raises(DatasetError, match="is not a readable .npy array"):
        load_video_file(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"train: {lr: fast}\n", "TrainConfig key lr must be a number, got 'fast'"),
        (b"data: {T: '24'}\n", "DataConfig key T must be an integer or null, got '24'"),
        (b"\x89PNG\r\n\x1a\n\xff\xfe\x00", "is not UTF-8 text"),
    ],
)
def test_yaml_of_the_wrong_types_or_binary_is_reported(tmp_path, capsys, text, message):
    preset = tmp_path / "bad.yaml"
    preset.write_bytes(text)
    assert message in _cli_error(capsys, "train", "--config", str(preset), "--run_dir", str(tmp_path / "run"))


# ----------------------------------------------------------------------------- item 8: damage outside the checkpoint


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A run directory with one checkpoint (step 1) of a tiny model."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    config = resolve_run_config(tiny_run_config(max_steps=1, save_interval=1))
    Trainer(config, run_dir, out=io.StringIO()).train()
    return run_dir


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def _resume(run_dir: Path, *flags: str) -> int:
    return run_cli("train", "--resume", str(run_dir), *flags)


def test_unreadable_training_state_never_advises_unsafe_loading(run_copy):
    (checkpoint,) = run_copy.glob("checkpoints/step_*")
    (checkpoint / "training_state.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="unreadable training_state.pt") as raised:
        load_checkpoint(checkpoint, (0.9,))
    assert "weights_only" not in str(raised.value)


def test_resume_survives_a_partial_last_metrics_line(run_copy):
    with open(run_copy / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 2, "lo')
    assert _resume(run_copy, "--max_steps", "2") == 0
    steps = [json.loads(line)["step"] for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


def test_resume_with_an_invalid_config_yaml_says_so(run_copy, capsys):
    (run_copy / "config.yaml").write_text("model: [unclosed\n")
    assert "config.yaml is not valid YAML" in _cli_error(capsys, "train", "--resume", str(run_copy))


def test_resume_with_a_config_yaml_contradicting_the_weights_is_one_sentence(run_copy, capsys):
    config = yaml.safe_load((run_copy / "config.yaml").read_text())
    config["model"]["num_channels"] = 64
    (run_copy / "config.yaml").write_text(yaml.safe_dump(config))
    err = _cli_error(capsys, "train", "--resume", str(run_copy))
    assert "do not match the network its config describes" in err and len(err.splitlines()) == 1


def test_a_checkpoint_directory_given_directly_is_verified(run_copy):
    (checkpoint,) = run_copy.glob("checkpoints/step_*")
    load_pretrained(checkpoint)
    weights = checkpoint / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt model.safetensors"):
        load_pretrained(checkpoint)


def test_a_checkpoint_config_json_contradicting_its_weights_is_an_error(tmp_path):
    config = {"model": dataclasses.asdict(TINY_NETWORK), "diffusion": {}, "data": {}}
    directory = tmp_path / "ckpt"
    save_weights(directory, randomised(TINY_NETWORK).state_dict(), config)
    load_pretrained(directory)
    written = json.loads((directory / "config.json").read_text())
    written["model"]["num_channels"] = 64
    (directory / "config.json").write_text(json.dumps(written))
    contradiction = r"config.json contradicts the config stored in model.safetensors \(sections \['model'\]"
    with pytest.raises(CheckpointError, match=contradiction):
        load_pretrained(directory)


# ----------------------------------------------------------------------------- item 2: directory locks


def test_a_run_directory_in_use_is_refused_naming_its_holder(tmp_path, capsys):
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(tiny_run_config(max_steps=1)))
    run_dir = tmp_path / "run"
    with exclusive_lock(run_dir, "--run_dir"):
        err = _cli_error(capsys, "train", "--config", str(preset), "--run_dir", str(run_dir))
    assert f"{run_dir} is in use by flexvid process {os.getpid()} on " in err and "choose another --run_dir" in err
    assert not (run_dir / "config.yaml").exists() and not (run_dir / "metrics.jsonl").exists()


def _tiny_sample_job(root: Path) -> SampleJob:
    """A job making one unconditional 4-frame video with 2 DDIM steps of a random tiny network."""
    network = dataclasses.replace(TINY_NETWORK, in_channels=1)
    config = {
        "model": dataclasses.asdict(network),
        "diffusion": dataclasses.asdict(DiffusionConfig(diffusion_steps=50)),
        "data": dataclasses.asdict(DataConfig(T=4, max_frames=4)),
    }
    save_weights(root / "ckpt", randomised(network).state_dict(), config)
    return SampleJob(
        SampleSettings(
            checkpoint=str(root / "ckpt"),
            sampling_scheme="autoreg",
            n_obs=0,
            batch_size=1,
            sampler="ddim",
            steps=2,
            eval_dir=str(root / "eval"),
        )
    )


def test_an_evaluation_directory_in_use_is_refused(tmp_path):
    job = _tiny_sample_job(tmp_path)
    with exclusive_lock(job.eval_dir, "--eval_dir"):
        with pytest.raises(DirectoryInUseError, match=f"in use by flexvid process {os.getpid()}"):
            job.run(progress=False)
    assert not list((job.eval_dir / "samples").iterdir())
    (written,) = job.run(progress=False)  # the lock is released with its holder
    assert written.is_file()


def test_a_lock_dies_with_its_holder(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from flexvid.files import exclusive_lock\n"
            "with exclusive_lock(sys.argv[1], '--run_dir'):\n    print('locked', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(DirectoryInUseError, match=f"flexvid process {holder.pid} "):
        with exclusive_lock(tmp_path, "--run_dir"):
            pass
    holder.kill()
    holder.wait()
    with exclusive_lock(tmp_path, "--run_dir"):
        pass


# ----------------------------------------------------------------------------- item 6: scores survive a failed write


def test_metrics_prints_its_scores_before_a_failed_write(tmp_path, capsys):
    rng = np.random.default_rng(0)
    truth = [rng.integers(0, 256, (4, 1, 16, 16), dtype=np.uint8)]
    eval_dir = make_eval_dir(tmp_path, truth, [[truth[0]]], n_obs=2)
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" / "metrics.json"
    code = run_cli("metrics", str(eval_dir), "--gt_dir", str(tmp_path / "gt"), "--no_lpips", "--out", str(out))
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    assert "latent_frames: psnr " in captured.out and f"Could not write the scores to {out}" in captured.err


# ----------------------------------------------------------------------------- item 9: leftovers and long names


def test_stale_checkpoint_temporaries_are_removed_on_start(tmp_path):
    stale = tmp_path / "checkpoints" / ".tmp_step_0000005_k1ll3d"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"partial")
    Trainer(resolve_run_config(tiny_run_config()), tmp_path, out=io.StringIO())
    assert not stale.exists()


def test_sampling_removes_partial_videos_of_a_killed_job(tmp_path):
    job = _tiny_sample_job(tmp_path)
    partial = job.eval_dir / "samples" / ".sample_0000-0.npy.0123456789ab.tmp"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half a video")
    job.run(progress=False)
    assert sorted(p.name for p in partial.parent.iterdir()) == ["sample_0000-0.npy"]


@pytest.mark.parametrize("keep_suffix", [True, False])
def test_names_near_the_length_limit_can_be_written_atomically(tmp_path, keep_suffix):
    path = tmp_path / ("n" * 250 + ".json")
    atomic_write(path, lambda temp: temp.write_text("{}"), keep_suffix=keep_suffix)
    assert path.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_debug_shows_the_traceback_of_a_user_error(tmp_path, monkeypatch, capsys):
    """A user error is one line by default; `flexvid --debug` or FLEXVID_DEBUG=1 raises it with its stack."""
    missing = str(tmp_path / "missing.yaml")
    assert run_cli("train", "--config", missing) == 2
    assert "flexvid train: error: Config file" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="does not exist"):
        main(["--debug", "train", "--config", missing])
    monkeypatch.setenv("FLEXVID_DEBUG", "1")
    with pytest.raises(ConfigError, match="does not exist"):
        main(["train", "--config", missing])
