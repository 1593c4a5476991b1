"""`flexvid sample` end to end on a tiny checkpoint: outputs, long videos, resume, errors, viewing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from flexvid.checkpoint import save_weights
from flexvid.cli.main import main as cli_main
from flexvid.config import DataConfig, DiffusionConfig
from flexvid.data.base import build_dataset
from flexvid.errors import ConfigError, DatasetError, SchemeError
from flexvid.nn import UNetVideo
from flexvid.sampling import generate as generate_module
from flexvid.sampling import job as job_module
from flexvid.sampling.job import SampleJob, SampleSettings
from flexvid.sampling.viewing import export_videos
from flexvid.video_io import to_uint8

from helpers import TINY_NETWORK

TRAIN_T = 12


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model_config = dataclasses.replace(TINY_NETWORK, in_channels=1, max_frames=6)
    model = UNetVideo(model_config)
    config = {
        "model": dataclasses.asdict(model_config),
        "diffusion": dataclasses.asdict(DiffusionConfig(diffusion_steps=50)),
        "data": dataclasses.asdict(DataConfig(dataset="moving_mnist", T=TRAIN_T, max_frames=6)),
    }
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_weights(path, model.state_dict(), config)
    return path


def settings(checkpoint, tmp_path, **overrides) -> SampleSettings:
    values = dict(
        checkpoint=str(checkpoint),
        sampling_scheme="hierarchy-2",
        n_obs=2,
        batch_size=2,
        sampler="ddim",
        steps=2,
        eval_dir=str(tmp_path / "eval"),
        stop_index=2,
    )
    values.update(overrides)
    return SampleSettings(**values)


def test_completes_test_videos_and_records_settings(checkpoint, tmp_path):
    job = SampleJob(settings(checkpoint, tmp_path))
    paths = job.run(progress=False)
    assert [p.name for p in paths] == ["sample_0000-0.npy", "sample_0001-0.npy"]
    test_set = build_dataset("moving_mnist", "test", T=TRAIN_T, image_size=16)
    for index, path in enumerate(paths):
        video = np.load(path)
        assert video.shape == (TRAIN_T, 1, 16, 16) and video.dtype == np.uint8
        np.testing.assert_array_equal(video[:2], to_uint8(test_set[index][0][:2]))
    resolved = (tmp_path / "eval" / "settings.json").read_text()
    assert '"dataset": "moving_mnist"' in resolved and '"T": 12' in resolved


def test_long_video_beyond_training_length(checkpoint, tmp_path):
    job = SampleJob(settings(checkpoint, tmp_path, T=3 * TRAIN_T, stop_index=1, sampling_scheme="autoreg"))
    assert len(job.generator.plan) > 1
    video = np.load(job.run(progress=False)[0])
    assert video.shape == (3 * TRAIN_T, 1, 16, 16)
    assert video[TRAIN_T:].std() > 0


def test_interrupted_job_completes_the_rest_when_run_again(checkpoint, tmp_path, monkeypatch):
    reference_job = SampleJob(settings(checkpoint, tmp_path / "ref", batch_size=1))
    reference = reference_job.run(progress=False)
    calls_per_video = len(
        reference_job.generator.make_stages(TRAIN_T, 2)
    )  # one call per stage (hierarchy-2 is a chain)
    calls = {"n": 0}
    real = generate_module.make_sample_fn

    def crashing(settings, config):
        diffusion, fn = real(settings, config)

        def sample(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] > calls_per_video + 1:  # dies while generating the second video
                raise KeyboardInterrupt
            return fn(*args, **kwargs)

        return diffusion, sample

    monkeypatch.setattr(generate_module, "make_sample_fn", crashing)
    job = SampleJob(settings(checkpoint, tmp_path, batch_size=1))
    with pytest.raises(KeyboardInterrupt):
        job.run(progress=False)
    samples = tmp_path / "eval" / "samples"
    assert sorted(p.name for p in samples.iterdir()) == ["sample_0000-0.npy"]  # no partial file
    first = (samples / "sample_0000-0.npy").stat().st_mtime_ns
    monkeypatch.setattr(generate_module, "make_sample_fn", real)
    paths = SampleJob(settings(checkpoint, tmp_path, batch_size=1)).run(progress=False)
    assert (samples / "sample_0000-0.npy").stat().st_mtime_ns == first
    for done, expected in zip(paths, reference, strict=True):
        np.testing.assert_array_equal(np.load(done), np.load(expected))


def test_bad_input_gets_one_sentence(checkpoint, tmp_path):
    with pytest.raises(SchemeError, match="hierarchy-2"):
        SampleJob(settings(checkpoint, tmp_path, sampling_scheme="hierarchy-9"))
    with pytest.raises(ConfigError, match="n_obs"):
        SampleJob(settings(checkpoint, tmp_path, n_obs=20, T=10))
    with pytest.raises(ConfigError, match=f"more than the {TRAIN_T} frames of each test video"):
        SampleJob(settings(checkpoint, tmp_path, n_obs=TRAIN_T + 2, T=3 * TRAIN_T))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="--eval_dir"):
        SampleJob(settings(checkpoint, tmp_path, eval_dir=str(blocker / "eval"))).run(progress=False)


def test_missing_dataset_suggests_unconditional_sampling(checkpoint, tmp_path):
    pretrained = job_module.load_pretrained(checkpoint)
    pretrained.config = dataclasses.replace(
        pretrained.config, data=dataclasses.replace(pretrained.config.data, dataset="mazes")
    )
    with pytest.raises(DatasetError, match="--n_obs 0"):
        SampleJob(settings(checkpoint, tmp_path, data_dir=str(tmp_path / "nowhere")), pretrained)
    unconditional = SampleJob(
        settings(checkpoint, tmp_path, n_obs=0, stop_index=1, sampling_scheme="autoreg"), pretrained
    )
    assert np.load(unconditional.run(progress=False)[0]).shape == (TRAIN_T, 1, 16, 16)


def test_cli_sample_then_video(checkpoint, tmp_path, capsys):
    eval_dir = tmp_path / "cli"
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            [
                "sample",
                str(checkpoint),
                "--sampling_scheme",
                "autoreg",
                "--n_obs",
                "2",
                "--batch_size",
                "1",
                "--sampler",
                "ddim",
                "--steps",
                "2",
                "--eval_dir",
                str(eval_dir),
            ]
        )
    assert exit_info.value.code == 0
    written = export_videos(eval_dir)
    names = {p.name for p in written}
    assert {"sample_0000-0.mp4", "sample_0000-0.gif", "grid.mp4", "grid.gif"} <= names
    assert all(p.stat().st_size > 0 for p in written)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["sample", str(checkpoint), "--sampling_scheme", "nope", "--n_obs", "2", "--eval_dir", str(eval_dir)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "nope" in err and "autoreg" in err and "Traceback" not in err


def test_what_the_job_writes_the_evaluation_readers_find(checkpoint, tmp_path):
    """Writer -> readers through flexvid.eval_layout: the job's files are the samples and settings they read."""
    from flexvid.eval.eval_dir import GroundTruth, available_samples, paired_videos, read_settings
    from flexvid.eval_layout import partial_samples, sample_files, settings_path
    from flexvid.sampling.identity import recorded_identity

    for sample_idx in (0, 1):
        job = SampleJob(settings(checkpoint, tmp_path, sample_idx=sample_idx))
        written = job.run(progress=False)
    assert [s.path for s in sample_files(job.eval_dir) if s.sample == 1] == written
    assert available_samples(job.eval_dir) == {0: [0, 1], 1: [0, 1]} and partial_samples(job.eval_dir) == []
    assert settings_path(job.eval_dir).is_file() and recorded_identity(job.eval_dir) == job.identity
    settings_read = read_settings(job.eval_dir)
    assert (settings_read.T, settings_read.n_obs, settings_read.max_frames) == (TRAIN_T, 2, 6)
    pairs = list(paired_videos(job.eval_dir, GroundTruth(settings_read), 2, [0, 1]))
    assert [index for index, _, samples in pairs if len(samples) == 2] == [0, 1]
