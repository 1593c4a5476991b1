"""Building blocks of the per-frame U-Net: float32 GroupNorm, timestep embedding, ResBlock, resampling.

Module and parameter names follow the reference implementation so its state dicts load unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

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


class _NormAffine(NamedTuple):
    """GroupNorm, its affine and the modulation as y = x * a + b, and what the backward needs."""

    a: torch.Tensor  # (N, C)
    b: torch.Tensor  # (N, C)
    a0: torch.Tensor  # (N, C) a before the modulation: rstd * weight
    b0: torch.Tensor  # (N, C) b before the modulation: bias - mean * a0
    mean: torch.Tensor  # (N, C) the group means, one per channel
    rstd: torch.Tensor  # (N, G, 1)
    modulation: torch.Tensor | None  # (N, C) 1 + scale
    weight: torch.Tensor  # (G, C / G)


def _norm_affine(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    scale: torch.Tensor | None,
    shift: torch.Tensor | None,
    eps: float,
) -> _NormAffine:
    """The per-(sample, channel) coefficients of GroupNorm over channels-last rows x (N, R, C)."""
    n, _, c = x.shape
    # Two-pass per-channel statistics, combined exactly per group (torch.var_mean gives the same but
    # is about 8x slower over the rows of channels-last memory).
    mean_c = x.mean(1, keepdim=True)
    var_c = (x - mean_c).square_().mean(1).view(n, NORM_GROUPS, -1)
    mean_c = mean_c.view(n, NORM_GROUPS, -1)
    mean_g = mean_c.mean(-1, keepdim=True)
    var_g = var_c.mean(-1, keepdim=True) + (mean_c - mean_g).square().mean(-1, keepdim=True)
    rstd = torch.rsqrt(var_g + eps)
    w = weight.to(x.dtype).view(NORM_GROUPS, -1)
    a0 = (rstd * w).view(n, c)
    mean = mean_g.expand(n, NORM_GROUPS, c // NORM_GROUPS).reshape(n, c)
    b0 = bias.to(x.dtype) - mean * a0
    if scale is None or shift is None:
        return _NormAffine(a0, b0, a0, b0, mean, rstd, None, w)
    modulation = 1 + scale.to(x.dtype)
    return _NormAffine(a0 * modulation, b0 * modulation + shift.to(x.dtype), a0, b0, mean, rstd, modulation, w)


def _compute_dtype(rows: torch.Tensor) -> torch.dtype:
    """float32 for float32 and lower-precision inputs, float64 for float64 ones."""
    return torch.promote_types(rows.dtype, torch.float32)


class _GroupNormRows(torch.autograd.Function):
    """GroupNorm of channels-last rows, then an optional scale-shift and SiLU, with a hand-written backward.

    Written as one autograd function because PyTorch's channels-last GroupNorm computes variances in
    one pass (E[x^2] - E[x]^2, about 1e-5 relative error), and the same maths written as tensor
    operations makes autograd take about a dozen elementwise passes over the activations backward.
    Here the backward makes six passes over the activations; everything else is arithmetic on (N, C)
    coefficients.
    """

    @staticmethod
    def forward(
        ctx: Any,
        rows: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        scale: torch.Tensor | None,
        shift: torch.Tensor | None,
        eps: float,
        silu: bool,
    ) -> torch.Tensor:
        x = rows.to(_compute_dtype(rows))
        f = _norm_affine(x, weight, bias, scale, shift, eps)
        z = torch.addcmul(f.b[:, None, :], x, f.a[:, None, :])
        ctx.save_for_backward(x, z if silu else None, f.a, f.a0, f.b0, f.mean, f.rstd, f.modulation, f.weight)
        ctx.silu, ctx.input_dtype = silu, rows.dtype
        return (F.silu(z) if silu else z).to(rows.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, z, a, a0, b0, mean, rstd, modulation, w = ctx.saved_tensors
        n, r, c = x.shape
        grad_z = grad_out.to(x.dtype)
        if ctx.silu:
            grad_z = torch.ops.aten.silu_backward(grad_z, z)
        grad_b = grad_z.sum(1)  # (N, C): gradients of the per-channel affine y = x * a + b
        grad_a = (grad_z * x).sum(1)
        grad_scale = grad_shift = None
        if modulation is not None:
            grad_scale, grad_shift = grad_a * a0 + grad_b * b0, grad_b
            grad_a, grad_b = grad_a * modulation, grad_b * modulation
        # a0 = rstd * w and b0 = bias - mean * rstd * w, with mean and rstd per sample and group.
        grad_a_centred = (grad_a - grad_b * mean).view(n, NORM_GROUPS, -1)
        grad_weight = (grad_a_centred * rstd).sum(0).view(c)
        grad_bias = grad_b.sum(0)
        grad_rstd = (grad_a_centred * w).sum(-1, keepdim=True)
        grad_mean = -(grad_b.view(n, NORM_GROUPS, -1) * a0.view(n, NORM_GROUPS, -1)).sum(-1, keepdim=True)
        # Through the statistics, x gets grad_mean / M + grad_rstd * d(rstd)/dx, an affine function of x:
        # d(rstd)/dx_i = -rstd^3 (x_i - mean) / M over the M = rows x group-channels values of its group.
        count = r * (c // NORM_GROUPS)
        slope = -grad_rstd * rstd**3 / count
        group_mean = mean.view(n, NORM_GROUPS, -1)
        offset = grad_mean / count - slope * group_mean
        slope = slope.expand_as(group_mean).reshape(n, 1, c)
        offset = offset.expand_as(group_mean).reshape(n, 1, c)
        grad_x = torch.addcmul(offset, x, slope).addcmul_(grad_z, a[:, None, :]).to(ctx.input_dtype)
        scale_dtype = None if modulation is None else grad_out.dtype
        return (
            grad_x,
            grad_weight,
            grad_bias,
            None if grad_scale is None else grad_scale.to(scale_dtype),
            None if grad_shift is None else grad_shift.to(scale_dtype),
            None,
            None,
        )


def group_norm_rows(
    rows: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    silu: bool = False,
) -> torch.Tensor:
    """GroupNorm of channels-last rows (N, R, C): statistics per sample and group over R and the group.

    Statistics are float32 and exact (per-channel means and variances, combined per group), as
    accurate as PyTorch's NCHW kernel. `scale`/`shift` (N, C) apply `* (1 + scale) + shift` and
    `silu` a SiLU afterwards, in the same pass.
    """
    if (scale is None) != (shift is None):
        raise ValueError("group_norm_rows takes scale and shift together")
    if torch.is_grad_enabled():
        return _GroupNormRows.apply(rows, weight, bias, scale, shift, eps, silu)
    x = rows.to(_compute_dtype(rows))
    f = _norm_affine(x, weight, bias, scale, shift, eps)
    out = torch.addcmul(f.b[:, None, :], x, f.a[:, None, :])
    return (F.silu(out, inplace=True) if silu else out).to(rows.dtype)


def group_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    silu: bool = False,
) -> torch.Tensor:
    """GroupNorm of (N, C, H, W) in float32, then `* (1 + scale) + shift` for (N, C) modulations and SiLU.

    Channels-last inputs keep their layout (see `group_norm_rows`); others use PyTorch's kernel.
    """
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        n, c, height, width = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(n, height * width, c)
        out = group_norm_rows(rows, weight, bias, eps, scale, shift, silu)
        return out.view(n, height, width, c).permute(0, 3, 1, 2)
    out = F.group_norm(x.float(), NORM_GROUPS, weight.float(), bias.float(), eps)
    if scale is not None:
        assert shift is not None, "scale and shift come together"
        modulation = (1 + scale.float())[:, :, None, None]
        out = torch.addcmul(shift.float()[:, :, None, None], out, modulation)
    if silu:
        out = F.silu(out)
    return out.to(x.dtype)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with 32 groups whose statistics are always computed in float32."""

    def __init__(self, channels: int, where: str = "network") -> None:
        check_norm_channels(channels, where)
        super().__init__(NORM_GROUPS, channels)

    def forward(
        self,
        x: torch.Tensor,
        scale: torch.Tensor | None = None,
        shift: torch.Tensor | None = None,
        silu: bool = False,
    ) -> torch.Tensor:
        return group_norm(x, self.weight, self.bias, self.eps, scale, shift, silu)


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
        # Each norm applies the SiLU that follows it (the nn.SiLU modules keep the reference's layer
        # numbering), so the convolutions run on norm_silu(...) and dropout in between.
        norm_in, _, conv_in = self.in_layers
        norm_out, _, dropout, conv_out = self.out_layers
        out = conv_in(norm_in(h, silu=True))
        emb_out = self.emb_layers(ctx.emb)
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            out = norm_out(out, scale, shift, silu=True)
        else:
            out = norm_out(out + emb_out.to(out.dtype)[:, :, None, None], silu=True)
        return conv_out(dropout(out)).add_(self.skip_connection(h))


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
