"""The `flexvid sample` job: complete test videos (or sample unconditional ones) with a scheme,
writing `samples/sample_NNNN-K.npy` files that an interrupted job skips when run again."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from flexvid.checkpoint import Pretrained, load_pretrained
from flexvid.config import DiffusionConfig, dataclass_from_dict
from flexvid.data.base import build_dataset
from flexvid.diffusion import respaced, samplers
from flexvid.errors import ConfigError, DatasetError
from flexvid.files import atomic_write_json, exclusive_lock
from flexvid.sampling.engine import SampleFn
from flexvid.schemes.stage import Stage
from flexvid.sampling.long_video import chunk_plan, generate_long
from flexvid.sampling.outputs import NpyStreamWriter
from flexvid.schemes import scheme_stages
from flexvid.video_io import to_uint8


@dataclass
class SampleSettings:
    """Everything that decides which videos are generated and how; saved as settings.json."""

    checkpoint: str
    sampling_scheme: str
    n_obs: int | None = None  # observed frames from each test video; None: K, one network call's worth
    T: int | None = None  # video length; None: the length the model was trained on
    max_frames: int | None = None  # K; None: as trained
    max_latent_frames: int | None = None  # latent frames per stage; None: K // 2
    batch_size: int = 8
    start_index: int = 0
    stop_index: int | None = None  # None: start_index + batch_size
    sample_idx: int = 0
    sampler: str = "ddim"  # ddpm | ddim (benchmarks/bench_samplers.py compares them)
    steps: int | None = 50  # diffusion steps; None: all trained steps
    eta: float = 0.0  # DDIM noise (0: deterministic; 1: DDPM-like)
    seed: int = 0
    precision: str = "fp32"  # fp32 | bf16
    eval_dir: str | None = None
    data_dir: str | None = None  # None: as in the checkpoint's config
    chunk_length: int | None = None  # longer videos are made in chunks of this many frames
    context: int | None = None  # frames each chunk conditions on; None: n_obs or K // 2
    batch_stages: bool = True
    max_batch: int = 64  # network-call rows when stages are batched
    clip_denoised: bool = True
    device: str = "cpu"


SAMPLERS = ("ddpm", "ddim")


def check_settings(settings: SampleSettings) -> None:
    """Raise ConfigError for settings that would silently do other work than asked (or none)."""
    at_least = {"batch_size": 1, "max_batch": 1, "start_index": 0, "sample_idx": 0, "seed": 0}
    optional_at_least = {"n_obs": 0, "T": 1, "max_frames": 2, "max_latent_frames": 1, "steps": 1, "chunk_length": 1, "context": 1}
    checks = [(name, low, getattr(settings, name)) for name, low in at_least.items()]
    checks += [
        (name, low, getattr(settings, name)) for name, low in optional_at_least.items()
        if getattr(settings, name) is not None
    ]
    for name, low, value in checks:
        if value < low:
            raise ConfigError(f"--{name} must be at least {low}, got {value}; fix --{name}.")
    if settings.stop_index is not None and settings.stop_index <= settings.start_index:
        raise ConfigError(
            f"--stop_index ({settings.stop_index}) must be above --start_index ({settings.start_index}), "
            "or there is nothing to sample; raise --stop_index."
        )
    if not math.isfinite(settings.eta) or settings.eta < 0:
        raise ConfigError(f"--eta must be a finite number of at least 0, got {settings.eta}; fix --eta.")
    if settings.sampler not in SAMPLERS:
        raise ConfigError(f"Unknown sampler {settings.sampler!r}; choose one of {', '.join(SAMPLERS)}.")
    try:
        device = torch.device(settings.device)
    except RuntimeError:
        raise ConfigError(f"Unknown device {settings.device!r}; use cpu or cuda.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {settings.device} was asked for but no CUDA GPU is available; use --device cpu.")


def default_eval_dir(settings: SampleSettings, max_latent_frames: int, max_frames: int, T: int) -> Path:
    """results/<checkpoint name>[_<sampler><steps>]/<scheme>_<K>_<latent>_<T>_<n_obs>, as the reference."""
    checkpoint = Path(settings.checkpoint)
    name = checkpoint.stem if checkpoint.is_file() else checkpoint.name
    if settings.sampler != "ddpm" or settings.steps is not None:
        name += f"_{settings.sampler}{settings.steps or ''}"
    scheme = Path(settings.sampling_scheme).stem
    return Path("results") / name / f"{scheme}_{max_frames}_{max_latent_frames}_{T}_{settings.n_obs}"


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
    if precision == "fp32":
        return model
    if precision != "bf16":
        raise ConfigError(f"Unknown precision {precision!r}; use fp32 or bf16.")
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


def check_writable(directory: Path) -> None:
    """Fail early, in one sentence, when outputs cannot be written to `directory`."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"Cannot create the output directory {directory}: {err.strerror}; choose another --eval_dir.") from None
    if not os.access(directory, os.W_OK):
        raise ConfigError(f"The output directory {directory} is not writable; choose another --eval_dir.")


class SampleJob:
    """Resolves settings against the checkpoint, then generates the missing sample files."""

    def __init__(self, settings: SampleSettings, pretrained: Pretrained | None = None) -> None:
        check_settings(settings)
        self.settings = settings
        self.pretrained = pretrained or load_pretrained(settings.checkpoint, device=settings.device)
        config = self.pretrained.config
        model_cfg, data_cfg = config["model"], config.get("data", {})
        self.max_frames = settings.max_frames or data_cfg.get("max_frames") or model_cfg.get("max_frames")
        self.max_latent_frames = settings.max_latent_frames or self.max_frames // 2
        if settings.n_obs is None:
            settings = self.settings = dataclasses.replace(settings, n_obs=self.max_frames)
        self.dataset_name = data_cfg.get("dataset")
        self.data_dir = settings.data_dir or data_cfg.get("data_dir")
        self.train_T = data_cfg.get("T")
        self.dataset = None
        if settings.n_obs > 0:
            self.dataset = self._test_dataset()
            self.train_T = self.train_T or self.dataset.T
            if settings.n_obs > self.dataset.T:
                raise ConfigError(
                    f"n_obs ({settings.n_obs}) is more than the {self.dataset.T} frames of each test video; "
                    f"observe at most {self.dataset.T} frames."
                )
        self.T = settings.T or self.train_T
        if self.T is None:
            raise ConfigError("The checkpoint does not record a video length; pass --T.")
        if settings.n_obs > self.T:
            raise ConfigError(f"n_obs ({settings.n_obs}) is larger than the video length T ({self.T}).")
        self.chunk_length = settings.chunk_length or max(self.train_T or self.T, self.max_frames)
        self.context = settings.context or (settings.n_obs if 0 < settings.n_obs < self.chunk_length else self.max_frames // 2)
        self.frame_shape = (model_cfg["in_channels"], model_cfg["image_size"], model_cfg["image_size"])
        self.eval_dir = Path(settings.eval_dir) if settings.eval_dir else default_eval_dir(
            settings, self.max_latent_frames, self.max_frames, self.T
        )
        # Validate the scheme for every chunk shape before any network call.
        self.plan = chunk_plan(self.T, settings.n_obs, self.chunk_length, self.context)
        self.stages_by_shape = {
            (length, known): self._scheme_stages(length, known) for _, length, known in self.plan
        }

    def _test_dataset(self):
        """The test split the observed frames come from, with a clear error when it is missing."""
        try:
            return build_dataset(self.dataset_name, "test", T=self.train_T, image_size=self.pretrained.config["model"]["image_size"], data_dir=self.data_dir)
        except DatasetError as err:
            raise DatasetError(
                f"Cannot load the test videos to condition on ({err}) Pass --data_dir, or use --n_obs 0 "
                "for unconditional videos."
            ) from None

    def make_stages(self, video_length: int, n_obs: int) -> list[Stage]:
        """The stages for one chunk (computed and validated up front)."""
        return self.stages_by_shape[(video_length, n_obs)]

    def _scheme_stages(self, video_length: int, n_obs: int) -> list[Stage]:
        """The validated stages of the chosen scheme for one chunk."""
        return scheme_stages(
            self.settings.sampling_scheme,
            video_length=video_length,
            num_observed_frames=n_obs,
            max_frames=self.max_frames,
            step_size=self.max_latent_frames,
        )

    def indices(self) -> list[int]:
        """The dataset indices (or unconditional sample numbers) this job covers."""
        stop = self.settings.stop_index
        if stop is None:
            stop = self.settings.start_index + self.settings.batch_size
        if self.dataset is not None and stop > len(self.dataset):
            raise DatasetError(f"stop_index {stop} is past the {len(self.dataset)} test videos; lower --stop_index.")
        return list(range(self.settings.start_index, stop))

    def output_path(self, index: int) -> Path:
        return self.eval_dir / "samples" / f"sample_{index:04d}-{self.settings.sample_idx}.npy"

    def resolved(self) -> dict[str, Any]:
        """The settings with every default filled in, as saved to settings.json."""
        values = asdict(self.settings)
        values.update(
            T=self.T, max_frames=self.max_frames, max_latent_frames=self.max_latent_frames,
            chunk_length=self.chunk_length, context=self.context, eval_dir=str(self.eval_dir),
            dataset=self.dataset_name, data_dir=self.data_dir, image_size=self.frame_shape[1],
            channels=self.frame_shape[0], train_T=self.train_T,
        )
        return values

    def run(self, progress: bool = True) -> list[Path]:
        """Generate every missing sample file and return the paths of all files of this job."""
        check_writable(self.eval_dir / "samples")
        with exclusive_lock(self.eval_dir, "--eval_dir"):
            return self._run_locked(progress)

    def _run_locked(self, progress: bool) -> list[Path]:
        """`run`, while this job holds the evaluation directory's lock."""
        settings = self.settings
        for stale in (self.eval_dir / "samples").glob(".sample_*.tmp"):  # partial videos of a killed job
            stale.unlink()
        atomic_write_json(self.eval_dir / "settings.json", self.resolved(), sort_keys=True, default=str)
        todo = [i for i in self.indices() if not self.output_path(i).exists()]
        diffusion_config = dataclass_from_dict(DiffusionConfig, self.pretrained.config["diffusion"])
        diffusion, sample_fn = make_sample_fn(settings, diffusion_config)
        model = with_precision(self.pretrained.model, settings.precision, settings.device)
        stages_per_video = sum(len(self.stages_by_shape[(length, known)]) for _, length, known in self.plan)
        bar = tqdm(total=stages_per_video * len(todo), unit="stage", desc="sampling", disable=not progress)
        for start in range(0, len(todo), settings.batch_size):
            batch = todo[start : start + settings.batch_size]
            self._generate_batch(model, diffusion, sample_fn, batch, bar)
        bar.close()
        return [self.output_path(i) for i in self.indices()]

    def _generate_batch(self, model, diffusion, sample_fn: SampleFn, batch: list[int], bar) -> None:
        settings = self.settings
        observed = torch.zeros(len(batch), settings.n_obs, *self.frame_shape)
        for row, index in enumerate(batch):
            if self.dataset is not None:  # read only the observed frames, not the whole test video
                observed[row] = self.dataset.clip(index, list(range(settings.n_obs)))[0]
        writers = [NpyStreamWriter(self.output_path(i), (self.T, *self.frame_shape)) for i in batch]
        try:
            generate_long(
                model, diffusion, observed, self.T, self.make_stages, sample_fn,
                lambda _start, frames: [w.write(to_uint8(frames[row])) for row, w in enumerate(writers)],
                chunk_length=self.chunk_length, context=self.context,
                seed=settings.seed * 1_000_003 + settings.sample_idx, video_keys=batch,
                batch_stages=settings.batch_stages, max_batch=settings.max_batch,
                device=settings.device, on_rows=bar.update,
            )
        except BaseException:
            for writer in writers:
                writer.abort()
            raise
        for writer in writers:
            writer.close()

