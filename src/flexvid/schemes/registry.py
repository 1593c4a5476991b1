"""The registry of sampling schemes by name; user schemes join it with `@register_scheme("name")`.

A scheme class is a SamplingScheme (its stages are fixed before sampling) or an AdaptiveScheme (each
stage's observed frames are chosen per video from the frames made so far)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from flexvid.errors import SchemeError
from flexvid.schemes.adaptive import AdaptiveScheme
from flexvid.schemes.base import SamplingScheme

AnyScheme = SamplingScheme | AdaptiveScheme
SchemeClass = TypeVar("SchemeClass", bound=type[AnyScheme])

_SCHEMES: dict[str, type[AnyScheme]] = {}


def register_scheme(name: str) -> Callable[[SchemeClass], SchemeClass]:
    """Class decorator: make a SamplingScheme subclass available under `name`."""
    if not isinstance(name, str) or not name or name.endswith((".yaml", ".yml")):
        raise SchemeError(f"A scheme name must be a non-empty string not ending in .yaml, got {name!r}.")

    def register(cls: SchemeClass) -> SchemeClass:
        if not (isinstance(cls, type) and issubclass(cls, (SamplingScheme, AdaptiveScheme))):
            raise SchemeError(
                f"register_scheme({name!r}) needs a SamplingScheme or AdaptiveScheme subclass, got {cls!r}."
            )
        known = _SCHEMES.get(name)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise SchemeError(
                f"A sampling scheme named '{name}' is already registered ({known.__qualname__}); pick another name."
            )
        cls.name = name
        _SCHEMES[name] = cls
        return cls

    return register


def scheme_names() -> list[str]:
    """The registered scheme names, in registration order."""
    return list(_SCHEMES)


def scheme_class(name: str) -> type[AnyScheme]:
    """The class registered under `name`, or a SchemeError listing the known names."""
    if name not in _SCHEMES:
        raise SchemeError(
            f"Unknown sampling scheme '{name}': known schemes are {', '.join(_SCHEMES)} "
            "(or give the path of a .yaml scheme file)."
        )
    return _SCHEMES[name]


def create_scheme(name: str, **arguments: Any) -> AnyScheme:
    """An instance of the scheme registered under `name`; wrong or missing arguments are a SchemeError."""
    cls = scheme_class(name)
    missing = [
        key for key in ("video_length", "num_observed_frames", "max_frames", "step_size") if arguments.get(key) is None
    ]
    if missing:
        raise SchemeError(
            f"Scheme '{name}' needs {', '.join(missing)}; pass them (or use a scheme file that sets them)."
        )
    try:
        inspect.signature(cls).bind(**arguments)
    except TypeError as err:
        raise SchemeError(f"Scheme '{name}' cannot take these arguments ({err}); see `flexvid schemes`.") from None
    return cls(**arguments)
