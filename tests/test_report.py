"""`flexvid report`: metric files of several evaluation directories -> one Markdown table and a PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from flexvid.cli.main import main
from flexvid.errors import DatasetError
from flexvid.eval.report import PALETTE, collect_runs, markdown_table, write_report


def _frame_scores(psnr: list[float], lpips: list[float], n_obs: int) -> dict:
    """The layout of `flexvid metrics` output: per group and metric, a per-frame curve and its mean."""

    def group(start: int) -> dict:
        return {
            name: {"per_frame": values[start:], "mean": sum(values[start:]) / len(values[start:])}
            for name, values in (("psnr", psnr), ("lpips", lpips))
        }

    return {
        "latent_frames": group(n_obs),
        "all_frames": group(0),
        "protocol": {"num_videos": 10, "samples_per_video": 5, "lpips": {"computed": True, "version": "v0.1"}},
    }


def _eval_dir(
    root: Path,
    name: str,
    scheme: str,
    *,
    scores: dict | None = None,
    carla: dict | None = None,
    fvd: float | None = None,
    fvd_json: bool = True,
) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    settings = {
        "dataset": "carla_no_traffic",
        "data_dir": "data",
        "T": 4,
        "image_size": 128,
        "n_obs": 1,
        "sampling_scheme": scheme,
        "max_frames": 20,
        "checkpoint": f"checkpoints/{name}/ema_0.9999_550000.pt",
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    if scores is not None:
        (folder / "metrics-10-5.json").write_text(json.dumps(scores))
    if carla is not None:
        (folder / "carla_metrics.json").write_text(json.dumps(carla))
    if fvd is not None:
        (folder / "fvd-10-0.txt").write_text(f"{fvd}\n")
        if fvd_json:
            protocol = {"num_videos": 10, "observed_frames_included": True, "i3d_weights": {"sha256": "ab12"}}
            (folder / "fvd-10-0.json").write_text(json.dumps({"fvd": fvd, "protocol": protocol}))
    return folder


@pytest.fixture()
def results(tmp_path) -> Path:
    root = tmp_path / "results"
    _eval_dir(
        root,
        "fdm/hierarchy-2",
        "hierarchy-2",
        scores=_frame_scores([90, 24, 22, 20], [0, 0.1, 0.2, 0.3], 1),
        carla={"WD": 0.8, "OP": 0.5, "protocol": {"frame_gap": 10, "num_speeds": 990}},
        fvd=120.0,
    )
    _eval_dir(
        root,
        "fdm/autoreg",
        "autoreg",
        scores=_frame_scores([90, 22, 19, 16], [0, 0.2, 0.3, 0.4], 1),
        carla={"WD": 1.9, "OP": 4.0, "protocol": {"frame_gap": 10, "num_speeds": 980}},
        fvd=250.0,
    )
    _eval_dir(root, "other/long-range", "long-range", fvd=180.0, fvd_json=False)
    return root


def test_runs_gather_scalars_curves_and_protocols(results):
    runs = {run.label: run for run in collect_runs(results)}
    assert sorted(runs) == ["fdm/autoreg", "fdm/hierarchy-2", "other/long-range"]
    hier = runs["fdm/hierarchy-2"]
    assert hier.scalars == pytest.approx(
        {
            "FVD": 120.0,
            "OP": 0.5,
            "WD": 0.8,
            "latent_frames.psnr": 22.0,
            "latent_frames.lpips": 0.2,
            "all_frames.psnr": 39.0,
            "all_frames.lpips": 0.15,
        }
    )
    # The latent-frame curves start at frame n_obs, so only the whole-video curves are plotted.
    assert hier.series == {"all_frames.psnr": [90, 24, 22, 20], "all_frames.lpips": [0, 0.1, 0.2, 0.3]}
    assert hier.protocols["metrics-<N>-<k>.json"]["lpips"] == {"computed": True, "version": "v0.1"}
    assert hier.protocols["fvd-<N>-<k>.json"]["observed_frames_included"] is True
    assert runs["other/long-range"].scalars == {"FVD": 180.0}  # from the .txt alone


def test_markdown_table_marks_the_best_and_states_the_protocol(results):
    text = markdown_table(collect_runs(results))
    lines = text.splitlines()
    header = lines[0]
    for column in ("run", "scheme", "latent_frames.psnr ↑", "latent_frames.lpips ↓", "WD ↓", "OP ↓", "FVD ↓"):
        assert f" {column} |" in header
    assert header.split(" | ")[5] == "FVD ↓"  # FVD leads, as in the paper's tables
    rows = {line.split(" | ")[0].strip("| "): line for line in lines[2:5]}
    assert "**120**" in rows["fdm/hierarchy-2"] and "**22**" in rows["fdm/hierarchy-2"]
    assert "**0.8**" in rows["fdm/hierarchy-2"] and "| 1.9 |" in rows["fdm/autoreg"]
    assert rows["other/long-range"].count("–") == 6  # four frame scores, WD, OP
    assert "ema_0.9999_550000.pt" in rows["fdm/autoreg"]
    assert "T=4" in text and "image_size=128" in text
    assert "`carla_metrics.json`: frame_gap: 10 (varying per run: num_speeds)" in text
    assert '`metrics-<N>-<k>.json`: num_videos: 10; samples_per_video: 5; lpips: {"computed": true' in text
    assert "`fvd-<N>-<k>.txt`: num_videos: 10" in text


def test_report_command_writes_table_and_plot(results, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(results), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 0
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert markdown in capsys.readouterr().out and "![" in markdown
    image = Image.open(tmp_path / "out" / "report.png").convert("RGB")
    assert image.width >= 400 and image.height >= 300
    colours = {colour for _, colour in image.getcolors(maxcolors=1 << 20)}
    assert set(PALETTE[:3]) <= colours  # a bar or curve for each of the three runs


def test_report_defaults_to_the_results_dir(results):
    markdown, image = write_report(results)
    assert markdown == results / "report.md" and image.is_file()


def test_report_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        write_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No evaluation directories"):
        write_report(tmp_path / "empty")
    _eval_dir(tmp_path / "bare", "run", "autoreg")
    with pytest.raises(DatasetError, match="No metric files"):
        write_report(tmp_path / "bare")
    (tmp_path / "bare" / "run" / "carla_metrics.json").write_text("{not json")
    with pytest.raises(DatasetError, match="Could not read .*carla_metrics.json"):
        write_report(tmp_path / "bare")
