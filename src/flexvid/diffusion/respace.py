"""Timestep respacing: run a diffusion process on a subset of the steps it was trained with.

The kept steps get new betas chosen so that alphas_cumprod at those steps is unchanged, and the
network keeps seeing the original step numbers (`timestep_map`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from flexvid.errors import ConfigError


def _parse_section_counts(spec: str) -> list[int]:
    """Comma-separated step counts, e.g. "250" or "10,15,20"."""
    try:
        return [int(part) for part in spec.split(",")]
    except ValueError:
        raise ConfigError(
            f'Invalid timestep_respacing {spec!r}: use a step count like "250", '
            'comma-separated counts like "10,15,20", or "ddimN".'
        ) from None


def _ddim_steps(num_steps: int, desired: int) -> set[int]:
    """The DDIM paper's striding: every i-th step from 0, for the integer stride giving `desired` steps."""
    for stride in range(1, num_steps):
        steps = range(0, num_steps, stride)
        if len(steps) == desired:
            return set(steps)
    raise ConfigError(
        f"Cannot take exactly {desired} DDIM steps out of {num_steps} with an integer stride; "
        "pick another step count (e.g. one that divides the number of diffusion steps)."
    )


def space_timesteps(num_steps: int, section_counts: str | Iterable[int]) -> set[int]:
    """The original steps to keep: the range is cut into equal sections, each strided evenly to its count.

    `section_counts` is a list of counts, a comma-separated string of them, or "ddimN" for the
    fixed integer striding of the DDIM paper.
    """
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            return _ddim_steps(num_steps, _parse_section_counts(section_counts[len("ddim") :])[0])
        counts = _parse_section_counts(section_counts)
    else:
        counts = [int(c) for c in section_counts]
    if not counts or any(c < 1 for c in counts):
        raise ConfigError(f"timestep_respacing needs positive step counts, got {counts}.")
    base_size, extra = divmod(num_steps, len(counts))
    kept: list[int] = []
    section_start = 0
    for index, count in enumerate(counts):
        size = base_size + (1 if index < extra else 0)
        if size < count:
            raise ConfigError(
                f"timestep_respacing asks for {count} steps from a section of only {size} "
                f"of the {num_steps} diffusion steps; ask for fewer steps."
            )
        stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
        position = 0.0
        for _ in range(count):
            kept.append(section_start + round(position))
            position += stride
        section_start += size
    return set(kept)


def respace_betas(betas: np.ndarray, use_timesteps: Iterable[int]) -> tuple[np.ndarray, list[int]]:
    """Betas for the kept steps (alphas_cumprod preserved there) and the map from new to original steps."""
    keep = set(use_timesteps)
    alphas_cumprod = np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))
    new_betas: list[float] = []
    timestep_map: list[int] = []
    previous = 1.0
    for step, alpha_cumprod in enumerate(alphas_cumprod):
        if step in keep:
            new_betas.append(1.0 - alpha_cumprod / previous)
            previous = alpha_cumprod
            timestep_map.append(step)
    return np.array(new_betas, dtype=np.float64), timestep_map


__all__ = ["respace_betas", "space_timesteps"]
