"""The configuration of a training run and of the weights it saves: four sections, each fact stored once.

K (`data.max_frames`), the frame size and channels (`data`, dataset facts filled in by
`flexvid.training.config.resolve_run_config`) and `learn_sigma` (`diffusion`) each have one home; the
network's full `ModelConfig` is derived from them (`RunConfig.network`). Configs written before this
layout also kept those facts in the `model` section; `RunConfig.from_dict` still reads them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flexvid.config import (
    ArchitectureConfig,
    DataConfig,
    DiffusionConfig,
    ModelConfig,
    TrainConfig,
    dataclass_from_dict,
)
from flexvid.errors import ConfigError

# Section name (in YAML, JSON and flags' groups) -> its dataclass.
SECTIONS: dict[str, type] = {
    "model": ArchitectureConfig,
    "diffusion": DiffusionConfig,
    "data": DataConfig,
    "train": TrainConfig,
}

# Facts that earlier layouts also stored in the `model` section -> the section and key that own them now.
LEGACY_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("model", "image_size"): ("data", "image_size"),
    ("model", "in_channels"): ("data", "channels"),
    ("model", "max_frames"): ("data", "max_frames"),
    ("model", "learn_sigma"): ("diffusion", "learn_sigma"),
}


@dataclass(frozen=True)
class RunConfig:
    """A run's configuration, resolved (dataset facts filled in); also the config of the weights it saves."""

    model: ArchitectureConfig = field(default_factory=ArchitectureConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig | None = field(default_factory=TrainConfig)  # None: weights saved without it

    @property
    def network(self) -> ModelConfig:
        """The U-Net's config: the architecture, the data's frame size, channels and K, the diffusion's learn_sigma."""
        data = self.data
        if data.image_size is None or data.channels is None:
            raise ConfigError("The config has no image_size or channels yet; resolve it with resolve_run_config first.")
        architecture = {f.name: getattr(self.model, f.name) for f in dataclasses.fields(self.model)}
        return ModelConfig(
            **architecture,
            image_size=data.image_size,
            in_channels=data.channels,
            learn_sigma=self.diffusion.learn_sigma,
            max_frames=data.max_frames,
        )

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the frames the network takes and makes."""
        network = self.network
        return network.in_channels, network.image_size, network.image_size

    def to_dict(self) -> dict[str, Any]:
        """A YAML/JSON-ready dict of sections (no `train` when there is none)."""
        sections = {name: getattr(self, name) for name in SECTIONS}
        return {name: plain(dataclasses.asdict(value)) for name, value in sections.items() if value is not None}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunConfig:
        """Rebuild a config written by `to_dict`, or in the earlier layout (network facts in `model`).

        Missing keys take their defaults; a missing `data` section leaves the dataset and T unknown, and a
        missing `train` section leaves `train` None.
        """
        unknown = sorted(set(values) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"The config has unknown sections {unknown}; its sections are {sorted(SECTIONS)}.")
        for name, section in values.items():
            if not isinstance(section, Mapping):
                raise ConfigError(f"Section {name!r} of the config must be a mapping of keys to values.")
        sections = fold_legacy_keys(values)
        if "data" not in values:
            sections["data"] = {"dataset": None, **sections.get("data", {})}
        built = {name: dataclass_from_dict(section, sections.get(name, {})) for name, section in SECTIONS.items()}
        return cls(**{**built, "train": built["train"] if "train" in values else None})


def fold_legacy_keys(sections: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """`sections` with each fact that earlier layouts stored twice moved to its owner (`LEGACY_KEYS`), where
    the owner leaves it unset (None or absent); ConfigError when the two copies disagree."""
    folded = {name: dict(values or {}) for name, values in sections.items()}
    for (section, key), (owner, owner_key) in LEGACY_KEYS.items():
        if key not in folded.get(section, {}):
            continue
        value = folded[section].pop(key)
        target = folded.setdefault(owner, {})
        if target.get(owner_key) is None:
            target[owner_key] = value
        elif target[owner_key] != value:
            raise ConfigError(
                f"{section}.{key} ({value!r}) contradicts {owner}.{owner_key} ({target[owner_key]!r}); "
                f"give it once, as {owner_key} in the {owner} section (--{owner_key})."
            )
    return folded


def plain(value: Any) -> Any:
    """Tuples to lists, recursively, so YAML and JSON round-trip a config."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


__all__ = ["LEGACY_KEYS", "SECTIONS", "RunConfig", "fold_legacy_keys", "plain"]
