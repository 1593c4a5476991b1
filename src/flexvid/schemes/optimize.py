"""Computing optimised schemes (the paper's Opt. autoreg and Opt. hierarchy-2): a base scheme's latent
frames, with each stage's observed frames chosen greedily to lower the model's loss on training videos.

For every stage: start with the closest done frame before the latent frames and the closest after,
then, while the stage has free slots (max_frames minus its latent frames), add the done frame whose
addition gives the lowest epsilon-MSE of the latent frames. The MSE is estimated on `num_videos`
training videos, `num_videos / num_timesteps` of them at each of `num_timesteps` evenly spaced
diffusion steps (999, 899, ..., 99 for 1000 steps and 10 timesteps, as in the paper), with the noise
fixed per stage so that every candidate set is judged on the same draws. Candidate sets are batched
into network calls. Finished stages go to a partial file, written atomically, from which a rerun
with the same settings resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor
from tqdm.auto import tqdm

from flexvid.errors import ConfigError, DatasetError, SchemeError
from flexvid.eval.scheme_loss import latent_eps_mse
from flexvid.files import atomic_write_json, atomic_write_text
from flexvid.frame_batch import FrameBatch
from flexvid.schemes.base import SamplingScheme
from flexvid.schemes.optimized import Optimized, save_schedule
from flexvid.schemes.registry import scheme_class
from flexvid.schemes.stage import Stage
from flexvid.schemes.validate import plan_stages
from flexvid.seeding import Stream, generator, numpy_rng
from flexvid.video_io import to_uint8

PARTIAL_SUFFIX = ".partial"  # finished stages of an interrupted run: <out>.partial
OUTPUT_SUFFIXES = (".pt", ".json", ".yaml", ".yml")


@dataclass(frozen=True)
class OptimizeSettings:
    """What decides an optimised schedule (besides the model and the training videos)."""

    base: str
    video_length: int
    num_observed_frames: int
    max_frames: int
    step_size: int
    num_videos: int = 100  # training videos the loss is estimated on
    num_timesteps: int = 10  # evenly spaced diffusion steps, num_videos / num_timesteps videos each
    batch_size: int = 64  # rows per network call
    seed: int = 0  # the noise of each stage


@dataclass(frozen=True)
class StageResult:
    """One optimised stage: its observed frames and the estimated loss with them and with the base's."""

    observed: tuple[int, ...]
    loss: float
    base_loss: float


def check_settings(settings: OptimizeSettings) -> None:
    """Raise ConfigError for counts that cannot give an estimate."""
    for name in ("num_videos", "num_timesteps", "batch_size"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"--{name} must be at least 1, got {getattr(settings, name)}.")
    if settings.seed < 0:
        raise ConfigError(f"--seed must be at least 0, got {settings.seed}.")
    if settings.num_videos % settings.num_timesteps:
        raise ConfigError(
            f"--num_videos ({settings.num_videos}) must be a multiple of --num_timesteps ({settings.num_timesteps}) "
            "so that every timestep gets the same number of videos."
        )


def base_stages(settings: OptimizeSettings) -> list[Stage]:
    """The validated stages of the base scheme, whose latent frames the optimised scheme keeps."""
    cls = scheme_class(settings.base)
    if not issubclass(cls, SamplingScheme) or settings.base == "optimized":
        raise SchemeError(
            f"--base {settings.base} has no fixed stages to optimise; use a scheme such as autoreg or hierarchy-2."
        )
    scheme = cls(settings.video_length, settings.num_observed_frames, settings.max_frames, settings.step_size)
    return plan_stages(scheme)


def evaluation_timesteps(diffusion_steps: int, count: int) -> list[int]:
    """`count` evenly spaced steps from the last one down: 999, 899, ..., 99 for 1000 steps and 10."""
    if count > diffusion_steps:
        raise ConfigError(
            f"--num_timesteps ({count}) is more than the model's {diffusion_steps} diffusion steps; lower it."
        )
    return [diffusion_steps - 1 - j * diffusion_steps // count for j in range(count)]


def start_frames(latent: Sequence[int], done: Sequence[int]) -> list[int]:
    """The closest done frame before the latent frames and the closest after (where they exist)."""
    before = [i for i in done if i < min(latent)][-1:]
    after = [i for i in done if i > max(latent)][:1]
    return before + after


def greedy_evaluations(done: int, start: int, slots: int) -> int:
    """How many candidate sets the greedy search of one stage evaluates (its start set's when it adds none)."""
    rounds = range(start, min(slots, done))
    return sum(done - size for size in rounds) or 1


class SetLossEstimator:
    """The estimated epsilon-MSE of one stage's latent frames for candidate observed sets: the mean over
    fixed training videos, each at its own timestep with noise fixed for the stage."""

    def __init__(
        self,
        model: Any,
        diffusion: Any,
        videos: Tensor,
        latent: Sequence[int],
        timesteps: Tensor,
        noise: Tensor,
        *,
        batch_size: int,
        device: torch.device | str,
        on_rows: Callable[[int], object] | None = None,
    ) -> None:
        self.model, self.diffusion, self.videos = model, diffusion, videos  # videos: (V, T, C, H, W) uint8
        self.latent = list(latent)
        self.timesteps, self.noise = timesteps, noise  # (V,) and (V, len(latent), C, H, W)
        self.batch_size, self.device, self.on_rows = batch_size, torch.device(device), on_rows

    def __call__(self, observed_sets: Sequence[Sequence[int]]) -> list[float]:
        """The estimate for each observed set (all of one size)."""
        num_observed = len(observed_sets[0])
        assert all(len(observed) == num_observed for observed in observed_sets), "one network input size per call"
        rows = [(s, v) for s in range(len(observed_sets)) for v in range(self.videos.shape[0])]
        totals = torch.zeros(len(observed_sets), dtype=torch.float64)
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            indices = torch.tensor([list(observed_sets[s]) + self.latent for s, _ in chunk])
            videos = torch.tensor([v for _, v in chunk])
            frames = torch.stack([self.videos[v, index] for v, index in zip(videos.tolist(), indices, strict=True)])
            frames = frames.to(self.device).float().div_(127.5).sub_(1.0)
            batch = FrameBatch.observed_first(frames, indices.to(self.device), num_observed)
            t, noise = self.timesteps[videos].to(self.device), self.noise[videos].to(self.device)
            mse = latent_eps_mse(self.model, self.diffusion, batch, t, noise)
            totals.index_add_(0, torch.tensor([s for s, _ in chunk]), mse.double().cpu())
            if self.on_rows is not None:
                self.on_rows(len(chunk))
        return (totals / self.videos.shape[0]).tolist()


def optimize_stage(
    estimate: SetLossEstimator, latent: Sequence[int], done: Sequence[int], slots: int
) -> tuple[list[int], float]:
    """The greedy observed set of one stage and its estimated loss."""
    chosen = start_frames(latent, done)[:slots]
    loss = None
    while len(chosen) < slots and len(chosen) < len(done):
        candidates = [i for i in done if i not in chosen]
        losses = estimate([sorted(chosen + [i]) for i in candidates])
        best = int(np.argmin(losses))
        chosen.append(candidates[best])
        loss = losses[best]
    if loss is None:
        loss = estimate([sorted(chosen)])[0]
    return sorted(chosen), loss


def stage_noise(seed: int, stage: int, shape: Sequence[int]) -> Tensor:
    """The fixed noise of one stage, the same in every run with this seed."""
    return torch.randn(tuple(shape), generator=generator(Stream.OPTIMIZE_NOISE, seed, stage))


def model_digest(model: torch.nn.Module) -> str:
    """SHA-256 of the network's parameters and buffers, so a resumed run can tell the same model."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def partial_path(out: str | Path) -> Path:
    """Where the finished stages of a run writing `out` are kept until it completes."""
    out = Path(out)
    return out.with_name(out.name + PARTIAL_SUFFIX)


def read_partial(path: Path, identity: dict[str, Any]) -> dict[int, StageResult]:
    """The finished stages recorded at `path` for a run with `identity` (none when there is no file)."""
    if not path.is_file():
        return {}
    try:
        content = json.loads(path.read_text())
        recorded = dict(content["identity"])
        finished = {
            int(n): StageResult(tuple(int(i) for i in r["observed"]), float(r["loss"]), float(r["base_loss"]))
            for n, r in content["stages"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(
            f"{path} is not a partial schedule written by `flexvid schemes optimize`; delete it to start over."
        ) from None
    differing = sorted(key for key in set(recorded) | set(identity) if recorded.get(key) != identity.get(key))
    if differing:
        raise ConfigError(
            f"{path} holds stages optimised with other settings ({', '.join(differing)} differ); rerun with those "
            "settings to resume it, or delete it to start over."
        )
    return finished


def write_partial(path: Path, identity: dict[str, Any], finished: dict[int, StageResult]) -> None:
    """Record the finished stages atomically."""
    stages = {str(n): dataclasses.asdict(r) | {"observed": list(r.observed)} for n, r in sorted(finished.items())}
    atomic_write_json(path, {"identity": identity, "stages": stages})


def optimize_schedule(
    model: Any,
    diffusion: Any,
    videos: Tensor,
    settings: OptimizeSettings,
    *,
    device: torch.device | str = "cpu",
    partial: Path | None = None,
    identity: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[int, StageResult]:
    """The optimised observed frames of every conditional stage of the base scheme.

    `videos` are the training videos (num_videos, T, C, H, W), uint8; `diffusion` is the model's
    diffusion on all its steps. With `partial`, stages finished by an earlier run with the same
    `identity` (the settings and whatever else decides the result) are kept, and every stage
    finished now is added to it.
    """
    check_settings(settings)
    if tuple(videos.shape[:2]) != (settings.num_videos, settings.video_length) or videos.dtype != torch.uint8:
        raise DatasetError(
            f"Expected {settings.num_videos} uint8 training videos of {settings.video_length} frames, got "
            f"{videos.dtype} of shape {tuple(videos.shape)}."
        )
    # The batch size changes the speed only, so a run may resume with another one.
    identity = {**(identity or {}), **{k: v for k, v in dataclasses.asdict(settings).items() if k != "batch_size"}}
    stages = base_stages(settings)
    finished = read_partial(partial, identity) if partial is not None else {}
    steps = evaluation_timesteps(diffusion.num_timesteps, settings.num_timesteps)
    timesteps = torch.tensor(steps).repeat_interleave(settings.num_videos // settings.num_timesteps)

    done = set(range(settings.num_observed_frames))
    todo = []
    for number, stage in enumerate(stages):
        if stage.obs or done:  # the unconditional first stage observes nothing and is not optimised
            todo.append((number, stage, sorted(done)))
        done |= set(stage.latent)
    total = sum(
        1
        + greedy_evaluations(
            len(d),
            min(len(start_frames(s.latent, d)), settings.max_frames - len(s.latent)),
            settings.max_frames - len(s.latent),
        )
        for n, s, d in todo
        if n not in finished
    )
    bar = tqdm(total=total * settings.num_videos, unit="example", desc="optimizing", disable=not progress)
    for number, stage, done_before in todo:
        if number in finished:
            continue
        bar.set_description(f"optimizing stage {number + 1}/{len(stages)}")
        noise = stage_noise(settings.seed, number, (settings.num_videos, len(stage.latent), *videos.shape[2:]))
        estimate = SetLossEstimator(
            model,
            diffusion,
            videos,
            stage.latent,
            timesteps,
            noise,
            batch_size=settings.batch_size,
            device=device,
            on_rows=bar.update,
        )
        base_loss = estimate([stage.obs])[0]
        observed, loss = optimize_stage(estimate, stage.latent, done_before, settings.max_frames - len(stage.latent))
        finished[number] = StageResult(tuple(observed), loss, base_loss)
        if partial is not None:
            write_partial(partial, identity, finished)
    bar.close()
    return {number: finished[number] for number, _, _ in todo}


def check_output(out: str | Path) -> Path:
    """`out` as a Path, or a ConfigError unless it names a file type the result can be written as."""
    out = Path(out)
    if out.suffix not in OUTPUT_SUFFIXES:
        raise ConfigError(
            f"--out {out} must end in .pt or .json (a schedule file for the optimized scheme) or .yaml (a scheme file "
            "for `flexvid sample --sampling_scheme`)."
        )
    return out


def write_schedule(out: str | Path, results: dict[int, StageResult], settings: OptimizeSettings) -> Path:
    """Write the optimised observed frames: a schedule file (.pt, .json), or a complete scheme file (.yaml)
    naming the base scheme and its parameters; checked against the `optimized` scheme first."""
    out = check_output(out)
    schedule = {number: list(result.observed) for number, result in sorted(results.items())}
    parameters = {
        "video_length": settings.video_length,
        "num_observed_frames": settings.num_observed_frames,
        "max_frames": settings.max_frames,
        "step_size": settings.step_size,
    }
    plan_stages(Optimized(**parameters, schedule=schedule, base=settings.base))
    if out.suffix in (".yaml", ".yml"):
        content = {"scheme": "optimized", "base": settings.base, **parameters, "schedule": schedule}
        return atomic_write_text(out, yaml.safe_dump(content, sort_keys=False, default_flow_style=None))
    return save_schedule(out, schedule)


def load_training_videos(dataset: Any, count: int, seed: int = 0) -> Tensor:
    """The first `count` videos of a training split as uint8 (count, T, C, H, W), each video's random
    window drawn from an rng seeded by (seed, index) so a rerun sees the same windows."""
    if not getattr(dataset, "infinite", False) and len(dataset) < count:
        raise DatasetError(
            f"The training split has {len(dataset)} videos, fewer than --num_videos {count}; lower --num_videos."
        )
    videos = []
    for index in range(count):
        video = dataset.item(index, numpy_rng(Stream.OPTIMIZE_VIDEOS, seed, index))[0]
        videos.append(torch.from_numpy(to_uint8(video)))
    return torch.stack(videos)


__all__ = [
    "OUTPUT_SUFFIXES",
    "OptimizeSettings",
    "SetLossEstimator",
    "StageResult",
    "check_output",
    "evaluation_timesteps",
    "load_training_videos",
    "model_digest",
    "optimize_schedule",
    "partial_path",
    "start_frames",
    "write_schedule",
]
