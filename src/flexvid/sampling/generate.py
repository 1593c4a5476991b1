"""Generation from a checkpoint: `VideoGenerator` (settings resolved against the checkpoint, every stage
planned before the first network call) and `generate`, the Python API that returns the videos as a tensor.

`flexvid sample` runs the same `VideoGenerator`, streaming frames to files instead of collecting them,
so the API and the command make the same videos from the same settings and observed frames.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from flexvid.checkpoint import Pretrained, load_pretrained
from flexvid.config import DiffusionConfig
from flexvid.diffusion import respaced, samplers
from flexvid.errors import ConfigError
from flexvid.run_config import RunConfig
from flexvid.sampling.engine import SampleFn, Stages
from flexvid.sampling.long_video import chunk_plan, generate_long
from flexvid.sampling.settings import DEFAULTS, PRECISIONS, SampleSettings, check_settings
from flexvid.schemes import latent_frames_per_stage, scheme_stages
from flexvid.seeding import Stream, derive_seed


def make_sample_fn(settings: SampleSettings, diffusion_config: DiffusionConfig) -> tuple[object, SampleFn]:
    """The respaced diffusion and the sampler function chosen by the settings."""
    diffusion = respaced(diffusion_config, settings.steps or diffusion_config.diffusion_steps, settings.sampler)
    if settings.sampler == "ddim":
        fn = functools.partial(samplers.ddim_sample, eta=settings.eta, clip_denoised=settings.clip_denoised)
    else:
        fn = functools.partial(samplers.ddpm_sample, clip_denoised=settings.clip_denoised)
    return diffusion, fn


def with_precision(model: torch.nn.Module, precision: str, device: str) -> torch.nn.Module:
    """The model, run under bf16 autocast when asked (outputs come back as float32)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if precision == "fp32":
        return model
    return AutocastModel(model, torch.device(device).type)


class AutocastModel(torch.nn.Module):
    """Runs the wrapped network under bf16 autocast and returns float32."""

    def __init__(self, model: torch.nn.Module, device_type: str) -> None:
        super().__init__()
        self.model = model
        self.device_type = device_type

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.model(*args, **kwargs).float()


def observed_count(settings: SampleSettings, config: RunConfig) -> int:
    """n_obs, the observed frames at the start of each video: as set, else K, one network call's worth."""
    return settings.n_obs if settings.n_obs is not None else settings.max_frames or config.data.max_frames


class VideoGenerator:
    """A checkpoint and generation settings, resolved and validated for every chunk before any network call."""

    def __init__(self, pretrained: Pretrained, settings: SampleSettings, train_T: int | None = None) -> None:
        check_settings(settings)
        config = pretrained.config
        self.max_frames = settings.max_frames or config.data.max_frames
        self.max_latent_frames = latent_frames_per_stage(self.max_frames, settings.max_latent_frames)
        self.n_obs = observed_count(settings, config)
        self.train_T = config.data.T or train_T
        T = settings.T or self.train_T
        if T is None:
            raise ConfigError("The checkpoint does not record a video length; give T (--T).")
        self.T: int = T
        if self.n_obs > self.T:
            raise ConfigError(
                f"The video length T ({self.T}) is shorter than the {self.n_obs} observed frames; "
                "raise T or observe fewer frames (n_obs)."
            )
        self.chunk_length = settings.chunk_length or max(self.train_T or self.T, self.max_frames)
        self.context = settings.context or (self.n_obs if 0 < self.n_obs < self.chunk_length else self.max_frames // 2)
        self.frame_shape = config.frame_shape
        self.settings = dataclasses.replace(settings, n_obs=self.n_obs)
        self.plan = chunk_plan(self.T, self.n_obs, self.chunk_length, self.context)
        self.stages_by_shape = {(length, known): self._scheme_stages(length, known) for _, length, known in self.plan}
        self.steps = settings.steps or config.diffusion.diffusion_steps
        self.diffusion, self.sample_fn = make_sample_fn(settings, config.diffusion)
        self.model = with_precision(pretrained.model, settings.precision, settings.device)

    def _scheme_stages(self, video_length: int, n_obs: int) -> Stages:
        """The validated stages (or adaptive plan) of the chosen scheme for one chunk."""
        return scheme_stages(
            self.settings.sampling_scheme,
            video_length=video_length,
            num_observed_frames=n_obs,
            max_frames=self.max_frames,
            step_size=self.max_latent_frames,
        )

    def make_stages(self, video_length: int, n_obs: int) -> Stages:
        """The stages for one chunk (computed and validated up front)."""
        return self.stages_by_shape[(video_length, n_obs)]

    @property
    def stages_per_video(self) -> int:
        """Network-call rows one video takes, for progress bars."""
        return sum(len(self.stages_by_shape[(length, known)]) for _, length, known in self.plan)

    def run(
        self,
        observed: torch.Tensor,
        video_keys: Sequence[int],
        emit: Callable[[int, torch.Tensor], None],
        on_rows: Callable[[int], object] | None = None,
    ) -> None:
        """Generate T frames per video from `observed` (B, n_obs, C, H, W) in [-1, 1], handing finished
        frames to `emit(start, frames)`; `video_keys` seed each video, so its frames do not depend on its batch."""
        settings = self.settings
        generate_long(
            self.model,
            self.diffusion,
            observed,
            self.T,
            self.make_stages,
            self.sample_fn,
            emit,
            chunk_length=self.chunk_length,
            context=self.context,
            seed=derive_seed(Stream.SAMPLE_RUN, settings.seed, settings.sample_idx),
            video_keys=video_keys,
            batch_stages=settings.batch_stages,
            max_batch=settings.max_batch,
            device=settings.device,
            on_rows=on_rows,
        )


@dataclass(frozen=True)
class GeneratedVideo:
    """What `generate` returns: the videos and which of their frames were given rather than generated."""

    video: (
        torch.Tensor
    )  # (B, T, C, H, W), or (T, C, H, W) for one video given without a batch axis; CPU float32 in [-1, 1]
    observed_mask: torch.Tensor  # (T,) bool: True for the frames that came in as `observed`


def _as_batch(observed: Any, frame_shape: tuple[int, int, int]) -> torch.Tensor:
    """`observed` checked against the model and given a batch axis, as float32."""
    if not isinstance(observed, torch.Tensor):
        raise ConfigError(
            f"observed must be a torch.Tensor of frames, got {type(observed).__name__}; convert it with "
            "torch.as_tensor."
        )
    if observed.dim() not in (4, 5):
        raise ConfigError(
            f"observed has shape {tuple(observed.shape)}; give frames shaped (B, n, C, H, W) or (n, C, H, W)."
        )
    batch = observed if observed.dim() == 5 else observed.unsqueeze(0)
    channels, height, width = batch.shape[2:]
    if channels != frame_shape[0]:
        raise ConfigError(
            f"observed frames have {channels} channel(s) but the model takes {frame_shape[0]}; "
            "give frames shaped (B, n, C, H, W) with the model's channel count."
        )
    if (height, width) != frame_shape[1:]:
        raise ConfigError(
            f"observed frames are {height}x{width} but the model makes {frame_shape[1]}x{frame_shape[2]} frames; "
            "resize them to the model's image size."
        )
    if batch.shape[0] == 0:
        raise ConfigError("observed holds no videos; give at least one, shaped (B, n, C, H, W).")
    if not batch.is_floating_point():
        raise ConfigError(f"observed frames are {batch.dtype}; give floats in [-1, 1] (uint8 frames: x / 127.5 - 1).")
    batch = batch.float()
    if batch.numel() and not (torch.isfinite(batch).all() and batch.min() >= -1 and batch.max() <= 1):
        raise ConfigError(
            "observed frames must be finite and within [-1, 1]; rescale (uint8: x / 127.5 - 1) or clamp them."
        )
    return batch


def _resolve_pretrained(
    pretrained: Pretrained | str | os.PathLike, device: str | torch.device | None
) -> tuple[Pretrained, str]:
    """The loaded checkpoint and the device to generate on (where its network is, unless `device` says)."""
    if not isinstance(pretrained, Pretrained):
        device = str(device or DEFAULTS.device)
        return load_pretrained(pretrained, device=device), device
    model_device = next(pretrained.model.parameters()).device
    if device is not None and torch.device(device) != model_device:
        raise ConfigError(
            f"The network is on {model_device} but device {device} was asked for; load it with "
            f"load_pretrained(..., device={str(device)!r}) or drop device."
        )
    return pretrained, str(model_device)


def generate(
    pretrained: Pretrained | str | os.PathLike,
    observed: torch.Tensor,
    *,
    T: int | None = DEFAULTS.T,
    scheme: str = DEFAULTS.sampling_scheme,
    sampler: str = DEFAULTS.sampler,
    steps: int | None = DEFAULTS.steps,
    eta: float = DEFAULTS.eta,
    seed: int = DEFAULTS.seed,
    sample_idx: int = DEFAULTS.sample_idx,
    video_ids: Sequence[int] | None = None,
    precision: str = DEFAULTS.precision,
    max_frames: int | None = DEFAULTS.max_frames,
    max_latent_frames: int | None = DEFAULTS.max_latent_frames,
    chunk_length: int | None = DEFAULTS.chunk_length,
    context: int | None = DEFAULTS.context,
    max_batch: int = DEFAULTS.max_batch,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> GeneratedVideo:
    """Complete videos of T frames from their first frames, with a sampling scheme; no dataset or folder needed.

    `pretrained` is what `flexvid.load_pretrained` returns, or a path it accepts. `observed` holds the
    first n frames of each video, float in [-1, 1], shaped (B, n, C, H, W) or (n, C, H, W) (n = 0:
    unconditional). They come back unchanged as the first n frames. `T` defaults to the training clip
    length. Each video draws its noise from (seed, sample_idx, its id), ids being `video_ids` (default
    0..B-1), so a video does not depend on the others in the batch, and `flexvid sample` with the same
    settings makes the same video for test video i as this with id i. Other settings mean what the
    `flexvid sample` flags of the same names mean. `device` defaults to where the network is.
    """
    pretrained, device = _resolve_pretrained(pretrained, device)
    settings = SampleSettings(
        checkpoint="",
        sampling_scheme=scheme,
        T=T,
        max_frames=max_frames,
        max_latent_frames=max_latent_frames,
        sample_idx=sample_idx,
        sampler=sampler,
        steps=steps,
        eta=eta,
        seed=seed,
        precision=precision,
        chunk_length=chunk_length,
        context=context,
        max_batch=max_batch,
        device=device,
    )
    frame_shape = pretrained.config.frame_shape
    batch = _as_batch(observed, frame_shape)
    generator = VideoGenerator(pretrained, dataclasses.replace(settings, n_obs=batch.shape[1]))
    ids = list(range(batch.shape[0])) if video_ids is None else [int(i) for i in video_ids]
    if len(ids) != batch.shape[0]:
        raise ConfigError(f"Got {len(ids)} video_ids for {batch.shape[0]} videos; give one id per video.")
    videos = torch.empty(batch.shape[0], generator.T, *frame_shape)

    def keep(start: int, frames: torch.Tensor) -> None:
        videos[:, start : start + frames.shape[1]] = frames

    bar = tqdm(total=generator.stages_per_video * len(ids), unit="stage", desc="sampling", disable=not progress)
    generator.run(batch, ids, keep, on_rows=bar.update)
    bar.close()
    mask = torch.arange(generator.T) < batch.shape[1]
    return GeneratedVideo(video=videos if observed.dim() == 5 else videos[0], observed_mask=mask)
