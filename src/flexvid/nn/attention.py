"""Factorized video attention: temporal attention across frames at each pixel, then spatial attention.

Both normalise their input (GroupNorm, float32 statistics) and add the attention output to the
*normalised* input, as the reference does. The temporal attention adds relative position
encodings of frame distances to queries, keys and values and masks padding frames; the spatial
attention runs through `scaled_dot_product_attention` so fused kernels apply.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from flexvid.errors import ConfigError
from flexvid.nn.layers import ContextLayer, FrameContext, GroupNorm32, group_norm_rows, project, zero_init
from flexvid.nn.rpe import RelativePositionEncoding


def masked_softmax(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim in float32, with disallowed entries at zero weight.

    Written out (max, exp, normalise) because `torch.softmax` is several times slower on CPU for
    the short rows (K frames) of temporal attention. Every row must allow at least one entry.
    """
    x = logits.float().masked_fill(~allowed, float("-inf"))
    x = (x - x.amax(-1, keepdim=True)).exp_()
    return (x / x.sum(-1, keepdim=True)).to(logits.dtype)


def check_heads(channels: int, num_heads: int) -> None:
    """Raise a ConfigError when `num_heads` does not divide an attention block's channels."""
    if num_heads < 1 or channels % num_heads:
        raise ConfigError(
            f"num_heads={num_heads} does not divide the {channels} channels of an attention block; "
            "choose a head count that divides every attention block's channel count."
        )


class SpatialAttention(nn.Module):
    """Multi-head self-attention over the pixels of each frame."""

    def __init__(self, channels: int, num_heads: int, use_sdpa: bool = True) -> None:
        super().__init__()
        check_heads(channels, num_heads)
        self.num_heads = num_heads
        self.use_sdpa = use_sdpa  # False: explicit softmax(q k^T) v, for comparisons
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj_out = zero_init(nn.Linear(channels, channels))
        self.norm = GroupNorm32(channels, "attention block")

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n, c, height, width = h.shape
        # (N, C, H, W) in channels-last memory is (N, pixels, C) without a copy.
        x = self.norm(h).permute(0, 2, 3, 1).reshape(n, height * width, c)
        qkv = project(x, self.qkv).unflatten(-1, (3, self.num_heads, c // self.num_heads))
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (N, heads, P, C/heads) views
        if self.use_sdpa:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            weights = torch.softmax(((q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)).float(), dim=-1)
            out = weights.to(v.dtype) @ v
        x = x + project(out.transpose(1, 2).reshape(n, height * width, c), self.proj_out)
        return x.view(n, height, width, c).permute(0, 3, 1, 2)


class TemporalAttention(nn.Module):
    """Multi-head self-attention over the frames at each pixel, with relative position encodings."""

    def __init__(self, channels: int, num_heads: int, emb_channels: int, use_rpe_net: bool, max_frames: int) -> None:
        super().__init__()
        check_heads(channels, num_heads)
        self.num_heads = num_heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj_out = zero_init(nn.Linear(channels, channels))
        self.norm = GroupNorm32(channels, "attention block")
        rpe_args = (channels, num_heads, emb_channels, use_rpe_net, max_frames)
        self.rpe_q = RelativePositionEncoding(*rpe_args)
        self.rpe_k = RelativePositionEncoding(*rpe_args)
        self.rpe_v = RelativePositionEncoding(*rpe_args)

    def forward(self, h: torch.Tensor, ctx: FrameContext) -> torch.Tensor:
        bk, c, height, width = h.shape
        b, k = ctx.batch, ctx.frames
        heads = self.num_heads
        # One copy from channels-last (B, frames, pixels, C) memory into (B, pixels, frames, C).
        pixels = h.permute(0, 2, 3, 1).reshape(b, k, height * width, c)
        x = pixels.transpose(1, 2).reshape(b * height * width, k, c)
        norm = self.norm
        x = group_norm_rows(x, norm.weight, norm.bias, norm.eps).view(b, height * width, k, c)
        q, key, v = project(x.flatten(0, 1), self.qkv).view(b, -1, k, 3, heads, c // heads).unbind(3)
        scale = (c // heads) ** -0.5
        q = q * scale
        logits = q.transpose(2, 3) @ key.permute(0, 1, 3, 4, 2)  # (B, P, heads, K, K)
        logits = logits + torch.einsum("bpthf,btshf->bphts", q, self.rpe_k(ctx).to(q.dtype))
        logits = logits + torch.einsum("bpshf,bsthf->bphts", key * scale, self.rpe_q(ctx).to(q.dtype))
        weights = masked_softmax(logits, ctx.allowed[:, None, None])
        out = (weights @ v.transpose(2, 3)).transpose(2, 3)  # (B, P, K, heads, F)
        out = out + torch.einsum("bphts,btshf->bpthf", weights, self.rpe_v(ctx).to(weights.dtype))
        x = x + project(out.flatten(3).flatten(0, 1), self.proj_out).view_as(x)
        return x.transpose(1, 2).reshape(bk, height, width, c).permute(0, 3, 1, 2)


class FactorizedAttention(ContextLayer):
    """Temporal attention across the K frames at each pixel, then spatial attention within frames."""

    def __init__(self, channels: int, num_heads: int, emb_channels: int, use_rpe_net: bool, max_frames: int) -> None:
        super().__init__()
        self.spatial_attention = SpatialAttention(channels, num_heads)
        self.temporal_attention = TemporalAttention(channels, num_heads, emb_channels, use_rpe_net, max_frames)

    def forward(self, h: torch.Tensor, ctx: FrameContext) -> torch.Tensor:
        out = self.spatial_attention(self.temporal_attention(h, ctx))
        if h.is_contiguous(memory_format=torch.channels_last):
            return out
        return out.contiguous()  # keep the caller's NCHW layout
