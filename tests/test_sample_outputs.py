"""Output folders of `flexvid sample` you can trust: other settings are refused, never mixed in; resuming with
the same settings adds videos; default folders differ for different checkpoints and settings; the README chains."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from flexvid.errors import ConfigError
from flexvid.sampling.identity import checkpoint_label
from flexvid.sampling.job import SampleJob, SampleSettings

from helpers import save_sampling_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two runs' checkpoints/step_0000010, with different weights."""
    root = tmp_path_factory.mktemp("runs")
    return [
        save_sampling_checkpoint(root / run / "checkpoints" / "step_0000010", seed=seed)
        for seed, run in enumerate(("run_a", "run_b"))
    ]


def settings(checkpoint: Path, eval_dir: Path | None, **overrides) -> SampleSettings:
    values = dict(
        checkpoint=str(checkpoint),
        sampling_scheme="hierarchy-2",
        n_obs=2,
        batch_size=2,
        stop_index=2,
        sampler="ddim",
        steps=2,
        eval_dir=None if eval_dir is None else str(eval_dir),
    )
    return SampleSettings(**{**values, **overrides})


def folder_state(eval_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((eval_dir / "samples").iterdir())} | {
        "settings.json": (eval_dir / "settings.json").read_bytes()
    }


@pytest.mark.parametrize(
    "change, named",
    [
        ({"seed": 1}, "seed"),
        ({"eta": 0.5}, "eta"),
        ({"steps": 3}, "steps"),
        ({"sampler": "ddpm"}, "sampler"),
        ({"precision": "bf16"}, "precision"),
        ({"sampling_scheme": "autoreg"}, "sampling_scheme"),
        ({"n_obs": 3}, "n_obs"),
        ({"checkpoint": "other"}, "checkpoint_sha256"),
        ({"T": 14}, "T"),
    ],
)
def test_other_settings_are_refused_and_nothing_is_written(checkpoints, tmp_path, change, named):
    eval_dir = tmp_path / "eval"
    SampleJob(settings(checkpoints[0], eval_dir)).run(progress=False)
    before = folder_state(eval_dir)
    change = {"checkpoint": str(checkpoints[1])} if change.get("checkpoint") == "other" else change
    job = SampleJob(settings(**{"checkpoint": checkpoints[0], "eval_dir": eval_dir, "stop_index": 3, **change}))
    with pytest.raises(ConfigError, match=rf"{eval_dir} holds videos made with other settings \(.*{named} .* there, "):
        job.run(progress=False)
    with pytest.raises(ConfigError, match="write to another folder, or give the same settings"):
        job.run(progress=False)
    assert folder_state(eval_dir) == before


def test_the_same_settings_resume_and_add_videos(checkpoints, tmp_path):
    eval_dir = tmp_path / "eval"
    first = SampleJob(settings(checkpoints[0], eval_dir)).run(progress=False)
    kept = {p.name: p.stat().st_mtime_ns for p in first}
    identity = json.loads((eval_dir / "settings.json").read_text())["identity"]
    # Batch size, range of videos and sample index do not change a video, so they may differ.
    more = SampleJob(settings(checkpoints[0], eval_dir, batch_size=1, stop_index=3, max_batch=5)).run(progress=False)
    other_sample = SampleJob(settings(checkpoints[0], eval_dir, sample_idx=1)).run(progress=False)
    assert [p.name for p in more] == ["sample_0000-0.npy", "sample_0001-0.npy", "sample_0002-0.npy"]
    assert {p.name: p.stat().st_mtime_ns for p in more[:2]} == kept
    assert all(p.is_file() for p in other_sample)
    assert json.loads((eval_dir / "settings.json").read_text())["identity"] == identity


def test_a_folder_of_videos_without_recorded_settings_is_refused(checkpoints, tmp_path):
    samples = tmp_path / "eval" / "samples"
    samples.mkdir(parents=True)
    np.save(samples / "sample_0000-0.npy", np.zeros((12, 1, 16, 16), np.uint8))
    with pytest.raises(ConfigError, match="settings were not recorded"):
        SampleJob(settings(checkpoints[0], tmp_path / "eval")).run(progress=False)


def test_default_folders_name_the_run_and_differ_with_any_setting(checkpoints):
    a, b = (SampleJob(settings(c, None)).eval_dir for c in checkpoints)
    assert a.parts[:2] == ("results", "run_a_step_0000010") and b.parts[:2] == ("results", "run_b_step_0000010")
    assert re.fullmatch(r"hierarchy-2_6_3_12_2_ddim2_eta0_seed0_fp32-[0-9a-f]{8}", a.name)
    assert SampleJob(settings(checkpoints[0], None)).eval_dir == a  # the same settings find their folder again
    others = {
        SampleJob(settings(checkpoints[0], None, **change)).eval_dir
        for change in ({"seed": 1}, {"eta": 0.5}, {"steps": 3}, {"precision": "bf16"}, {"chunk_length": 8})
    }
    assert len(others) == 5 and a not in others


@pytest.mark.parametrize(
    "path, label",
    [
        ("runs/my_run", "my_run"),
        ("runs/my_run/checkpoints/step_0000100", "my_run_step_0000100"),
        ("runs/my_run/checkpoints/step_0000100/ema_0.9999.safetensors", "my_run_step_0000100_ema_0.9999"),
        ("pretrained/moving_mnist", "moving_mnist"),
        ("ema_0.9999_550000.pt", "ema_0.9999_550000"),
    ],
)
def test_checkpoint_labels(path, label):
    assert checkpoint_label(path) == label


def quick_start_commands() -> list[list[str]]:
    """The `flexvid` commands of the README's first command block that shows training, as argument lists."""
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", readme, re.S) if "flexvid train" in b)
    lines = block.replace("\\\n", " ").splitlines()  # continuation lines joined
    return [shlex.split(line.split("#")[0]) for line in lines if line.startswith("flexvid ")]


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_the_readme_quick_start_commands_chain():
    commands = {c[1]: c for c in quick_start_commands()}
    assert {"train", "sample", "video", "fvd"} <= set(commands)
    assert commands["sample"][2] == option(commands["train"], "--run_dir")  # sample reads what train wrote
    eval_dir = option(commands["sample"], "--eval_dir")
    assert commands["video"][2] == eval_dir and commands["fvd"][2] == eval_dir  # and they read what sample wrote
