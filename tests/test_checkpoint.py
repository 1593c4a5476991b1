"""Checkpoints: our safetensors+JSON format, the authors' .pt format, load_pretrained, and bad files."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import flexvid
from flexvid.checkpoint import config_from_reference, load_pretrained, load_weights, save_weights
from flexvid.config import ArchitectureConfig, DataConfig, DiffusionConfig, ModelConfig, TrainConfig
from flexvid.diffusion import GaussianDiffusion
from flexvid.errors import CheckpointError
from flexvid.run_config import RunConfig

from helpers import TINY_NETWORK, randomised


def small_inputs(config: ModelConfig) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    k, size = config.max_frames, config.image_size
    obs = torch.zeros(1, k, 1, 1, 1)
    obs[:, 0] = 1
    return {
        "x": torch.randn(1, k, 3, size, size, generator=gen),
        "timesteps": torch.tensor([321]),
        "frame_indices": torch.tensor([[0, 9, 40][:k]]),
        "obs_mask": obs,
        "latent_mask": 1 - obs,
        "x0": torch.randn(1, k, 3, size, size, generator=gen),
    }


TINY = dataclasses.replace(TINY_NETWORK, max_frames=3)


def full_config(model: ModelConfig) -> RunConfig:
    architecture = {name: getattr(model, name) for name in vars(ArchitectureConfig())}
    return RunConfig(
        model=ArchitectureConfig(**architecture),
        diffusion=DiffusionConfig(diffusion_steps=50, noise_schedule="cosine", learn_sigma=model.learn_sigma),
        data=DataConfig(
            dataset="mazes", T=300, image_size=model.image_size, channels=model.in_channels, max_frames=model.max_frames
        ),
        train=TrainConfig(lr=2e-4),
    )


def test_reference_checkpoint_loads_and_reproduces_its_output(reference_dir):
    pretrained = flexvid.load_pretrained(reference_dir / "reference_small.pt")
    assert not pretrained.model.training
    assert isinstance(pretrained.diffusion, GaussianDiffusion)
    assert pretrained.step == 1234
    assert pretrained.config.data == DataConfig(dataset="mazes", T=300, image_size=32, channels=3, max_frames=10)
    assert pretrained.config.model.attention_resolutions == (16, 8)
    assert pretrained.config.train is None
    io = {k: torch.from_numpy(v) for k, v in np.load(reference_dir / "reference_small_io.npz").items()}
    with torch.no_grad():
        out = pretrained.model(
            io["x_t"], io["t"], io["frame_indices"], io["obs_mask"], io["latent_mask"], io["x_start"]
        )
    assert float((out - io["model_output"]).norm() / io["model_output"].norm()) < 1e-5


def test_authors_format_round_trip_at_64x64_with_learned_sigma(tmp_path):
    config = ModelConfig(
        image_size=64,
        num_channels=32,
        num_res_blocks=1,
        num_heads=4,
        num_heads_upsample=2,
        attention_resolutions=(8,),
        learn_sigma=True,
        max_frames=3,
    )
    model = randomised(config, seed=5)
    flat = {  # the authors' argparse namespace, as their training script stores it
        "dataset": "carla_no_traffic",
        "T": 1000,
        "max_frames": 3,
        "image_size": 64,
        "num_channels": 32,
        "num_res_blocks": 1,
        "num_heads": 4,
        "num_heads_upsample": 2,
        "attention_resolutions": "8",
        "dropout": 0.0,
        "learn_sigma": True,
        "sigma_small": False,
        "class_cond": False,
        "diffusion_steps": 1000,
        "noise_schedule": "cosine",
        "timestep_respacing": "",
        "use_kl": False,
        "predict_xstart": False,
        "rescale_timesteps": True,
        "rescale_learned_sigmas": True,
        "use_checkpoint": False,
        "use_scale_shift_norm": True,
        "use_rpe_net": True,
        "lr": 1e-4,
    }
    path = tmp_path / "ema_0.9999_550000.pt"
    torch.save({"state_dict": model.state_dict(), "config": flat, "step": 550000}, path)
    pretrained = load_pretrained(path)
    assert dataclasses.asdict(pretrained.model.config) == dict(dataclasses.asdict(config), attention_resolutions=(8,))
    assert pretrained.config.data.dataset == "carla_no_traffic"
    assert pretrained.config.diffusion.noise_schedule == "cosine"
    assert pretrained.config.diffusion.learn_sigma is True
    inputs = small_inputs(config)
    with torch.no_grad():
        expected = model(**inputs)
        out = pretrained.model(**inputs)
    assert out.shape == (1, 3, 6, 64, 64)
    assert torch.equal(out, expected)


def test_config_from_reference_maps_names_and_fills_defaults():
    config = config_from_reference({"dataset": "mazes_cwvae", "image_size": 32, "attention_resolutions": "32,16,8"})
    assert config.data.dataset == "mazes"
    assert config.model.attention_resolutions == (32, 16, 8)
    assert config.model.num_channels == ModelConfig.num_channels
    assert config.diffusion == DiffusionConfig()
    assert config_from_reference({"dataset": "minerl"}).data.dataset == "minerl"


def test_our_format_round_trip_directory_file_and_ema(tmp_path):
    model = randomised(TINY, seed=1)
    ema = randomised(TINY, seed=2)
    config = full_config(TINY)
    directory = tmp_path / "ckpt"
    save_weights(directory, model.state_dict(), config)
    save_weights(directory / "ema_0.9999.safetensors", ema.state_dict(), config)
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "ema_0.9999.safetensors", "model.safetensors"]
    assert json.loads((directory / "config.json").read_text()) == json.loads(json.dumps(config.to_dict()))

    weights = load_weights(directory)
    assert weights.config == config and weights.config.network == TINY
    assert weights.config.train.lr == 2e-4
    assert all(torch.equal(weights.state_dict[name], t) for name, t in model.state_dict().items())

    inputs = small_inputs(TINY)
    with torch.no_grad():
        for pretrained, source in (
            (load_pretrained(directory, use_ema=False), model),
            (load_pretrained(directory), ema),
            (load_pretrained(directory / "model.safetensors"), model),
        ):
            assert torch.equal(pretrained.model(**inputs), source(**inputs))
            assert pretrained.diffusion.num_timesteps == 50


def test_saving_twice_replaces_atomically(tmp_path):
    config = full_config(TINY)
    first, second = randomised(TINY, seed=1).state_dict(), randomised(TINY, seed=2).state_dict()
    save_weights(tmp_path / "w.safetensors", first, config)
    save_weights(tmp_path / "w.safetensors", second, config)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary files left
    state = load_weights(tmp_path / "w.safetensors").state_dict
    assert torch.equal(state["out.2.weight"], second["out.2.weight"])


def test_non_checkpoint_files_are_rejected(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not weights\n")
    with pytest.raises(CheckpointError, match="is not a checkpoint file that flexvid can read"):
        load_pretrained(text)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pretrained(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        load_pretrained(tmp_path)


def test_checkpoints_of_unknown_format_are_rejected(tmp_path):
    optimizer_state = tmp_path / "opt_1000.pt"
    torch.save({"param_groups": [], "state": {}}, optimizer_state)
    with pytest.raises(CheckpointError, match=r"unknown format \(found \['param_groups', 'state'\]"):
        load_pretrained(optimizer_state)
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))
    with pytest.raises(CheckpointError, match="without a flexvid config, so it is of an unknown format"):
        load_pretrained(bare)


def test_weights_that_do_not_match_their_config_name_the_first_mismatches(tmp_path):
    state = randomised(TINY).state_dict()
    state["time_embed.0.weight"] = torch.zeros(3, 3)
    del state["out.2.bias"]
    for extra in ("a.weight", "b.weight", "c.weight"):
        state[extra] = torch.zeros(1)
    save_weights(tmp_path / "bad", state, full_config(TINY))
    with pytest.raises(CheckpointError) as err:
        load_pretrained(tmp_path / "bad")
    message = str(err.value)
    assert "do not match the network its config describes: missing out.2.bias; unexpected a.weight" in message
    assert message.endswith("(and 2 more).")
    assert "c.weight" not in message and message.count(";") == 2
