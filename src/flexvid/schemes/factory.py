"""Build a scheme from a registered name or a YAML file, and plan its validated stages.

A plan is a list of Stages for a SamplingScheme, or an AdaptivePlan for an AdaptiveScheme (fixed latent
frames, observed frames chosen per video while sampling); the sampling engine runs either."""

from __future__ import annotations

import os
from typing import Any

from flexvid.errors import SchemeError
from flexvid.schemes.adaptive import AdaptivePlan, AdaptiveScheme
from flexvid.schemes.custom import load_scheme_yaml
from flexvid.schemes.registry import AnyScheme, create_scheme
from flexvid.schemes.stage import Stage
from flexvid.schemes.validate import plan_stages


def is_scheme_file(name: str | os.PathLike) -> bool:
    """Whether `name` refers to a YAML scheme file rather than a registered name."""
    return isinstance(name, os.PathLike) or str(name).endswith((".yaml", ".yml"))


def get_scheme(
    name: str | os.PathLike,
    video_length: int | None = None,
    num_observed_frames: int | None = None,
    max_frames: int | None = None,
    step_size: int | None = None,
    **options: Any,
) -> AnyScheme:
    """A fresh scheme: `name` is a registered name or a .yaml file; `options` go to the scheme
    (e.g. `schedule=` and `base=` for `optimized`)."""
    params = {
        "video_length": video_length,
        "num_observed_frames": num_observed_frames,
        "max_frames": max_frames,
        "step_size": step_size,
    }
    if is_scheme_file(name):
        if options:
            raise SchemeError(f"Options {sorted(options)} cannot be passed with a scheme file; put them in {name}.")
        return load_scheme_yaml(name, **params)
    return create_scheme(str(name), **params, **options)


def scheme_stages(name: str | os.PathLike, **parameters: Any) -> list[Stage] | AdaptivePlan:
    """All stages of a scheme, validated before any network call (an adaptive scheme's with its LPIPS
    network loaded, so missing weights fail here); `parameters` as for get_scheme."""
    scheme = get_scheme(name, **parameters)
    return scheme.plan() if isinstance(scheme, AdaptiveScheme) else plan_stages(scheme)
