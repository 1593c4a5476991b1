"""Configuration sections: the U-Net, the diffusion process, the data and training, and the network config.

Each setting is a field whose metadata (`setting`) holds its help text, its allowed values and whether
a resumed run may change it, so the `flexvid train` flags, YAML presets and saved configs all take
their names and documentation from here. `flexvid.run_config.RunConfig` joins the sections.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from flexvid.errors import ConfigError

# Channel multipliers per U-Net level, chosen by image size as in the reference code.
CHANNEL_MULT_BY_IMAGE_SIZE: dict[int, tuple[int, ...]] = {
    32: (1, 2, 2, 2),
    64: (1, 2, 3, 4),
    128: (1, 1, 2, 3, 4),
    256: (1, 1, 2, 2, 4, 4),
}
PRECISIONS = ("fp32", "bf16", "fp16")
# Names of flexvid.diffusion's schedules and timestep samplers and flexvid.data.tasks' distributions, kept
# here so that reading a config needs no torch (tests/test_run_config.py checks they match).
NOISE_SCHEDULES = ("linear", "cosine")
SCHEDULE_SAMPLERS = ("uniform", "loss-second-moment")
TASK_DISTRIBUTIONS = ("fdm", "uniform", "autoregressive")


def setting(default: Any, help: str, *, choices: tuple[str, ...] | None = None, resumable: bool = False) -> Any:
    """A config field with its `--help` text, its allowed values, and whether a resumed run may change it
    (bookkeeping that never changes the numbers a run computes)."""
    return field(default=default, metadata={"help": help, "choices": choices, "resumable": resumable})


@dataclass(frozen=True)
class ArchitectureConfig:
    """The U-Net's architecture: the `model` section of a run (its frames, K and learn_sigma come from the
    `data` and `diffusion` sections)."""

    num_channels: int = setting(128, "base channel count of the U-Net")
    num_res_blocks: int = setting(2, "residual blocks per U-Net level")
    channel_mult: tuple[int, ...] | None = setting(
        None, "comma-separated channel multipliers per U-Net level (default: chosen by image_size)"
    )
    num_heads: int = setting(4, "attention heads")
    num_heads_upsample: int = setting(-1, "attention heads of the upsampling half; -1: num_heads")
    attention_resolutions: tuple[int, ...] = setting((16, 8), "comma-separated feature-map sizes with attention")
    dropout: float = setting(0.0, "dropout rate")
    use_scale_shift_norm: bool = setting(True, "the timestep scales and shifts the normalised features")
    use_rpe_net: bool = setting(True, "relative position encodings from an MLP (off: a look-up table over K)")
    use_checkpoint: bool = setting(False, "gradient checkpointing: less memory, more compute")


@dataclass(frozen=True)
class ModelConfig(ArchitectureConfig):
    """Everything the FDM video U-Net is built from: its architecture and the frames it works on."""

    image_size: int = 64
    in_channels: int = 3
    learn_sigma: bool = False  # output variance values as well as epsilon
    max_frames: int = 20  # K: frames per network call (sizes the look-up-table RPE)

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


@dataclass(frozen=True)
class DiffusionConfig:
    """The Gaussian diffusion process and its parameterisation."""

    diffusion_steps: int = setting(1000, "diffusion steps")
    noise_schedule: str = setting("linear", "beta schedule", choices=NOISE_SCHEDULES)
    timestep_respacing: str = setting("", 'sampled steps: "" (all), "250", "ddim100", "10,10,20", ...')
    learn_sigma: bool = setting(False, "learn the variance as well (learned-range sigma)")
    sigma_small: bool = setting(False, "fixed-small instead of fixed-large variance")
    predict_xstart: bool = setting(False, "the network predicts x0 instead of epsilon")
    use_kl: bool = setting(False, "train on the rescaled variational bound only")
    rescale_timesteps: bool = setting(True, "the network sees t scaled to [0, 1000)")
    rescale_learned_sigmas: bool = setting(True, "MSE + lambda * VLB when sigma is learned")


@dataclass(frozen=True)
class DataConfig:
    """Which videos to train on or complete, their frames, and how they are cut into examples."""

    dataset: str | None = setting(
        "moving_mnist", "dataset name (moving_mnist and panorama are generated: no download)"
    )  # None: not recorded (weights saved without their data section)
    data_dir: str | None = setting(None, "directory with the dataset's files", resumable=True)
    T: int | None = setting(None, "video length in frames (default: the dataset's)")
    image_size: int | None = setting(None, "frame height and width (default: the dataset's)")
    channels: int | None = setting(None, "channels per frame (default: the dataset's, which a given value must match)")
    max_frames: int = setting(20, "K: frames per training example and per network call")
    num_workers: int = setting(2, "data-loading worker processes per training process", resumable=True)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, logging and checkpointing settings of a training run."""

    batch_size: int = setting(
        8,
        "GLOBAL batch size: videos per optimiser step summed over all processes; each of N torchrun "
        "processes trains on batch_size / N",
    )
    microbatch: int = setting(0, "videos per forward/backward pass in each process; 0: all at once", resumable=True)
    lr: float = setting(1e-4, "AdamW learning rate")
    weight_decay: float = setting(0.0, "AdamW weight decay")
    lr_anneal_steps: int = setting(0, "anneal the learning rate linearly to 0 over this many steps; 0: constant")
    ema_rate: tuple[float, ...] = setting((0.9999,), "comma-separated EMA rates")
    grad_clip: float = setting(0.0, "clip the global gradient norm to this value; 0: no clipping")
    precision: str = setting("fp32", "autocast precision (fp16 adds a gradient scaler)", choices=PRECISIONS)
    schedule_sampler: str = setting("uniform", "how training draws diffusion steps", choices=SCHEDULE_SAMPLERS)
    task_distribution: str = setting(
        "fdm", "which frames training tasks observe and generate", choices=TASK_DISTRIBUTIONS
    )
    pad_with_random_frames: bool = setting(True, "fill examples shorter than K with frames of another video")
    observed_share: float | None = setting(
        None,
        "share of training tasks that have observed frames, 0..1 (default: as the task distribution "
        "draws them, about 0.29 for fdm)",
    )
    init_from: str | None = setting(
        None,
        "start from these weights (a checkpoint directory such as pretrained/moving_mnist, a .safetensors "
        "file or an authors' .pt) with a fresh optimiser: fine-tuning; the model settings must match",
    )
    seed: int = setting(0, "random seed")
    max_steps: int = setting(10000, "train until this many optimiser steps", resumable=True)
    log_interval: int = setting(10, "steps between metric logs", resumable=True)
    save_interval: int = setting(1000, "steps between checkpoints", resumable=True)
    sample_interval: int = setting(1000, "steps between logged sample videos; 0: never", resumable=True)
    sample_steps: int = setting(20, "DDIM steps of the logged sample videos", resumable=True)
    num_sample_videos: int = setting(2, "videos in each logged sample", resumable=True)
    keep_checkpoints: int = setting(3, "how many of the newest checkpoints to keep", resumable=True)
    tensorboard: bool = setting(True, "write TensorBoard logs", resumable=True)
    wandb: bool = setting(False, "also log to wandb (WANDB_MODE=offline works without an account)", resumable=True)
    wandb_project: str = setting("flexvid", "wandb project name", resumable=True)
    device: str = setting("auto", "auto, cpu or cuda", resumable=True)


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
    kwargs = {name: tuple(value) if isinstance(value, list) else value for name, value in values.items()}
    return cls(**kwargs)


def field_type(cls: type, name: str) -> Any:
    """The annotation of field `name` of dataclass `cls`, without `| None`."""
    hint = typing.get_type_hints(cls)[name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return hint


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
    "ArchitectureConfig",
    "DataConfig",
    "DiffusionConfig",
    "ModelConfig",
    "TrainConfig",
    "dataclass_from_dict",
    "field_type",
    "setting",
    "to_dict",
]
