"""Weights files: flexvid's safetensors+JSON format and the authors' `.pt` format.

A flexvid weights directory holds `model.safetensors` (optionally `ema_<rate>.safetensors`) and
`config.json`; every `.safetensors` file also carries the config JSON (a `RunConfig.to_dict`, plus
the training `step` when one is recorded) in its metadata, so a single file rebuilds the model.
Training run directories (flexvid.training.checkpointing) and `load_pretrained` build on this module.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from flexvid.config import ArchitectureConfig, DataConfig, DiffusionConfig, ModelConfig
from flexvid.errors import CheckpointError, ConfigError
from flexvid.files import atomic_write, atomic_write_json
from flexvid.run_config import RunConfig

MODEL_FILENAME = "model.safetensors"
CONFIG_FILENAME = "config.json"
EMA_PREFIX = "ema_"
CONFIG_METADATA_KEY = "flexvid_config"
FORMAT_METADATA_KEY = "format"
FORMAT_NAME = "flexvid"
STEP_KEY = "step"  # the training step, next to the config sections in the config JSON

# Dataset names of the authors' code -> flexvid dataset names.
REFERENCE_DATASETS = {
    "mazes_cwvae": "mazes",
    "minerl": "minerl",
    "carla_no_traffic": "carla_no_traffic",
}

_MAX_LISTED_MISMATCHES = 3


@dataclass(frozen=True)
class Weights:
    """A weights file's tensors, the config they belong to and, when recorded, their training step."""

    state_dict: dict[str, torch.Tensor]
    config: RunConfig
    step: int | None = None


def ema_filename(rate: float) -> str:
    """`ema_<rate>.safetensors`, e.g. ema_0.9999.safetensors."""
    return f"{EMA_PREFIX}{rate}.safetensors"


def _config_json(config: RunConfig | Mapping[str, Any], step: int | None) -> dict[str, Any]:
    """The config JSON of a weights file: the config's sections (a mapping is checked by reading it as a
    RunConfig) and the step when given."""
    if not isinstance(config, RunConfig):
        config = RunConfig.from_dict(config)
    values = config.to_dict()
    return values if step is None else {**values, STEP_KEY: step}


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
            raise RuntimeError(
                f"re-encoding the safetensors header of {file} grew it from {length} to {len(encoded)} bytes"
            )
        handle.seek(8)
        handle.write(encoded.ljust(length, b" "))


def _first_non_finite(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, or None."""
    for name, tensor in state_dict.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def save_weights(
    path: str | Path,
    state_dict: Mapping[str, torch.Tensor],
    config: RunConfig | Mapping[str, Any],
    *,
    step: int | None = None,
) -> Path:
    """Write weights with their config (and training `step`), atomically; returns the `.safetensors` file.

    `path` ending in `.safetensors` writes that one file; any other path is a weights directory that
    receives `model.safetensors` and `config.json`. `config` is a RunConfig or a dict of its sections.
    """
    path = Path(path)
    values = _config_json(config, step)
    if path.suffix == ".safetensors":
        _write_safetensors(path, state_dict, values)
        return path
    _write_safetensors(path / MODEL_FILENAME, state_dict, values)
    atomic_write_json(path / CONFIG_FILENAME, values)
    return path / MODEL_FILENAME


def is_safetensors(file: Path) -> bool:
    """True when the file starts like a safetensors file (8-byte header length, then a JSON object)."""
    with open(file, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return struct.unpack("<Q", head[:8])[0] < file.stat().st_size


def _read_safetensors(file: Path, device: str | torch.device) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, config JSON) of one of our `.safetensors` files."""
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
    """The `.safetensors` file to read from a weights directory: the highest-rate EMA or the model."""
    emas = sorted(path.glob(f"{EMA_PREFIX}*.safetensors"), key=lambda p: _ema_rate(p.stem))
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
        return float(stem.removeprefix(EMA_PREFIX))
    except ValueError:
        return -1.0


def load_weights(path: str | Path, *, device: str | torch.device = "cpu", use_ema: bool = False) -> Weights:
    """The weights, config and step of a flexvid weights directory or `.safetensors` file, or of an authors' `.pt`.

    In a directory, `use_ema` picks the highest-rate `ema_<rate>.safetensors` when there is one.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    file = _weights_file(path, use_ema) if path.is_dir() else path
    if not is_safetensors(file):
        return _load_reference_pt(file, device)
    state_dict, values = _read_safetensors(file, device)
    if path.is_dir() and (path / CONFIG_FILENAME).is_file():
        _check_config_json(path / CONFIG_FILENAME, values, file)
    step = values.pop(STEP_KEY, None)
    try:
        config = RunConfig.from_dict(values)
    except ConfigError as err:
        raise CheckpointError(f"The config in {file} is unusable: {err}") from None
    return Weights(state_dict, config, step)


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


def config_from_reference(flat: Mapping[str, Any]) -> RunConfig:
    """Our config from the authors' flat argparse dict (as stored in their `.pt` files); no train section."""
    defaults = {**vars(DiffusionConfig()), **vars(ModelConfig())}
    given = {name: flat.get(name, default) for name, default in defaults.items()}
    resolutions = given["attention_resolutions"]
    if isinstance(resolutions, str):
        resolutions = [int(r) for r in resolutions.split(",") if r.strip()]
    architecture = {name: given[name] for name in vars(ArchitectureConfig())}
    architecture.update(channel_mult=None, attention_resolutions=resolutions)  # channel_mult: by image size
    dataset = str(flat.get("dataset", DataConfig.dataset))
    return RunConfig.from_dict(
        {
            "model": architecture,
            "diffusion": {name: given[name] for name in vars(DiffusionConfig())},
            "data": {
                "dataset": REFERENCE_DATASETS.get(dataset, dataset),
                "T": flat.get("T"),
                "image_size": given["image_size"],
                "channels": 3,
                "max_frames": given["max_frames"],
            },
        }
    )


def _load_reference_pt(file: Path, device: str | torch.device) -> Weights:
    """The weights, our config and step of an authors' `.pt` checkpoint, loaded with weights_only=True."""
    try:
        payload = torch.load(file, map_location=device, weights_only=True)
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
    try:
        config = config_from_reference(payload["config"])
    except ConfigError as err:
        raise CheckpointError(f"The config in {file} is unusable: {err}") from None
    step = payload.get("step")
    return Weights(payload["state_dict"], config, int(step) if step is not None else None)


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
        raise CheckpointError(f"The weights in {source} do not match the network its config describes: {listed}{tail}.")


__all__ = [
    "CONFIG_FILENAME",
    "MODEL_FILENAME",
    "Weights",
    "check_state_dict",
    "config_from_reference",
    "ema_filename",
    "is_safetensors",
    "load_weights",
    "save_weights",
]
