"""Relative position encodings over frame-index distances, for the temporal attention.

Each encoding maps the distance d = index_t - index_s of a (query t, key s) frame pair to one
vector per head, either with a small network (features log(1+max(d,0)), log(1+max(-d,0)), [d==0]
plus a projection of the timestep embedding) or with a learned look-up table indexed by d.
"""

from __future__ import annotations

import torch
from torch import nn

from flexvid.errors import FrameIndexError
from flexvid.nn.layers import FrameContext, zero_init


def frame_distances(frame_indices: torch.Tensor) -> torch.Tensor:
    """Pairwise distances (B, K, K): entry [b, t, s] is frame_indices[b, t] - frame_indices[b, s]."""
    return frame_indices[:, :, None] - frame_indices[:, None, :]


def distance_features(distances: torch.Tensor) -> torch.Tensor:
    """The RPE network's inputs (B, K, K, 3): log(1+max(d,0)), log(1+max(-d,0)) and [d==0]."""
    return torch.stack(
        [
            torch.log(1 + distances.clamp(min=0).float()),
            torch.log(1 + (-distances).clamp(min=0).float()),
            (distances == 0).float(),
        ],
        dim=-1,
    )


def table_rows(distances: torch.Tensor, max_distance: int) -> torch.Tensor:
    """Look-up-table rows of the distances: d for d >= 0 and 2*max_distance+1+d for d < 0.

    Negative distances wrap around the end of the table, as Python indexing does in the reference.
    """
    largest = int(distances.abs().max()) if distances.numel() else 0
    if largest > max_distance:
        raise FrameIndexError(
            f"Frame indices {largest} apart exceed the look-up-table encodings' range of "
            f"{max_distance} (max_frames - 1); use frames closer together or a model with use_rpe_net."
        )
    return distances.long().remainder(2 * max_distance + 1)


class RPENet(nn.Module):
    """Small MLP from distance features and the timestep embedding to per-head encodings."""

    def __init__(self, channels: int, num_heads: int, emb_channels: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.embed_distances = nn.Linear(3, channels)
        self.embed_diffusion_time = nn.Linear(emb_channels, channels)
        self.silu = nn.SiLU()
        self.out = zero_init(nn.Linear(channels, channels))

    def forward(self, emb: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Encodings (B, K, K, heads, C/heads) from frame embeddings (B, K, E) and features (B, K, K, 3)."""
        hidden = self.embed_diffusion_time(emb)[:, :, None, :] + self.embed_distances(features)
        out = self.out(self.silu(hidden))
        return out.unflatten(-1, (self.num_heads, -1))


class RelativePositionEncoding(nn.Module):
    """One set of relative position encodings (for queries, keys or values) of a temporal attention."""

    def __init__(self, channels: int, num_heads: int, emb_channels: int, use_rpe_net: bool, max_frames: int) -> None:
        super().__init__()
        if use_rpe_net:
            self.rpe_net = RPENet(channels, num_heads, emb_channels)
        else:
            max_distance = max_frames - 1
            self.lookup_table_weight = nn.Parameter(torch.zeros(2 * max_distance + 1, num_heads, channels // num_heads))

    def forward(self, ctx: FrameContext) -> torch.Tensor:
        """Encodings R (B, K, K, heads, C/heads) of every (query frame, key frame) pair."""
        if hasattr(self, "rpe_net"):
            emb = ctx.emb.view(ctx.batch, ctx.frames, -1)
            return self.rpe_net(emb, ctx.distance_features)
        return self.lookup_table_weight[ctx.table_index]
