"""The FDM video network: an improved-diffusion U-Net applied per frame, with factorized attention.

Parameter names match the reference implementation's `UNetVideoModel`, so its state dicts load
with `load_state_dict` unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from flexvid.config import ModelConfig
from flexvid.errors import ConfigError, ModelInputError
from flexvid.nn.attention import FactorizedAttention, check_heads
from flexvid.nn.layers import (
    ContextLayer,
    Downsample,
    FrameContext,
    GroupNorm32,
    ResBlock,
    Upsample,
    timestep_embedding,
    zero_init,
)
from flexvid.nn.rpe import distance_features, frame_distances, table_rows


class Stage(nn.Sequential):
    """A run of layers; ResBlocks and attention get the FrameContext, resampling layers do not."""

    def __init__(self, *layers: nn.Module, use_checkpoint: bool = False) -> None:
        super().__init__(*layers)
        self.use_checkpoint = use_checkpoint

    def forward(self, h: torch.Tensor, ctx: FrameContext) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            if not isinstance(layer, ContextLayer):
                h = layer(h)
            elif self.use_checkpoint and self.training and torch.is_grad_enabled():
                h = checkpoint(layer, h, ctx, use_reentrant=False)
            else:
                h = layer(h, ctx)
        return h


def attention_downsample_rates(config: ModelConfig, num_levels: int) -> set[int]:
    """Downsampling factors whose feature maps get attention, checked against the U-Net's sizes."""
    sizes = [config.image_size // 2**level for level in range(num_levels)]
    for res in config.attention_resolutions:
        if res not in sizes:
            raise ConfigError(
                f"attention_resolutions contains {res}, which is not a feature-map size of this "
                f"U-Net; choose from {sizes}."
            )
    return {config.image_size // res for res in config.attention_resolutions}


class UNetVideo(nn.Module):
    """Denoising network over K frames: epsilon (and variance values when learned) for every frame."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.channels_last = True  # memory layout of the hidden states; False: plain NCHW
        channel_mult = config.resolved_channel_mult()
        mc = config.num_channels
        if mc % 32:
            raise ConfigError(f"num_channels={mc} is not divisible by the 32 GroupNorm groups; use a multiple of 32.")
        heads_up = config.num_heads if config.num_heads_upsample == -1 else config.num_heads_upsample
        attention_ds = attention_downsample_rates(config, len(channel_mult))
        emb_dim = 4 * mc
        self.out_channels = config.in_channels * (2 if config.learn_sigma else 1)
        ckpt = config.use_checkpoint

        def res_block(ch_in: int, ch_out: int) -> ResBlock:
            return ResBlock(ch_in, emb_dim, config.dropout, ch_out, config.use_scale_shift_norm)

        def attention(ch: int, heads: int) -> FactorizedAttention:
            check_heads(ch, heads)
            return FactorizedAttention(ch, heads, emb_dim, config.use_rpe_net, config.max_frames)

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.input_blocks = nn.ModuleList(
            [Stage(nn.Conv2d(config.in_channels + 1, mc, 3, padding=1), use_checkpoint=ckpt)]
        )
        skip_channels = [mc]
        ch, ds = mc, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [res_block(ch, mult * mc)]
                ch = mult * mc
                if ds in attention_ds:
                    layers.append(attention(ch, config.num_heads))
                self.input_blocks.append(Stage(*layers, use_checkpoint=ckpt))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(Stage(Downsample(ch), use_checkpoint=ckpt))
                skip_channels.append(ch)
                ds *= 2

        self.middle_block = Stage(
            res_block(ch, ch), attention(ch, config.num_heads), res_block(ch, ch), use_checkpoint=ckpt
        )

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(config.num_res_blocks + 1):
                layers = [res_block(ch + skip_channels.pop(), mc * mult)]
                ch = mc * mult
                if ds in attention_ds:
                    layers.append(attention(ch, heads_up))
                if level and i == config.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(Stage(*layers, use_checkpoint=ckpt))

        self.out = nn.Sequential(
            GroupNorm32(ch, "output layer"),
            nn.SiLU(),
            zero_init(nn.Conv2d(mc, self.out_channels, 3, padding=1)),
        )

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        frame_indices: torch.Tensor,
        obs_mask: torch.Tensor,
        latent_mask: torch.Tensor,
        x0: torch.Tensor,
    ) -> torch.Tensor:
        """Epsilon (B, K, C, H, W), or (B, K, 2C, H, W) with learned variance, for noisy frames `x`.

        Observed frames (obs_mask 1) enter as their clean values from `x0` plus a 0/1 indicator
        channel; frames that are neither observed nor latent are padding and attend only to padding.
        """
        self._check_inputs(x, timesteps, frame_indices, obs_mask, latent_mask, x0)
        b, k, _, height, width = x.shape
        ctx = self._frame_context(timesteps, frame_indices, obs_mask, latent_mask)
        indicator = obs_mask.to(x.dtype).expand(b, k, 1, height, width)
        h = torch.cat([x * (1 - obs_mask) + x0 * obs_mask, indicator], dim=2).flatten(0, 1)
        if self.channels_last:  # faster convolutions, and both attentions read it without copies
            h = h.contiguous(memory_format=torch.channels_last)
        skips = []
        for block in self.input_blocks:
            h = block(h, ctx)
            skips.append(h)
        h = self.middle_block(h, ctx)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), ctx)
        norm, _, conv = self.out  # the norm applies the SiLU that follows it
        out = conv(norm(h, silu=True))
        return out.contiguous().view(b, k, self.out_channels, height, width)

    def _frame_context(
        self,
        timesteps: torch.Tensor,
        frame_indices: torch.Tensor,
        obs_mask: torch.Tensor,
        latent_mask: torch.Tensor,
    ) -> FrameContext:
        """Everything the blocks share: frame embeddings, the attention mask and frame distances."""
        b, k = frame_indices.shape
        emb = self.time_embed(timestep_embedding(timesteps, self.config.num_channels))
        real = (obs_mask + latent_mask).clamp(max=1).view(b, k)
        distances = frame_distances(frame_indices)
        use_net = self.config.use_rpe_net
        return FrameContext(
            batch=b,
            frames=k,
            emb=emb.repeat_interleave(k, dim=0),
            allowed=real[:, :, None] == real[:, None, :],
            distance_features=distance_features(distances) if use_net else None,
            table_index=None if use_net else table_rows(distances, self.config.max_frames - 1),
        )

    def _check_inputs(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        frame_indices: torch.Tensor,
        obs_mask: torch.Tensor,
        latent_mask: torch.Tensor,
        x0: torch.Tensor,
    ) -> None:
        """Raise a ModelInputError naming the first input whose shape does not fit."""
        c = self.config.in_channels
        if x.dim() != 5 or x.shape[2] != c:
            raise ModelInputError(f"x has shape {tuple(x.shape)}, but the network expects (B, K, {c}, H, W) videos.")
        b, k, _, height, width = x.shape
        levels = len(self.config.resolved_channel_mult()) - 1
        if height % 2**levels or width % 2**levels:
            raise ModelInputError(
                f"Frames of size {height}x{width} cannot be halved {levels} times by the U-Net; "
                f"use the model's image_size {self.config.image_size}."
            )
        expected = {
            "x0": (x0, (b, k, c, height, width)),
            "timesteps": (timesteps, (b,)),
            "frame_indices": (frame_indices, (b, k)),
            "obs_mask": (obs_mask, (b, k, 1, 1, 1)),
            "latent_mask": (latent_mask, (b, k, 1, 1, 1)),
        }
        for name, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != shape:
                raise ModelInputError(
                    f"{name} has shape {tuple(tensor.shape)} but must be {shape} for x of shape {tuple(x.shape)}."
                )
