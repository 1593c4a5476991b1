"""The full configuration of a training run: model, diffusion, data and training sections.

A run is configured from defaults, then an optional YAML preset (`--config`), then command-line
flags; the resolved result is saved in the run directory so a resumed run rebuilds it exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flexvid.config import DataConfig, DiffusionConfig, ModelConfig, dataclass_from_dict, to_dict
from flexvid.errors import ConfigError
from flexvid.files import atomic_write_text

PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULE_SAMPLERS = ("uniform", "loss-second-moment")
CONFIG_FILENAME = "config.yaml"


@dataclass
class TrainConfig:
    """Optimisation, logging and checkpointing settings of a training run."""

    batch_size: int = 8  # GLOBAL batch: videos per optimiser step summed over all processes
    microbatch: int = 0  # videos per forward/backward pass in each process (0: the whole batch)
    lr: float = 1e-4
    weight_decay: float = 0.0
    lr_anneal_steps: int = 0  # >0: learning rate falls linearly to 0 over this many steps
    ema_rate: tuple[float, ...] = (0.9999,)
    grad_clip: float = 0.0  # >0: clip the global gradient norm to this value
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 uses a gradient scaler)
    schedule_sampler: str = "uniform"  # uniform | loss-second-moment
    task_distribution: str = "fdm"  # training tasks: fdm (the paper's) | uniform | autoregressive
    pad_with_random_frames: bool = True  # fill short examples to K with frames of another video
    observed_share: float | None = None  # share of tasks with observed frames (None: the distribution's own)
    init_from: str | None = None  # start from these weights (checkpoint dir or .safetensors): fine-tuning
    seed: int = 0
    max_steps: int = 10000
    log_interval: int = 10
    save_interval: int = 1000
    sample_interval: int = 1000  # 0: never log sample videos
    sample_steps: int = 20  # DDIM steps for the logged sample videos
    num_sample_videos: int = 2
    keep_checkpoints: int = 3  # how many of the latest checkpoints to keep
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "flexvid"
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class RunConfig:
    """Everything a training run needs; saved as `config.yaml` in the run directory."""

    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """A YAML/JSON-ready nested dict."""
        return _plain(to_dict(self))


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "diffusion": DiffusionConfig,
    "data": DataConfig,
    "train": TrainConfig,
}

# Keys a resumed run may change: they affect bookkeeping, never the numbers the run computes.
RESUMABLE_KEYS = frozenset(
    {
        "train.max_steps",
        "train.microbatch",
        "train.log_interval",
        "train.save_interval",
        "train.sample_interval",
        "train.sample_steps",
        "train.num_sample_videos",
        "train.keep_checkpoints",
        "train.tensorboard",
        "train.wandb",
        "train.wandb_project",
        "train.device",
        "data.num_workers",
        "data.data_dir",
    }
)


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so YAML and JSON round-trip the config."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_yaml_config(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a preset: a YAML mapping with any of the sections model, diffusion, data, train."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist; give an existing YAML file to --config.")
    raw = _read_yaml(path, "fix its syntax")
    if not isinstance(raw, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of sections {sorted(SECTIONS)}.")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(
            f"Config file {path} has unknown sections {unknown}; use only {sorted(SECTIONS)}."
        )
    for name, values in raw.items():
        if not isinstance(values, dict):
            raise ConfigError(f"Section {name!r} of {path} must be a mapping of keys to values.")
    return {name: dict(values or {}) for name, values in raw.items()}


def _read_yaml(path: Path, fix: str) -> Any:
    """The parsed YAML of `path`, or ConfigError (saying to `fix`) for text that is not YAML."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        reason = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else f"not valid YAML ({err})"
        raise ConfigError(f"{path} is {reason}; {fix}.") from None


def merge_overrides(*layers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Merge nested section dicts; later layers win key by key."""
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in layer.items():
            merged.setdefault(section, {}).update(values)
    return merged


def resolve_run_config(overrides: dict[str, dict[str, Any]]) -> RunConfig:
    """Defaults + `overrides` -> a validated RunConfig, with dataset defaults filled in.

    `image_size` and `T` default to the dataset's paper values when not given; `model.max_frames`
    follows `data.max_frames` and `diffusion.learn_sigma` follows `model.learn_sigma`.
    """
    from flexvid.data.base import dataset_spec

    sections = {name: dict(overrides.get(name, {})) for name in SECTIONS}
    config = RunConfig(
        **{name: dataclass_from_dict(cls, sections[name]) for name, cls in SECTIONS.items()}
    )
    spec = dataset_spec(config.data.dataset)
    if "image_size" not in sections["model"]:
        config.model.image_size = spec.default_image_size
    if config.data.T is None:
        config.data.T = spec.default_T
    config.model.max_frames = config.data.max_frames
    config.diffusion.learn_sigma = config.model.learn_sigma
    validate_run_config(config)
    return config


def validate_run_config(config: RunConfig) -> None:
    """Raise ConfigError for values that cannot work together."""
    train, data = config.train, config.data
    if data.T is not None and data.max_frames > data.T:
        raise ConfigError(
            f"max_frames (K={data.max_frames}) is larger than the video length T={data.T}; "
            "lower --max_frames or raise --T."
        )
    if data.max_frames < 2:
        raise ConfigError(f"max_frames must be at least 2, got {data.max_frames}.")
    if train.batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {train.batch_size}.")
    if train.microbatch < 0:
        raise ConfigError(f"microbatch must be 0 (whole batch) or positive, got {train.microbatch}.")
    if train.precision not in PRECISIONS:
        raise ConfigError(f"Unknown precision {train.precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if train.schedule_sampler not in SCHEDULE_SAMPLERS:
        raise ConfigError(
            f"Unknown schedule_sampler {train.schedule_sampler!r}; choose one of "
            f"{', '.join(SCHEDULE_SAMPLERS)}."
        )
    if not train.ema_rate or any(not 0.0 < r < 1.0 for r in train.ema_rate):
        raise ConfigError(f"ema_rate values must lie strictly between 0 and 1, got {list(train.ema_rate)}.")
    for name in ("max_steps", "log_interval", "save_interval"):
        if getattr(train, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(train, name)}.")
    if train.keep_checkpoints < 1:
        raise ConfigError(f"keep_checkpoints must be at least 1, got {train.keep_checkpoints}.")
    model = config.model
    _check_range("lr", train.lr, low=0.0, low_open=True)
    _check_range("weight_decay", train.weight_decay, low=0.0)
    _check_range("grad_clip", train.grad_clip, low=0.0)
    _check_range("dropout", model.dropout, low=0.0, high=1.0)
    for name in ("num_channels", "num_res_blocks", "num_heads", "image_size"):
        _check_range(name, getattr(model, name), low=1)
    _check_range("diffusion_steps", config.diffusion.diffusion_steps, low=1)
    _check_range("num_workers", data.num_workers, low=0)
    for name in ("lr_anneal_steps", "sample_interval"):
        _check_range(name, getattr(train, name), low=0)
    for name in ("sample_steps", "num_sample_videos"):
        _check_range(name, getattr(train, name), low=1)


def _check_range(name: str, value: float, *, low: float, high: float | None = None, low_open: bool = False) -> None:
    """Raise ConfigError unless `value` is finite and in [low, high) (or (low, high) with `low_open`)."""
    too_low = value <= low if low_open else value < low
    if not math.isfinite(value) or too_low or (high is not None and value >= high):
        bound = "above" if low_open else "at least"
        span = f"{bound} {low}" + (f" and below {high}" if high is not None else "")
        kind = "an integer" if isinstance(value, int) else "a finite number"
        raise ConfigError(f"{name} must be {kind} {span}, got {value}; fix --{name}.")


def run_config_from_dict(values: dict[str, Any]) -> RunConfig:
    """Rebuild a RunConfig saved with `RunConfig.to_dict`."""
    unknown = sorted(set(values) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"Saved config has unknown sections {unknown}; it was not written by flexvid.")
    return RunConfig(
        **{name: dataclass_from_dict(cls, dict(values.get(name, {}))) for name, cls in SECTIONS.items()}
    )


def save_run_config(config: RunConfig, run_dir: str | Path) -> Path:
    """Write the resolved config to `run_dir/config.yaml` atomically."""
    return atomic_write_text(Path(run_dir) / CONFIG_FILENAME, yaml.safe_dump(config.to_dict(), sort_keys=False))


def load_run_config(run_dir: str | Path) -> RunConfig:
    """Read `run_dir/config.yaml` written by `save_run_config`."""
    path = Path(run_dir) / CONFIG_FILENAME
    if not path.is_file():
        raise ConfigError(f"{path} is missing; {run_dir} is not a flexvid run directory.")
    fix = "restore it from the config.json of one of the run's checkpoints"
    values = _read_yaml(path, fix)
    if not isinstance(values, dict) or not all(isinstance(v, dict) for v in values.values()):
        raise ConfigError(f"{path} is not a mapping of config sections; {fix}.")
    try:
        return run_config_from_dict(values)
    except ConfigError as err:
        raise ConfigError(f"{path} is invalid ({err}); {fix}.") from None


def conflicting_keys(saved: RunConfig, overrides: dict[str, dict[str, Any]]) -> list[str]:
    """Keys in `overrides` that a resumed run may not change and that differ from `saved`.

    Each entry reads `section.key (saved X, given Y)`.
    """
    saved_dict = saved.to_dict()
    conflicts = []
    for section, values in overrides.items():
        for key, value in values.items():
            name = f"{section}.{key}"
            if name in RESUMABLE_KEYS or key not in saved_dict.get(section, {}):
                continue
            old = saved_dict[section][key]
            if _plain(value) != old and not (section == "model" and key == "max_frames"):
                conflicts.append(f"{name} (saved {old!r}, given {_plain(value)!r})")
    return conflicts


def apply_resumable_overrides(saved: RunConfig, overrides: dict[str, dict[str, Any]]) -> RunConfig:
    """The saved config with the bookkeeping keys a resumed run may change replaced."""
    values = saved.to_dict()
    for section, section_values in overrides.items():
        for key, value in section_values.items():
            if f"{section}.{key}" in RESUMABLE_KEYS:
                values[section][key] = _plain(value)
    config = run_config_from_dict(values)
    validate_run_config(config)
    return config

