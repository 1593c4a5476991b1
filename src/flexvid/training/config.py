"""Resolving a training run's configuration, saving it in the run directory, and what a resume may change.

A run is configured from defaults, then an optional YAML preset (`--config`), then command-line flags.
`resolve_run_config` is the one place that fills in the dataset's facts (T, image size, channels), so
everything built afterwards reads one frozen, complete `RunConfig`, saved as `config.yaml` so that a
resumed run rebuilds it exactly.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import yaml

from flexvid.config import dataclass_from_dict
from flexvid.errors import ConfigError
from flexvid.files import atomic_write_text
from flexvid.run_config import SECTIONS, RunConfig, fold_legacy_keys, plain

CONFIG_FILENAME = "config.yaml"


def load_yaml_config(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a preset: a YAML mapping with any of the sections model, diffusion, data, train (earlier
    layouts' keys are moved to their sections)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist; give an existing YAML file to --config.")
    raw = _read_yaml(path, "fix its syntax")
    if not isinstance(raw, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of sections {sorted(SECTIONS)}.")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"Config file {path} has unknown sections {unknown}; use only {sorted(SECTIONS)}.")
    for name, values in raw.items():
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"Section {name!r} of {path} must be a mapping of keys to values.")
    return fold_legacy_keys(raw)


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
    """Defaults + `overrides` (sections of keys, as in a preset) -> a validated RunConfig with the dataset's facts.

    T and image_size not given are the dataset's paper values and channels is the dataset's (a given
    channels must match it).
    """
    from flexvid.data.base import dataset_spec

    sections = fold_legacy_keys({name: overrides.get(name, {}) for name in SECTIONS})
    config = RunConfig(**{name: dataclass_from_dict(cls, sections.get(name, {})) for name, cls in SECTIONS.items()})
    data = config.data
    spec = dataset_spec(data.dataset)
    if data.channels not in (None, spec.channels):
        raise ConfigError(
            f"channels is {data.channels}, but dataset {data.dataset!r} has {spec.channels}-channel frames; "
            "drop channels (it is the dataset's)."
        )
    data = dataclasses.replace(
        data,
        T=spec.default_T if data.T is None else data.T,
        image_size=spec.default_image_size if data.image_size is None else data.image_size,
        channels=spec.channels,
    )
    config = dataclasses.replace(config, data=data)
    validate_run_config(config)
    return config


def validate_run_config(config: RunConfig) -> None:
    """Raise ConfigError for values that cannot work together, or outside their field's choices."""
    _check_choices(config)
    train, data, model = config.train, config.data, config.model
    if train is None:
        raise ConfigError("The run config has no train section; add one.")
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
    if not train.ema_rate or any(not 0.0 < r < 1.0 for r in train.ema_rate):
        raise ConfigError(f"ema_rate values must lie strictly between 0 and 1, got {list(train.ema_rate)}.")
    for name in ("max_steps", "log_interval", "save_interval"):
        if getattr(train, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(train, name)}.")
    if train.keep_checkpoints < 1:
        raise ConfigError(f"keep_checkpoints must be at least 1, got {train.keep_checkpoints}.")
    _check_range("lr", train.lr, low=0.0, low_open=True)
    _check_range("weight_decay", train.weight_decay, low=0.0)
    _check_range("grad_clip", train.grad_clip, low=0.0)
    _check_range("dropout", model.dropout, low=0.0, high=1.0)
    for name in ("num_channels", "num_res_blocks", "num_heads"):
        _check_range(name, getattr(model, name), low=1)
    for name in ("image_size", "channels", "T"):
        if getattr(data, name) is not None:
            _check_range(name, getattr(data, name), low=1)
    _check_range("diffusion_steps", config.diffusion.diffusion_steps, low=1)
    _check_range("num_workers", data.num_workers, low=0)
    for name in ("lr_anneal_steps", "sample_interval"):
        _check_range(name, getattr(train, name), low=0)
    for name in ("sample_steps", "num_sample_videos"):
        _check_range(name, getattr(train, name), low=1)


def _check_choices(config: RunConfig) -> None:
    """Raise ConfigError for a value outside the choices its field lists."""
    for name in SECTIONS:
        section = getattr(config, name)
        for f in dataclasses.fields(section) if section is not None else ():
            choices, value = f.metadata["choices"], getattr(section, f.name)
            if choices is not None and value not in choices:
                raise ConfigError(f"Unknown {f.name} {value!r}; choose one of {', '.join(choices)}.")


def _check_range(name: str, value: float, *, low: float, high: float | None = None, low_open: bool = False) -> None:
    """Raise ConfigError unless `value` is finite and in [low, high) (or (low, high) with `low_open`)."""
    too_low = value <= low if low_open else value < low
    if not math.isfinite(value) or too_low or (high is not None and value >= high):
        bound = "above" if low_open else "at least"
        span = f"{bound} {low}" + (f" and below {high}" if high is not None else "")
        kind = "an integer" if isinstance(value, int) else "a finite number"
        raise ConfigError(f"{name} must be {kind} {span}, got {value}; fix --{name}.")


def save_run_config(config: RunConfig, run_dir: str | Path) -> Path:
    """Write the resolved config to `run_dir/config.yaml` atomically."""
    return atomic_write_text(Path(run_dir) / CONFIG_FILENAME, yaml.safe_dump(config.to_dict(), sort_keys=False))


def load_run_config(run_dir: str | Path) -> RunConfig:
    """Read `run_dir/config.yaml` written by `save_run_config` (or by an earlier flexvid, in its layout)."""
    path = Path(run_dir) / CONFIG_FILENAME
    if not path.is_file():
        raise ConfigError(f"{path} is missing; {run_dir} is not a flexvid run directory.")
    fix = "restore it from the config.json of one of the run's checkpoints"
    values = _read_yaml(path, fix)
    if not isinstance(values, dict) or not all(isinstance(v, dict) for v in values.values()):
        raise ConfigError(f"{path} is not a mapping of config sections; {fix}.")
    try:
        return RunConfig.from_dict({"train": {}, **values})
    except ConfigError as err:
        raise ConfigError(f"{path} is invalid ({err}); {fix}.") from None


def _given(overrides: dict[str, dict[str, Any]]) -> list[tuple[str, dataclasses.Field, Any]]:
    """(section, field, value) of every known key in `overrides`."""
    given = []
    for section, values in fold_legacy_keys(overrides).items():
        fields = {f.name: f for f in dataclasses.fields(SECTIONS[section])} if section in SECTIONS else {}
        given += [(section, fields[key], value) for key, value in values.items() if key in fields]
    return given


def conflicting_keys(saved: RunConfig, overrides: dict[str, dict[str, Any]]) -> list[str]:
    """Keys in `overrides` that a resumed run may not change (their field is not `resumable`) and that
    differ from `saved`; each entry reads `section.key (saved X, given Y)`."""
    conflicts = []
    for section, f, value in _given(overrides):
        old = plain(getattr(getattr(saved, section), f.name))
        if not f.metadata["resumable"] and plain(value) != old:
            conflicts.append(f"{section}.{f.name} (saved {old!r}, given {plain(value)!r})")
    return conflicts


def apply_resumable_overrides(saved: RunConfig, overrides: dict[str, dict[str, Any]]) -> RunConfig:
    """The saved config with the bookkeeping keys a resumed run may change replaced."""
    values = saved.to_dict()
    for section, f, value in _given(overrides):
        if f.metadata["resumable"]:
            values[section][f.name] = plain(value)
    config = RunConfig.from_dict(values)
    validate_run_config(config)
    return config
