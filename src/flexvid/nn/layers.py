"""Building blocks of the per-frame U-Net: float32 GroupNorm, timestep embedding, ResBlock, resampling.

Module and parameter names follow the reference implementation so its state dicts load unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from flexvid.errors import ConfigError

ModuleType = TypeVar("ModuleType", bound=nn.Module)

NORM_GROUPS = 32


def check_norm_channels(channels: int, where: str) -> None:
    """Raise a ConfigError when `channels` cannot be split into the 32 normalisation groups."""
    if channels % NORM_GROUPS:
        raise ConfigError(
            f"The {where} has {channels} channels, which is not divisible by the {NORM_GROUPS} "
            f"GroupNorm groups; use a num_channels that is a multiple of {NORM_GROUPS}."
        )


def group_norm_rows(
    rows: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """GroupNorm of channels-last rows (N, R, C): statistics per sample and group over R and the group.

    Statistics are float32 and two-pass (per-channel means and variances, combined exactly per
    group), so they are as accurate as PyTorch's NCHW kernel. `scale`/`shift` (N, C) apply
    `* (1 + scale) + shift` afterwards, folded into the affine so the output is one pass.
    """
    n, _, c = rows.shape
    data = rows.float()
    mean_c = data.mean(1, keepdim=True)
    var_c = (data - mean_c).square_().mean(1).view(n, NORM_GROUPS, -1)
    mean_c = mean_c.view(n, NORM_GROUPS, -1)
    mean_g = mean_c.mean(-1, keepdim=True)
    var_g = var_c.mean(-1, keepdim=True) + (mean_c - mean_g).square_().mean(-1, keepdim=True)
    a = (torch.rsqrt(var_g + eps) * weight.float().view(NORM_GROUPS, -1)).view(n, c)
    b = bias.float() - mean_g.expand(n, NORM_GROUPS, c // NORM_GROUPS).reshape(n, c) * a
    if scale is not None:
        assert shift is not None, "scale and shift come together"
        a = a * (1 + scale.float())
        b = b * (1 + scale.float()) + shift.float()
    return torch.addcmul(b[:, None, :], data, a[:, None, :]).to(rows.dtype)


def group_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """GroupNorm of (N, C, H, W) in float32, then `* (1 + scale) + shift` for (N, C) modulations.

    Channels-last inputs keep their layout (see `group_norm_rows`); others use PyTorch's kernel.
    """
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        n, c, height, width = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(n, height * width, c)
        out = group_norm_rows(rows, weight, bias, eps, scale, shift)
        return out.view(n, height, width, c).permute(0, 3, 1, 2)
    out = F.group_norm(x.float(), NORM_GROUPS, weight.float(), bias.float(), eps)
    if scale is not None:
        assert shift is not None, "scale and shift come together"
        modulation = (1 + scale.float())[:, :, None, None]
        out = torch.addcmul(shift.float()[:, :, None, None], out, modulation)
    return out.to(x.dtype)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with 32 groups whose statistics are always computed in float32."""

    def __init__(self, channels: int, where: str = "network") -> None:
        check_norm_channels(channels, where)
        super().__init__(NORM_GROUPS, channels)

    def forward(
        self, x: torch.Tensor, scale: torch.Tensor | None = None, shift: torch.Tensor | None = None
    ) -> torch.Tensor:
        return group_norm(x, self.weight, self.bias, self.eps, scale, shift)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (N, dim) of possibly fractional timesteps (N,): cosines, then sines."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


def zero_init(module: ModuleType) -> ModuleType:
    """Set every parameter of `module` to zero (output layers start as the identity residual)."""
    for p in module.parameters():
        p.detach().zero_()
    return module


def project(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """`layer` applied over the last dim of (N, R, C) `x`.

    On CPU it runs as a 1x1 convolution over N images of R pixels: oneDNN's kernel there is about
    twice as fast as the BLAS matrix product behind `F.linear` (measured on AMD EPYC).
    """
    if x.device.type != "cpu" or x.dim() != 3:
        return layer(x)
    n, r, c = x.shape
    images = x.reshape(n, r, 1, c).permute(0, 3, 1, 2)  # channels-last (N, C, R, 1)
    out = F.conv2d(images, layer.weight[:, :, None, None], layer.bias)
    return out.permute(0, 2, 3, 1).reshape(n, r, -1)


@dataclass
class FrameContext:
    """Per-call inputs shared by every block: shapes, timestep embedding and frame relations."""

    batch: int
    frames: int
    emb: torch.Tensor  # (B*K, E) timestep embedding of each frame
    allowed: torch.Tensor  # (B, K, K) bool: may frame t attend to frame s
    distance_features: torch.Tensor | None  # (B, K, K, 3) inputs of the RPE network
    table_index: torch.Tensor | None  # (B, K, K) long rows of the RPE look-up table


class ContextLayer(nn.Module):
    """Marker base class: subclasses' forward takes `(h, ctx: FrameContext)` instead of `h` alone."""


class ResBlock(ContextLayer):
    """Residual block conditioned on the timestep embedding (scale-shift or additive)."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_scale_shift_norm: bool = True,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            GroupNorm32(channels, "ResBlock input"),
            nn.SiLU(),
            nn.Conv2d(channels, out_channels, 3, padding=1),
        )
        self.emb_layers = nn.Sequential(
            nn.SiLU(),
            nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels),
        )
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels, "ResBlock output"),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        if out_channels == channels:
            self.skip_connection: nn.Module = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(channels, out_channels, 1)

    def forward(self, h: torch.Tensor, ctx: FrameContext) -> torch.Tensor:
        out = self.in_layers(h)
        emb_out = self.emb_layers(ctx.emb)
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            out = self.out_layers[0](out, scale, shift)
            out = self.out_layers[1:](out)
        else:
            out = self.out_layers(out + emb_out.to(out.dtype)[:, :, None, None])
        return out.add_(self.skip_connection(h))


class Downsample(nn.Module):
    """Halve the spatial size with a stride-2 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.op(h)


class Upsample(nn.Module):
    """Double the spatial size (nearest neighbour), then a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(h, scale_factor=2, mode="nearest"))
