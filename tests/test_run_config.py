"""The run configuration: one owner per fact, flags generated from the fields, earlier layouts still read,
and the weights / run directory / load_pretrained layering."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import io
import json
import typing
from pathlib import Path

import pytest
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import flexvid
from flexvid import checkpoint, weights
from flexvid.cli import train as train_cli
from flexvid.config import NOISE_SCHEDULES, SCHEDULE_SAMPLERS, TASK_DISTRIBUTIONS, field_type
from flexvid.errors import ConfigError
from flexvid.files import sha256_of
from flexvid.run_config import SECTIONS, RunConfig
from flexvid.sampling.identity import checkpoint_fingerprint
from flexvid.training.checkpointing import latest_valid_checkpoint, list_checkpoints
from flexvid.training.config import load_run_config, load_yaml_config, merge_overrides, resolve_run_config
from flexvid.training.trainer import Trainer

from helpers import run_cli, tiny_run_config

ROOT = Path(__file__).resolve().parents[1]


def parse_train_flags(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- one owner per fact


def test_k_given_once_reaches_the_network_and_the_data(tmp_path):
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(tiny_run_config(max_steps=1)))
    args = parse_train_flags(["--config", str(preset), "--max_frames", "6"])
    config = resolve_run_config(merge_overrides(load_yaml_config(args.config), train_cli.overrides_from_args(args)))
    trainer = Trainer(config, tmp_path / "run", out=io.StringIO())
    assert trainer.model.config.max_frames == 6  # the network (its relative positions span K frames)
    frames = next(iter(trainer.loader))["frames"]
    assert frames.x0.shape[1:3] == (6, 1)  # the data: K frames, and the dataset's one channel
    trainer.train()  # and the network takes what the data gives


def test_learn_sigma_given_once_reaches_the_network_and_the_diffusion():
    config = resolve_run_config(merge_overrides(tiny_run_config(), {"diffusion": {"learn_sigma": True}}))
    assert config.network.learn_sigma and config.diffusion.learn_sigma


def test_dataset_facts_are_filled_in_by_resolve_and_checked():
    config = resolve_run_config({"data": {"dataset": "panorama"}})
    assert (config.data.T, config.data.image_size, config.data.channels) == (64, 32, 3)
    assert config.frame_shape == (3, 32, 32) and config.network.in_channels == 3
    with pytest.raises(ConfigError, match="dataset 'moving_mnist' has 1-channel frames"):
        resolve_run_config(merge_overrides(tiny_run_config(), {"data": {"channels": 3}}))


def test_the_config_is_frozen():
    config = resolve_run_config(tiny_run_config())
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.data.max_frames = 8  # type: ignore[misc]


def test_an_earlier_layouts_two_copies_of_a_fact_must_agree():
    legacy = merge_overrides(tiny_run_config(), {"model": {"max_frames": 4, "learn_sigma": True, "in_channels": 1}})
    config = resolve_run_config(legacy)  # moved to data and diffusion, where they now live
    assert config.data.max_frames == 4 and config.diffusion.learn_sigma and config.data.channels == 1
    with pytest.raises(ConfigError, match=r"model\.max_frames \(8\) contradicts data\.max_frames \(4\)"):
        resolve_run_config(merge_overrides(tiny_run_config(), {"model": {"max_frames": 8}}))


# ----------------------------------------------------------------------------- flags from the fields


def _example_flag(cls: type, f: dataclasses.Field) -> tuple[list[str], object]:
    """Command-line words setting field `f` to a value other than its default, and that value."""
    kind = field_type(cls, f.name)
    if kind is bool:
        return [f"--no_{f.name}" if f.default else f"--{f.name}"], not f.default
    if f.metadata["choices"]:
        value = next(c for c in f.metadata["choices"] if c != f.default)
        return [f"--{f.name}", value], value
    if kind is int:
        return [f"--{f.name}", "7"], 7
    if kind is float:
        return [f"--{f.name}", "0.25"], 0.25
    if kind is str:
        return [f"--{f.name}", "text"], "text"
    item = typing.get_args(kind)[0]  # a comma-separated tuple
    return [f"--{f.name}", "2,3"], [item(2), item(3)]


def test_every_config_field_is_a_flag_of_the_same_name_as_its_yaml_key(tmp_path):
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            argv, value = _example_flag(cls, f)
            from_flags = train_cli.overrides_from_args(parse_train_flags(argv))
            preset = tmp_path / "one.yaml"
            preset.write_text(yaml.safe_dump({section: {f.name: value}}))
            assert from_flags == load_yaml_config(preset) == {section: {f.name: value}}, f.name


def test_train_help_states_each_fields_help_and_default():
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert "--max_frames MAX_FRAMES K: frames per training example and per network call (default: 20)" in text
    assert "--precision {fp32,bf16,fp16}" in text and "--use_rpe_net, --no_use_rpe_net" in text


def test_config_vocabularies_match_the_modules_that_implement_them():
    from flexvid.data.tasks import TASK_DISTRIBUTIONS as distributions
    from flexvid.diffusion.schedules import NOISE_SCHEDULES as schedules
    from flexvid.diffusion.timestep_samplers import SCHEDULE_SAMPLERS as samplers

    assert NOISE_SCHEDULES == tuple(schedules)
    assert SCHEDULE_SAMPLERS == tuple(samplers)
    assert TASK_DISTRIBUTIONS == tuple(distributions)


# ----------------------------------------------------------------------------- earlier layouts still load


@pytest.mark.parametrize(
    ("name", "fingerprint", "K", "step"),
    [
        ("moving_mnist", "60877887451a860d3c28f65f4d7c11c45194ca021c33ecdbfd925bc7bb697faf", 8, 6322),
        ("panorama", "2a304c468f249c87524367e8fde4263e8f2399a25882c6fd3e5e5dfb571633b6", 8, 12595),
    ],
)
def test_shipped_models_load_with_the_identity_their_evaluations_recorded(name, fingerprint, K, step):
    pretrained = flexvid.load_pretrained(ROOT / "pretrained" / name)
    assert pretrained.config.data.max_frames == pretrained.model.config.max_frames == K
    assert pretrained.step == step
    assert checkpoint_fingerprint(pretrained) == fingerprint  # so earlier evaluation folders still match


def _legacy(values: dict) -> dict:
    """A config dict in the layout flexvid wrote before each fact had one home: the network's image size,
    channels, K and learn_sigma in `model` (K and learn_sigma repeated in `data` and `diffusion`)."""
    data = dict(values["data"])
    model = {
        **values["model"],
        "image_size": data.pop("image_size"),
        "in_channels": data.pop("channels"),
        "learn_sigma": values["diffusion"]["learn_sigma"],
        "max_frames": data["max_frames"],
    }
    return {**values, "model": model, "data": data}


def _rewrite_in_legacy_layout(run_dir: Path) -> None:
    """Turn a run directory into one written by the earlier flexvid: config.yaml, every weights file's
    config metadata, config.json and the manifest that checksums them."""
    (run_dir / "config.yaml").write_text(yaml.safe_dump(_legacy(yaml.safe_load((run_dir / "config.yaml").read_text()))))
    for _, checkpoint_dir in list_checkpoints(run_dir):
        for weights_file in checkpoint_dir.glob("*.safetensors"):
            with safe_open(str(weights_file), framework="pt") as handle:
                metadata = handle.metadata()
            metadata["flexvid_config"] = json.dumps(_legacy(json.loads(metadata["flexvid_config"])))
            save_file(load_file(weights_file), str(weights_file), metadata=metadata)
        config_json = checkpoint_dir / "config.json"
        config_json.write_text(json.dumps(_legacy(json.loads(config_json.read_text())), indent=2))
        manifest = json.loads((checkpoint_dir / "manifest.json").read_text())
        for name in manifest["files"]:
            manifest["files"][name] = {
                "bytes": (checkpoint_dir / name).stat().st_size,
                "sha256": sha256_of(checkpoint_dir / name),
            }
        (checkpoint_dir / "manifest.json").write_text(json.dumps(manifest))


def test_a_run_directory_of_the_earlier_layout_loads_and_resumes(tmp_path):
    run_dir = tmp_path / "run"
    config = resolve_run_config(tiny_run_config(max_steps=1, save_interval=1))
    Trainer(config, run_dir, out=io.StringIO()).train()
    _rewrite_in_legacy_layout(run_dir)
    assert "max_frames" in yaml.safe_load((run_dir / "config.yaml").read_text())["model"]

    assert load_run_config(run_dir) == config
    for use_ema in (True, False):
        pretrained = flexvid.load_pretrained(run_dir, use_ema=use_ema)
        assert pretrained.config == config and pretrained.model.config == config.network
    assert run_cli("train", "--resume", str(run_dir), "--max_steps", "2") == 0
    assert latest_valid_checkpoint(run_dir).name == "step_0000002"


def test_a_saved_config_round_trips_and_a_bare_one_leaves_data_and_train_unknown():
    config = resolve_run_config(tiny_run_config())
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    bare = RunConfig.from_dict({"model": _legacy(config.to_dict())["model"], "diffusion": {}})
    assert bare.network == config.network
    assert bare.data.dataset is None and bare.data.T is None and bare.train is None


# ----------------------------------------------------------------------------- module layering


def _flexvid_imports(module: str) -> set[str]:
    """Every flexvid module `module` imports, at the top or inside functions."""
    tree = ast.parse((ROOT / "src" / Path(*module.split("."))).with_suffix(".py").read_text())
    return {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("flexvid")
    }


def test_weights_run_directories_and_load_pretrained_depend_one_way():
    assert not {"flexvid.checkpoint", "flexvid.training.checkpointing"} & _flexvid_imports("flexvid.weights")
    assert "flexvid.checkpoint" not in _flexvid_imports("flexvid.training.checkpointing")
    assert {"flexvid.weights", "flexvid.training.checkpointing"} <= _flexvid_imports("flexvid.checkpoint")
    assert flexvid.load_pretrained is checkpoint.load_pretrained  # the public names still work
    assert (checkpoint.save_weights, checkpoint.load_weights) == (weights.save_weights, weights.load_weights)
