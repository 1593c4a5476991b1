"""Configuration dataclasses for the network and the diffusion process.

These are saved next to the weights in every flexvid checkpoint, so a checkpoint alone rebuilds
the model. Field names follow the reference implementation's flags.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from flexvid.errors import ConfigError

# Channel multipliers per U-Net level, chosen by image size as in the reference code.
CHANNEL_MULT_BY_IMAGE_SIZE: dict[int, tuple[int, ...]] = {
    32: (1, 2, 2, 2),
    64: (1, 2, 3, 4),
    128: (1, 1, 2, 3, 4),
    256: (1, 1, 2, 2, 4, 4),
}


@dataclass
class ModelConfig:
    """Architecture of the FDM video U-Net."""

    image_size: int = 64
    in_channels: int = 3
    num_channels: int = 128
    num_res_blocks: int = 2
    channel_mult: tuple[int, ...] | None = None  # None: chosen by image_size
    num_heads: int = 4
    num_heads_upsample: int = -1  # -1: same as num_heads
    attention_resolutions: tuple[int, ...] = (16, 8)  # feature-map sizes that get attention
    dropout: float = 0.0
    learn_sigma: bool = False  # output variance values as well as epsilon
    use_scale_shift_norm: bool = True
    use_rpe_net: bool = True  # relative position encodings from an MLP (False: look-up table)
    max_frames: int = 20  # K: frames per network call (sizes the look-up-table RPE)
    use_checkpoint: bool = False  # gradient checkpointing

    def resolved_channel_mult(self) -> tuple[int, ...]:
        """The channel multipliers, from `channel_mult` or the image-size default."""
        if self.channel_mult is not None:
            return tuple(self.channel_mult)
        if self.image_size not in CHANNEL_MULT_BY_IMAGE_SIZE:
            supported = ", ".join(str(s) for s in CHANNEL_MULT_BY_IMAGE_SIZE)
            raise ConfigError(
                f"Unsupported image_size {self.image_size}: supported sizes are {supported} "
                "(or give channel_mult explicitly)."
            )
        return CHANNEL_MULT_BY_IMAGE_SIZE[self.image_size]


@dataclass
class DiffusionConfig:
    """The Gaussian diffusion process and its parameterisation."""

    diffusion_steps: int = 1000
    noise_schedule: str = "linear"  # linear | cosine
    timestep_respacing: str = ""  # "" (all steps), "250", "ddim100", "10,10,20", ...
    learn_sigma: bool = False  # learned-range variance (must match ModelConfig.learn_sigma)
    sigma_small: bool = False  # fixed-small instead of fixed-large variance
    predict_xstart: bool = False  # x0 prediction instead of epsilon prediction
    use_kl: bool = False  # train on the rescaled variational bound only
    rescale_timesteps: bool = True  # network sees t scaled to [0, 1000)
    rescale_learned_sigmas: bool = True  # MSE + lambda * VLB when sigma is learned


@dataclass
class DataConfig:
    """Which videos to train on or complete, and how they are cut into examples."""

    dataset: str = "moving_mnist"  # a name from flexvid.data (moving_mnist, mazes, minerl, carla_no_traffic, folder)
    data_dir: str | None = None
    T: int | None = None  # video length; None: the dataset's default
    max_frames: int = 20  # K: frames per training example / network call
    num_workers: int = 2


def dataclass_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build dataclass `cls` from a dict, with a clear error for unknown keys and values of the wrong type."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"Unknown {cls.__name__} keys {unknown}; known keys are {sorted(names)}.")
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if not _has_type(value, hints[name]):
            raise ConfigError(
                f"{cls.__name__} key {name} must be {_type_name(hints[name])}, got {value!r}; fix its value."
            )
    kwargs = dict(values)
    for f in dataclasses.fields(cls):
        if f.name in kwargs and isinstance(kwargs[f.name], list):
            kwargs[f.name] = tuple(kwargs[f.name])
    return cls(**kwargs)


def _has_type(value: Any, hint: Any) -> bool:
    """Whether a config value read from YAML/JSON fits a field annotation (ints count as floats)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, arg) for arg in args)
    if origin is tuple:
        return isinstance(value, (list, tuple)) and all(_has_type(item, args[0]) for item in value)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is not None:  # list[...], dict[...]: the container only
        return isinstance(value, origin)
    assert isinstance(hint, type), f"config fields annotated {hint} cannot be checked"
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    """'an integer', 'a list of integers or null', ... for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in args)
    if origin is tuple:
        return f"a list of {_type_name(args[0]).split(' ', 1)[1]}s"
    names = {type(None): "null", float: "a number", int: "an integer", bool: "true or false", str: "a string"}
    return names.get(hint, f"a {getattr(origin or hint, '__name__', hint)}")


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass."""
    return dataclasses.asdict(config)


__all__ = [
    "CHANNEL_MULT_BY_IMAGE_SIZE",
    "ModelConfig",
    "DiffusionConfig",
    "dataclass_from_dict",
    "to_dict",
]
