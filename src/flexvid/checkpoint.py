"""Checkpoints: flexvid's safetensors+JSON format, the authors' `.pt` format, and `load_pretrained`.

A flexvid checkpoint is a directory with `model.safetensors` (optionally `ema_<rate>.safetensors`)
and `config.json`; every `.safetensors` file also carries the config JSON in its metadata, so a
single file rebuilds the model. The config is a dict of sections: "model" (ModelConfig),
"diffusion" (DiffusionConfig), "data" (DataConfig) and any extra sections (e.g. "train"), kept as-is.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from flexvid.config import DataConfig, DiffusionConfig, ModelConfig, dataclass_from_dict
from flexvid.errors import CheckpointError, ConfigError
from flexvid.files import atomic_write, atomic_write_json
from flexvid.nn import UNetVideo

MODEL_FILENAME = "model.safetensors"
CONFIG_FILENAME = "config.json"
CONFIG_METADATA_KEY = "flexvid_config"
FORMAT_METADATA_KEY = "format"
FORMAT_NAME = "flexvid"

# Dataset names of the authors' code -> flexvid dataset names.
REFERENCE_DATASETS = {
    "mazes_cwvae": "mazes",
    "minerl": "minerl",
    "carla_no_traffic": "carla_no_traffic",
}

_MAX_LISTED_MISMATCHES = 3


@dataclass
class Pretrained:
    """A ready network (eval mode) and diffusion process with the config they were built from."""

    model: UNetVideo
    diffusion: Any  # flexvid.diffusion.GaussianDiffusion
    config: dict[str, Any]
    step: int | None = None


def _config_dict(config: Mapping[str, Any] | Any) -> dict[str, Any]:
    """A JSON-ready dict of a config given as a dict of sections or as a dataclass of sections."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    return json.loads(json.dumps(dict(config)))


def _write_safetensors(file: Path, state_dict: Mapping[str, torch.Tensor], config: dict[str, Any]) -> None:
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state_dict.items()}
    broken = _first_non_finite(tensors)
    if broken is not None:
        raise CheckpointError(
            f"Refusing to save weights with NaN or infinite values (first in {broken}) to {file}; the model "
            "diverged, so lower the learning rate or go back to an earlier checkpoint."
        )
    metadata = {FORMAT_METADATA_KEY: FORMAT_NAME, CONFIG_METADATA_KEY: json.dumps(config)}

    def write(temp: Path) -> None:
        save_file(tensors, str(temp), metadata=metadata)
        _sort_metadata(temp)

    atomic_write(file, write)


def _sort_metadata(file: Path) -> None:
    """Rewrite a safetensors header in place with its metadata keys sorted, so that identical weights
    give identical files: the writer keeps the metadata in a hash map, whose order varies between saves."""
    with open(file, "r+b") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        encoded = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(encoded) > length:  # the same entries in another order cannot grow
            raise RuntimeError(f"re-encoding the safetensors header of {file} grew it from {length} to {len(encoded)} bytes")
        handle.seek(8)
        handle.write(encoded.ljust(length, b" "))


def _first_non_finite(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, or None."""
    for name, tensor in state_dict.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def save_weights(
    path: str | Path, state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any] | Any
) -> Path:
    """Write weights with their config, atomically; returns the `.safetensors` file written.

    `path` ending in `.safetensors` writes that one file; any other path is a checkpoint directory
    that receives `model.safetensors` and `config.json`. `config` is a dict of sections
    ("model", "diffusion", "data", ...) or a dataclass holding them.
    """
    path = Path(path)
    config = _config_dict(config)
    if path.suffix == ".safetensors":
        _write_safetensors(path, state_dict, config)
        return path
    _write_safetensors(path / MODEL_FILENAME, state_dict, config)
    atomic_write_json(path / CONFIG_FILENAME, config)
    return path / MODEL_FILENAME


def _is_safetensors(file: Path) -> bool:
    """True when the file starts like a safetensors file (8-byte header length, then a JSON object)."""
    with open(file, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return struct.unpack("<Q", head[:8])[0] < file.stat().st_size


def _read_safetensors(
    file: Path, device: str | torch.device
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        with safe_open(str(file), framework="pt", device=str(device)) as handle:
            metadata = handle.metadata() or {}
            state_dict = {name: handle.get_tensor(name) for name in handle.keys()}
    except SafetensorError as err:
        raise CheckpointError(f"{file} is a damaged safetensors file ({err}).") from None
    broken = _first_non_finite(state_dict)
    if broken is not None:
        raise CheckpointError(
            f"{file} holds NaN or infinite weights (first in {broken}), so it would generate only noise or "
            "black frames; use an earlier checkpoint."
        )
    if CONFIG_METADATA_KEY not in metadata:
        raise CheckpointError(
            f"{file} is a safetensors file without a flexvid config, so it is of an unknown format; "
            "save weights with flexvid.checkpoint.save_weights."
        )
    return state_dict, json.loads(metadata[CONFIG_METADATA_KEY])


def _weights_file(path: Path, use_ema: bool) -> Path:
    """The `.safetensors` file to read from a checkpoint directory: the highest-rate EMA or the model."""
    emas = sorted(path.glob("ema_*.safetensors"), key=lambda p: _ema_rate(p.stem))
    if use_ema and emas:
        return emas[-1]
    if (path / MODEL_FILENAME).is_file():
        return path / MODEL_FILENAME
    raise CheckpointError(
        f"{path} is not a flexvid checkpoint directory (it has no {MODEL_FILENAME}); "
        "give a checkpoint directory, a .safetensors file or an authors' .pt file."
    )


def _ema_rate(stem: str) -> float:
    try:
        return float(stem.removeprefix("ema_"))
    except ValueError:
        return -1.0


def load_weights(
    path: str | Path, *, device: str | torch.device = "cpu", use_ema: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, config) of a flexvid checkpoint directory or `.safetensors` file.

    In a directory, `use_ema` picks the highest-rate `ema_<rate>.safetensors` when there is one.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    file = _weights_file(path, use_ema) if path.is_dir() else path
    if not _is_safetensors(file):
        raise CheckpointError(
            f"{file} is not a safetensors file; give a flexvid checkpoint directory or .safetensors file."
        )
    state_dict, config = _read_safetensors(file, device)
    if path.is_dir() and (path / CONFIG_FILENAME).is_file():
        _check_config_json(path / CONFIG_FILENAME, config, file)
    return state_dict, config


def _check_config_json(config_file: Path, config: dict[str, Any], weights_file: Path) -> None:
    """Raise CheckpointError when a checkpoint's `config.json` contradicts the config inside its weights."""
    try:
        written = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        written = None
    if not isinstance(written, dict):
        raise CheckpointError(f"{config_file} is not a JSON object of config sections; restore or delete it.")
    differing = sorted(name for name in set(config) | set(written) if written.get(name) != config.get(name))
    if differing:
        raise CheckpointError(
            f"{config_file} contradicts the config stored in {weights_file.name} (sections {differing} differ); "
            "restore it or delete it (the weights file's own config is complete)."
        )


def config_from_reference(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Our config sections from the authors' flat argparse dict (as stored in their `.pt` files)."""
    model_defaults = dataclasses.asdict(ModelConfig())
    diffusion_defaults = dataclasses.asdict(DiffusionConfig())
    model = {name: flat.get(name, default) for name, default in model_defaults.items()}
    model["channel_mult"] = None  # the reference always chooses it by image size
    model["in_channels"] = 3
    resolutions = flat.get("attention_resolutions", "16,8")
    if isinstance(resolutions, str):
        resolutions = [int(r) for r in resolutions.split(",") if r.strip()]
    model["attention_resolutions"] = list(resolutions)
    diffusion = {name: flat.get(name, default) for name, default in diffusion_defaults.items()}
    dataset = str(flat.get("dataset", DataConfig.dataset))
    data = dataclasses.asdict(
        DataConfig(
            dataset=REFERENCE_DATASETS.get(dataset, dataset),
            T=flat.get("T"),
            max_frames=flat.get("max_frames", DataConfig.max_frames),
        )
    )
    return {"model": model, "diffusion": diffusion, "data": data}


def _load_reference_pt(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], int | None]:
    """(state_dict, our config, step) of an authors' `.pt` checkpoint, loaded with weights_only=True."""
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for files that are not its pickles
        raise CheckpointError(
            f"{file} is not a checkpoint file that flexvid can read ({type(err).__name__}); give a flexvid "
            "checkpoint directory, a .safetensors file or an authors' .pt file."
        ) from None
    known = isinstance(payload, dict) and all(isinstance(payload.get(k), dict) for k in ("state_dict", "config"))
    if not known:
        found = sorted(map(str, payload))[:5] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{file} is a PyTorch file of an unknown format (found {found}, expected a dict with "
            "'state_dict' and 'config' as saved by the authors' training script)."
        )
    tensors = {name: t for name, t in payload["state_dict"].items() if isinstance(t, torch.Tensor)}
    broken = _first_non_finite(tensors)
    if broken is not None:
        raise CheckpointError(f"{file} holds NaN or infinite weights (first in {broken}); use another checkpoint.")
    step = payload.get("step")
    config = config_from_reference(payload["config"])
    return payload["state_dict"], config, int(step) if step is not None else None


def check_state_dict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError naming the first few keys/shapes where `state_dict` differs from `model`."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    problems = [f"missing {name}" for name in expected if name not in state_dict]
    problems += [f"unexpected {name}" for name in state_dict if name not in expected]
    problems += [
        f"{name} has shape {tuple(t.shape)} instead of {expected[name]}"
        for name, t in state_dict.items()
        if name in expected and tuple(t.shape) != expected[name]
    ]
    if problems:
        listed = "; ".join(problems[:_MAX_LISTED_MISMATCHES])
        more = len(problems) - _MAX_LISTED_MISMATCHES
        tail = f" (and {more} more)" if more > 0 else ""
        raise CheckpointError(
            f"The weights in {source} do not match the network its config describes: {listed}{tail}."
        )


def build_model(config: Mapping[str, Any], source: str = "config") -> UNetVideo:
    """The network described by the "model" section of `config`."""
    try:
        return UNetVideo(dataclass_from_dict(ModelConfig, dict(config["model"])))
    except (ConfigError, KeyError, TypeError) as err:
        raise CheckpointError(f"The model config in {source} is unusable: {err}") from None


def load_pretrained(
    path: str | Path, *, use_ema: bool = True, device: str | torch.device = "cpu"
) -> Pretrained:
    """The network (eval mode, on `device`) and diffusion of a checkpoint, ready to sample.

    `path` is a flexvid checkpoint directory (its highest-rate EMA weights when `use_ema` and
    present), a training run directory (its newest intact checkpoint), a flexvid `.safetensors`
    file, or an authors' `.pt` file (dict with `state_dict`, `config`, `step`), whose argparse
    config is translated by `config_from_reference`.
    """
    from flexvid.diffusion import build_diffusion

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    if path.is_dir() and (path / "checkpoints").is_dir() and not (path / MODEL_FILENAME).exists():
        from flexvid.training.checkpointing import latest_valid_checkpoint

        path = latest_valid_checkpoint(path)  # a training run directory: its newest intact checkpoint
    elif path.is_dir():
        from flexvid.training.checkpointing import MANIFEST_FILENAME, verify_checkpoint

        if (path / MANIFEST_FILENAME).is_file():
            verify_checkpoint(path)  # a training checkpoint: its files must match their checksums
    step = None
    if path.is_dir() or _is_safetensors(path):
        state_dict, config = load_weights(path, use_ema=use_ema)
    else:
        state_dict, config, step = _load_reference_pt(path)
    model = build_model(config, str(path))
    check_state_dict(model, state_dict, str(path))
    model.load_state_dict(state_dict)
    try:
        diffusion = build_diffusion(dataclass_from_dict(DiffusionConfig, dict(config["diffusion"])))
    except (ConfigError, KeyError, TypeError) as err:
        raise CheckpointError(f"The diffusion config in {path} is unusable: {err}") from None
    return Pretrained(model=model.to(device).eval(), diffusion=diffusion, config=config, step=step)
