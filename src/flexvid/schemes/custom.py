"""User schemes from YAML: an explicit list of stages, or a registered scheme with its parameters.

Explicit stages:                         A registered scheme:
    video_length: 12                         scheme: hierarchy-2
    num_observed_frames: 2                   video_length: 300
    max_frames: 6                            num_observed_frames: 36
    stages:                                  max_frames: 20
      - {obs: [0, 1], latent: [2, 3, 4, 5]}  step_size: 10
      - ...
Parameters missing from the file come from the caller; a parameter given by both must agree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from flexvid.errors import SchemeError
from flexvid.schemes.base import SamplingScheme
from flexvid.schemes.registry import AnyScheme, create_scheme
from flexvid.schemes.stage import Stage
from flexvid.schemes.validate import validate_stages

PARAMETERS = ("video_length", "num_observed_frames", "max_frames", "step_size")
FILE_OPTIONS = ("schedule", "alexnet")  # scheme options naming a file, read relative to the YAML file


class ExplicitStages(SamplingScheme):
    """A scheme that replays a fixed, validated list of stages."""

    name = "explicit"
    description = "a fixed list of stages"

    def __init__(self, stages: Sequence[Any], video_length: int, num_observed_frames: int, max_frames: int) -> None:
        self.planned = validate_stages(stages, video_length, num_observed_frames, max_frames)
        step_size = max((len(stage.latent) for stage in self.planned), default=1)
        super().__init__(video_length, num_observed_frames, max_frames, step_size)

    def check_parameters(self) -> None:
        """Already checked stage by stage in `validate_stages`."""

    def unconditional_latents(self) -> Sequence[int]:
        return self._planned_stage().latent

    def choose_stage(self) -> tuple[Sequence[int], Sequence[int]]:
        return self._planned_stage()

    def _planned_stage(self) -> Stage:
        return self.planned[self.stage_number]


def _read_yaml(path: Path) -> dict[str, Any]:
    """The mapping at the top of a scheme file, or a SchemeError saying what is wrong with it."""
    if not path.is_file():
        raise SchemeError(
            f"Scheme file {path} does not exist; give a registered scheme name or an existing .yaml file."
        )
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SchemeError(f"Scheme file {path} is not valid YAML{where}; fix its syntax.") from None
    if not isinstance(content, dict):
        raise SchemeError(
            f"Scheme file {path} must hold a mapping with either 'stages' or 'scheme' at the top, got "
            f"{type(content).__name__}."
        )
    return content


def _merge_parameters(
    path: Path, content: dict[str, Any], requested: dict[str, int | None], needed: Sequence[str]
) -> dict[str, int]:
    """The parameters from the file, filled in from the caller; disagreement or absence is an error."""
    merged = {}
    for key in needed:
        in_file, asked = content.get(key), requested.get(key)
        if in_file is not None and (isinstance(in_file, bool) or not isinstance(in_file, int)):
            raise SchemeError(
                f"Scheme file {path} sets {key} to {in_file!r}; it must be an integer, written without quotes ({key}: "
                "24)."
            )
        if in_file is not None and asked is not None and in_file != asked:
            raise SchemeError(
                f"Scheme file {path} sets {key}={in_file} but {asked} was requested; remove it from the file or "
                f"request {in_file}."
            )
        value = in_file if in_file is not None else asked
        if value is None:
            raise SchemeError(f"Scheme file {path} does not set {key} and none was given; add '{key}: N' to the file.")
        merged[key] = value
    return merged


def load_scheme_yaml(
    path: str | os.PathLike,
    *,
    video_length: int | None = None,
    num_observed_frames: int | None = None,
    max_frames: int | None = None,
    step_size: int | None = None,
) -> AnyScheme:
    """Build the scheme a YAML file describes (explicit stages or a registered scheme with parameters)."""
    path = Path(path)
    content = _read_yaml(path)
    requested = dict(zip(PARAMETERS, (video_length, num_observed_frames, max_frames, step_size), strict=True))
    if ("stages" in content) == ("scheme" in content):
        raise SchemeError(
            f"Scheme file {path} must have exactly one of 'stages' (a list of stages) or 'scheme' (a scheme name)."
        )
    if "stages" in content:
        unknown = set(content) - {"stages", *PARAMETERS}
        if unknown:
            raise SchemeError(
                f"Scheme file {path} has unknown keys {sorted(unknown)}; allowed: stages, {', '.join(PARAMETERS)}."
            )
        if not isinstance(content["stages"], list):
            raise SchemeError(f"Scheme file {path}: 'stages' must be a list of {{obs: [...], latent: [...]}} entries.")
        params = _merge_parameters(path, content, requested, PARAMETERS[:3])
        try:
            return ExplicitStages(content["stages"], **params)
        except SchemeError as err:
            raise SchemeError(f"Scheme file {path}: {err}") from None
    name = content["scheme"]
    if not isinstance(name, str) or name.endswith((".yaml", ".yml")):
        raise SchemeError(f"Scheme file {path}: 'scheme' must be the name of a registered scheme, got {name!r}.")
    params = _merge_parameters(path, content, requested, PARAMETERS)
    options = {key: value for key, value in content.items() if key not in {"scheme", *PARAMETERS}}
    for option in FILE_OPTIONS:
        if isinstance(options.get(option), str):
            options[option] = str(path.parent / Path(options[option]).expanduser())  # relative to the YAML file
    return create_scheme(name, **params, **options)
