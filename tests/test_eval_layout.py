"""The evaluation-directory layout (flexvid.eval_layout): every name it writes, it reads back."""

from __future__ import annotations

import json

import numpy as np

from flexvid.eval.eval_dir import available_samples
from flexvid.eval.report import collect_runs
from flexvid.eval_layout import (
    fvd_paths,
    fvd_text_files,
    metric_files,
    metric_kind,
    metrics_path,
    parse_fvd_name,
    parse_sample_name,
    partial_samples,
    sample_files,
    sample_path,
    samples_dir,
    settings_path,
)
from flexvid.files import temp_path_beside


def test_sample_names_round_trip(tmp_path):
    for video, sample in [(0, 0), (7, 2), (12345, 11)]:
        path = sample_path(tmp_path, video, sample)
        assert path.parent == samples_dir(tmp_path) and parse_sample_name(path.name) == (video, sample)
    assert sample_path(tmp_path, 3, 1).name == "sample_0003-1.npy"
    for other in ("sample_3-1.npy", "sample_0003-1.npy.tmp", "coords_0003-1.npy", "sample_0003.npy"):
        assert parse_sample_name(other) is None


def test_written_samples_are_found_and_partial_ones_told_apart(tmp_path):
    assert sample_files(tmp_path) == [] and partial_samples(tmp_path) == []
    for video, sample in [(10, 0), (2, 1), (2, 0)]:
        path = sample_path(tmp_path, video, sample)
        path.parent.mkdir(exist_ok=True)
        np.save(path, np.zeros((1, 1, 1, 1), dtype=np.uint8))
    partial = temp_path_beside(sample_path(tmp_path, 3, 0))  # how a video being written is named
    (samples_dir(tmp_path) / "notes.npy").touch()
    assert [(s.video, s.sample) for s in sample_files(tmp_path)] == [(2, 0), (2, 1), (10, 0)]
    assert partial_samples(tmp_path) == [partial]
    assert available_samples(tmp_path) == {2: [0, 1], 10: [0]}


def test_metric_files_are_named_and_read_back(tmp_path):
    eval_dir = tmp_path / "run"
    eval_dir.mkdir()
    settings_path(eval_dir).write_text(json.dumps({"sampling_scheme": "autoreg", "n_obs": 1, "max_frames": 4}))
    text, with_protocol = fvd_paths(eval_dir, 50, 2)
    assert parse_fvd_name(text.name) == parse_fvd_name(with_protocol.name) == (50, 2)
    assert parse_fvd_name(metrics_path(eval_dir, 50, 2).name) is None
    text.write_text("12.5\n")
    metrics_path(eval_dir, 50, 3).write_text(json.dumps({"psnr": {"mean": 20.0}, "protocol": {"num_videos": 50}}))
    assert metric_files(eval_dir) == [metrics_path(eval_dir, 50, 3)] and fvd_text_files(eval_dir) == [text]
    assert metric_kind(metrics_path(eval_dir, 50, 3).name) == "metrics-<N>-<k>.json"
    (run,) = collect_runs(tmp_path)
    assert run.scalars == {"psnr": 20.0, "FVD (sample 2)": 12.5}
    assert set(run.protocols) == {"metrics-<N>-<k>.json", "fvd-<N>-<k>.txt"}
