"""The network's conditioning payload: K frames per video, their positions, and which are observed or latent.

Training examples, sampling stages, scheme losses and diagnostics all build a FrameBatch; the
diffusion and the samplers take one. Slots that are neither observed nor latent are padding.
`check` (run on construction) is the one place its shapes and dtypes are verified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class FrameBatch:
    """x0 (B, K, C, H, W) clean frames, frame_indices (B, K) int64, obs_mask and latent_mask (B, K, 1, 1, 1) 0/1."""

    x0: Tensor
    frame_indices: Tensor
    obs_mask: Tensor
    latent_mask: Tensor

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ValueError unless the fields have the documented shapes and dtypes and share a device."""
        x0 = self.x0
        if not isinstance(x0, Tensor) or x0.ndim != 5 or not x0.is_floating_point():
            raise ValueError(f"FrameBatch.x0 must be a float tensor of shape (B, K, C, H, W), got {_describe(x0)}.")
        B, K = x0.shape[:2]
        expected = {
            "frame_indices": ((B, K), torch.int64),
            "obs_mask": ((B, K, 1, 1, 1), None),
            "latent_mask": ((B, K, 1, 1, 1), None),
        }
        for name, (shape, dtype) in expected.items():
            value = getattr(self, name)
            ok = isinstance(value, Tensor) and tuple(value.shape) == shape
            ok = ok and (value.dtype == dtype if dtype is not None else value.is_floating_point())
            if not ok:
                kind = "an int64" if dtype is not None else "a float 0/1"
                raise ValueError(f"FrameBatch.{name} must be {kind} tensor of shape {shape}, got {_describe(value)}.")
            if value.device != x0.device:
                raise ValueError(f"FrameBatch.{name} is on {value.device} but x0 is on {x0.device}.")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_slots(cls, x0: Tensor, frame_indices: Tensor, observed: Tensor, latent: Tensor) -> FrameBatch:
        """A batch whose masks (in x0's dtype) come from (B, K) booleans: which slots are observed, which latent."""

        def mask(slots: Tensor) -> Tensor:
            return slots.to(x0.device, x0.dtype).view(*slots.shape, 1, 1, 1)

        return cls(x0, frame_indices, mask(observed), mask(latent))

    @classmethod
    def observed_first(cls, x0: Tensor, frame_indices: Tensor, num_observed: int) -> FrameBatch:
        """A batch whose first `num_observed` frames are observed and the rest latent (no padding)."""
        B, K = x0.shape[:2]
        observed = (torch.arange(K, device=x0.device) < num_observed).repeat(B, 1)
        return cls.from_slots(x0, frame_indices, observed, ~observed)

    @classmethod
    def from_indices(cls, videos: Tensor, obs_indices: Sequence[int], latent_indices: Sequence[int]) -> FrameBatch:
        """One row per video of `videos` (B, T, C, H, W): its frames `obs_indices` (observed), then `latent_indices`."""
        indices = list(obs_indices) + list(latent_indices)
        frame_indices = torch.tensor(indices, dtype=torch.int64, device=videos.device).repeat(videos.shape[0], 1)
        return cls.observed_first(videos[:, indices], frame_indices, len(obs_indices))

    @classmethod
    def cat(cls, batches: Sequence[FrameBatch]) -> FrameBatch:
        """The rows of `batches` (same K and frame size) stacked into one batch."""
        return cls(*(torch.cat([getattr(b, f.name) for b in batches]) for f in fields(cls)))

    # ------------------------------------------------------------------ use
    def __getitem__(self, rows: slice) -> FrameBatch:
        """The batch of rows `rows` (a slice, so every field keeps its batch dimension)."""
        return FrameBatch(*(getattr(self, f.name)[rows] for f in fields(self)))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> FrameBatch:
        """The batch on `device`."""
        return FrameBatch(*(getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)))

    def pin_memory(self) -> FrameBatch:
        """The batch in page-locked memory (the DataLoader calls this when `pin_memory=True`)."""
        return FrameBatch(*(getattr(self, f.name).pin_memory() for f in fields(self)))

    def network_inputs(self) -> dict[str, Tensor]:
        """The network's keyword arguments besides x and timesteps: `model(x, timesteps, **batch.network_inputs())`."""
        return {
            "frame_indices": self.frame_indices,
            "obs_mask": self.obs_mask,
            "latent_mask": self.latent_mask,
            "x0": self.x0,
        }


def _describe(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, Tensor):
        return f"{value.dtype} of shape {tuple(value.shape)}"
    return type(value).__name__


__all__ = ["FrameBatch"]
