"""The FDM training loop: AdamW + EMA on the diffusion loss of FDM training tasks, resumable exactly.

Everything random in a step is a pure function of the seed and the step (timesteps) or of the
example's global number (noise, and the data stream's videos and tasks), and the rest of the state
(weights, EMA, optimizer, gradient scaler, loss-aware sampler history, global RNGs) is checkpointed;
so a run stopped and resumed reproduces the uninterrupted run, and N processes under torchrun
reproduce one process with the same global batch (up to float reduction order).
"""

from __future__ import annotations

import contextlib
import copy
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from flexvid.config import TrainConfig
from flexvid.data.base import VideoDataset, build_dataset
from flexvid.data.loader import make_train_loader, per_process_batch, shutdown_workers
from flexvid.diffusion import build_diffusion, respaced
from flexvid.diffusion.samplers import ddim_sample
from flexvid.diffusion.timestep_samplers import create_named_schedule_sampler
from flexvid.errors import ConfigError, DatasetError, TrainingDivergedError
from flexvid.frame_batch import FrameBatch
from flexvid.nn import UNetVideo
from flexvid.run_config import RunConfig
from flexvid.schemes.stage import latent_frames_per_stage
from flexvid.seeding import Stream, generator, numpy_rng, seed_global_rngs
from flexvid.training.checkpointing import (
    capture_rng_state,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    remove_stale_temporaries,
    restore_rng_state,
    save_checkpoint,
)
from flexvid.training.config import CONFIG_FILENAME as RUN_CONFIG_FILENAME
from flexvid.training.config import save_run_config
from flexvid.training.diagnostics import conditioning_gain, sample_statistics
from flexvid.training.distributed import DistInfo, all_reduce_sum, barrier
from flexvid.training.ema import EMA
from flexvid.training.logging import Progress, RunLogger
from flexvid.training.signals import StopRequest
from flexvid.training.statistics import TrainingStatistics
from flexvid.training.video_log import log_sample_videos
from flexvid.weights import check_state_dict, load_weights

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
DIAGNOSTIC_VIDEOS = 8  # test videos in the validation batch that measures the conditioning gain


@dataclass
class TrainResult:
    """How a call to `Trainer.train` ended."""

    step: int
    checkpoint: Path | None  # the newest checkpoint written
    stopped_by: str | None = None  # signal name when SIGTERM/SIGINT ended the run early


class Trainer:
    """Trains one run: builds data, network, diffusion and optimiser from a RunConfig, then `train()`."""

    def __init__(
        self,
        config: RunConfig,
        run_dir: str | Path,
        dist_info: DistInfo | None = None,
        *,
        resume_from: str | Path | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.dist = dist_info or DistInfo(0, 1, 0, torch.device("cpu"))
        self.device = self.dist.device
        self.out = out if out is not None else sys.stderr
        if config.train is None:
            raise ValueError("A Trainer needs a config with a train section (resolve_run_config gives one).")
        self.train_config: TrainConfig = config.train
        train = self.train_config
        self.local_batch = per_process_batch(train.batch_size, self.dist.world_size)
        self._refuse_used_run_dir(resume_from)
        seed_global_rngs(Stream.PROCESS, train.seed, self.dist.rank)  # the weights' initialisation draws from them
        self.dataset = self._build_dataset("train")
        self.model = UNetVideo(config.network).to(self.device)
        if resume_from is None and train.init_from is not None:
            self._initialise_from(Path(train.init_from))
        self.diffusion = build_diffusion(config.diffusion)
        self.schedule_sampler = create_named_schedule_sampler(train.schedule_sampler, self.diffusion)
        self.optimizer, self.scaler = self._build_optimizer()
        self.ema = EMA(self.model, train.ema_rate)
        self.step = 0
        self.last_checkpoint: Path | None = None
        if resume_from is not None:
            self._restore(Path(resume_from))
        self.ddp_model = self._wrap_distributed()
        self.loader = self._build_loader()
        self._validation: FrameBatch | None = None
        self._ema_model: torch.nn.Module | None = None
        self._write_run_files()

    # ----------------------------------------------------------------------------- setup

    def _refuse_used_run_dir(self, resume_from: str | Path | None) -> None:
        """A new run (not resuming) must not start in a directory that already holds checkpoints."""
        if resume_from is None and list_checkpoints(self.run_dir):
            raise ConfigError(
                f"{self.run_dir} already holds checkpoints; continue it with --resume {self.run_dir} "
                "or choose another --run_dir."
            )

    def _build_optimizer(self) -> tuple[torch.optim.Optimizer, torch.amp.GradScaler]:
        """AdamW over the network's parameters, and the gradient scaler (active for fp16 only)."""
        train = self.train_config
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
        return optimizer, torch.amp.GradScaler(self.device.type, enabled=train.precision == "fp16")

    def _wrap_distributed(self) -> torch.nn.Module:
        """The network the steps run: under torchrun wrapped in DistributedDataParallel, else itself."""
        if not self.dist.distributed:
            return self.model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=device_ids)

    def _build_loader(self) -> DataLoader:
        """This process's endless stream of training batches, from the current step on."""
        train, data = self.train_config, self.config.data
        return make_train_loader(
            self.dataset,
            global_batch_size=train.batch_size,
            max_frames=data.max_frames,
            distribution=train.task_distribution,
            seed=train.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            start_step=self.step,
            num_workers=data.num_workers,
            pad_with_random_frames=train.pad_with_random_frames,
            observed_share=train.observed_share,
            pin_memory=self.device.type == "cuda",
        )

    def _write_run_files(self) -> None:
        """On the main process: remove a killed save's temporaries and record the run's config."""
        if self.dist.is_main:
            remove_stale_temporaries(self.run_dir)
            save_run_config(self.config, self.run_dir)

    def _build_dataset(self, split: str) -> VideoDataset:
        data = self.config.data
        dataset = build_dataset(data.dataset, split, T=data.T, image_size=data.image_size, data_dir=data.data_dir)
        if dataset.channels != data.channels:
            raise DatasetError(
                f"The {split} split of dataset {data.dataset!r} has {dataset.channels}-channel frames, not the "
                f"{data.channels} its registration promises; register it with channels={dataset.channels}."
            )
        if len(dataset) < 1:
            raise DatasetError(f"The {split} split of dataset {data.dataset!r} holds no videos; check --data_dir.")
        if dataset.T < data.max_frames:
            raise DatasetError(
                f"Videos of dataset {data.dataset!r} have {dataset.T} frames, fewer than max_frames="
                f"{data.max_frames}; lower --max_frames or use longer videos."
            )
        return dataset

    def _initialise_from(self, weights: Path) -> None:
        """Start from another model's weights (its EMA weights where it has them); the optimiser starts fresh."""
        state_dict = load_weights(weights, device=self.device, use_ema=True).state_dict
        check_state_dict(self.model, state_dict, f"{weights} (given as init_from)")
        self.model.load_state_dict(state_dict)

    def _restore(self, checkpoint: Path) -> None:
        """Load weights, EMA, optimizer, scaler, sampler history and RNG states from `checkpoint`."""
        loaded = load_checkpoint(checkpoint, self.train_config.ema_rate, device=self.device)
        check_state_dict(self.model, loaded["model"], f"{checkpoint} (with the run's {RUN_CONFIG_FILENAME})")
        self.model.load_state_dict(loaded["model"])
        for rate, state in loaded["ema"].items():
            self.ema.load_state_dict(rate, state)
        state = loaded["training_state"]
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.schedule_sampler.load_state_dict(state.get("schedule_sampler", {}))
        restore_rng_state(state["rng"])
        self.step = int(state["step"])
        self.last_checkpoint = checkpoint

    # ----------------------------------------------------------------------------- one step

    def _timesteps(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's rows of the global batch's diffusion steps and importance weights."""
        steps = generator(Stream.TIMESTEPS, self.train_config.seed, step)
        t, weights = self.schedule_sampler.sample(self.train_config.batch_size, "cpu", generator=steps)
        rows = slice(self.dist.rank * self.local_batch, (self.dist.rank + 1) * self.local_batch)
        return t[rows].to(self.device), weights[rows].to(self.device)

    def _noise(self, example_ids: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Per-example Gaussian noise seeded by the example's global number."""
        rows = []
        for example in example_ids.tolist():
            noise = generator(Stream.TRAINING_NOISE, self.train_config.seed, example, device=self.device)
            rows.append(torch.randn(like.shape[1:], generator=noise, device=self.device, dtype=like.dtype))
        return torch.stack(rows)

    def _autocast(self) -> contextlib.AbstractContextManager:
        precision = self.train_config.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=_AUTOCAST_DTYPES[precision])

    def _lr(self, step: int) -> float:
        train = self.train_config
        if not train.lr_anneal_steps:
            return train.lr
        return train.lr * max(0.0, 1.0 - step / train.lr_anneal_steps)

    def _train_step(self, batch: dict[str, Any], stats: TrainingStatistics) -> float:
        """Forward/backward over micro-batches, then one optimiser and EMA step; returns the grad norm.

        Raises TrainingDivergedError (before touching the weights) when the loss is not finite.
        """
        train = self.train_config
        self.model.train()
        frames = batch["frames"].to(self.device, non_blocking=True)
        t, weights = self._timesteps(self.step)
        noise = self._noise(batch["example_id"], frames.x0)
        micro = train.microbatch or self.local_batch
        self.optimizer.zero_grad(set_to_none=True)
        per_example: dict[str, list[torch.Tensor]] = {"loss": [], "mse": []}
        for start in range(0, self.local_batch, micro):
            rows = slice(start, start + micro)
            is_last = start + micro >= self.local_batch
            sync: contextlib.AbstractContextManager = contextlib.nullcontext()
            if not is_last and isinstance(self.ddp_model, DistributedDataParallel):  # wrapped only under torchrun
                sync = self.ddp_model.no_sync()
            with sync:
                with self._autocast():
                    losses = self.diffusion.training_losses(self.ddp_model, frames[rows], t[rows], noise=noise[rows])
                loss = (losses["loss"].float() * weights[rows]).sum() / self.local_batch
                self.scaler.scale(loss).backward()
            per_example["loss"].append(losses["loss"].detach().float())
            per_example["mse"].append(losses["mse"].detach().float())
        loss_values = torch.cat(per_example["loss"])
        self.schedule_sampler.update_with_local_losses(t, loss_values)
        step_stats = TrainingStatistics.of_examples(
            t, loss_values * weights, torch.cat(per_example["mse"]) * weights, self.diffusion.num_timesteps
        ).all_reduced(self.dist)
        if not step_stats.is_finite():
            raise TrainingDivergedError(self._diverged_message())
        stats.add_(step_stats)
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        if train.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, train.grad_clip))
        else:
            grad_norm = float(torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(self.step)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update(self.model)
        return grad_norm

    def _diverged_message(self, what: str = "The loss") -> str:
        where = (
            f"the last good checkpoint is {self.last_checkpoint}"
            if self.last_checkpoint is not None
            else "no checkpoint had been saved yet"
        )
        return (
            f"{what} became NaN or infinite at step {self.step}; training stopped without saving and {where} "
            "(lower --lr, set --grad_clip, or use --precision fp32, then --resume)."
        )

    # ----------------------------------------------------------------------------- bookkeeping

    def save(self) -> Path:
        """Write a checkpoint of the current step (rank 0 writes, every process waits).

        Raises TrainingDivergedError instead when the weights are not finite (all ranks hold the same).
        """
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise TrainingDivergedError(self._diverged_message("The weights"))
        path = None
        if self.dist.is_main:
            training_state: dict[str, Any] = {
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": capture_rng_state(),
                "data": {"next_step": self.step, "seed": self.train_config.seed},
                "world_size": self.dist.world_size,
                "schedule_sampler": self.schedule_sampler.state_dict(),
            }
            path = save_checkpoint(
                self.run_dir,
                self.step,
                model_state=self.model.state_dict(),
                ema_states={rate: self.ema.state_dict(rate, self.model) for rate in self.ema.rates},
                training_state=training_state,
                config=self.config,
                keep=self.train_config.keep_checkpoints,
            )
        barrier(self.dist)
        self.last_checkpoint = path or checkpoint_path(self.run_dir, self.step)
        return self.last_checkpoint

    def _validation_batch(self) -> FrameBatch:
        """A fixed batch: the first videos of the test split, the first of their K frames observed and the
        last `latent_frames_per_stage(K)` generated, as in a default sampling stage."""
        if self._validation is None:
            try:
                dataset = self._build_dataset("test")
            except DatasetError:
                dataset = self.dataset
            K = self.config.data.max_frames
            count = min(max(self.train_config.num_sample_videos, DIAGNOSTIC_VIDEOS), len(dataset))
            seed = self.train_config.seed
            videos = torch.stack([dataset.item(i, numpy_rng(Stream.VALIDATION, seed, i))[0] for i in range(count)])
            observed = K - latent_frames_per_stage(K)
            self._validation = FrameBatch.from_indices(videos, range(observed), range(observed, K))
        return self._validation

    def _loaded_ema_model(self) -> torch.nn.Module:
        """A copy of the network holding the first EMA rate's weights, in eval mode."""
        if self._ema_model is None:
            self._ema_model = copy.deepcopy(self.model)
        self._ema_model.load_state_dict(self.ema.state_dict(self.ema.rates[0], self.model))
        return self._ema_model.eval()

    def diagnostics(self, truth: torch.Tensor, samples: torch.Tensor) -> dict[str, float]:
        """Conditioning gain of the EMA and the online network on the validation batch, and statistics
        of the EMA samples. (Early in a run the EMA weights still lag far behind the online ones.)"""
        batch = self._validation_batch().to(self.device)
        seed = self.train_config.seed
        self.model.eval()
        with self._autocast():
            gains = conditioning_gain(self._loaded_ema_model(), self.diffusion, batch, seed=seed)
            online = conditioning_gain(self.model, self.diffusion, batch, seed=seed)
        self.model.train()
        latent = batch.latent_mask[: truth.shape[0]].cpu()
        return {
            **gains,
            **{f"online_{key}": value for key, value in online.items()},
            **sample_statistics(truth.cpu(), samples.cpu(), latent),
        }

    @torch.no_grad()
    def sample_videos(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Complete the first validation videos with the first EMA rate's weights; returns (truth,
        samples, obs_mask)."""
        count = self.train_config.num_sample_videos
        batch = self._validation_batch()[:count].to(self.device)
        ema_model = self._loaded_ema_model()
        diffusion = respaced(self.config.diffusion, self.train_config.sample_steps, "ddim")
        generators = [
            generator(Stream.VALIDATION_NOISE, self.train_config.seed, i, device=self.device)
            for i in range(batch.x0.shape[0])
        ]
        with self._autocast():
            samples = ddim_sample(ema_model, diffusion, batch, generator=generators)
        return batch.x0, samples.float(), batch.obs_mask

    # ----------------------------------------------------------------------------- the loop

    def train(self) -> TrainResult:
        """Train until `max_steps`, a NaN loss (TrainingDivergedError) or SIGTERM/SIGINT (save, then stop)."""
        train = self.train_config
        resumed = self.last_checkpoint is not None
        logger = RunLogger(
            self.run_dir,
            enabled=self.dist.is_main,
            tensorboard=train.tensorboard,
            wandb=train.wandb,
            wandb_project=train.wandb_project,
            config=self.config.to_dict(),
            resume_step=self.step if resumed else None,
        )
        progress = Progress(
            train.max_steps, self.step, enabled=self.dist.is_main, interval=train.log_interval, stream=self.out
        )
        if resumed:
            progress.write(f"resumed from {self.last_checkpoint} at step {self.step}")
        stats = TrainingStatistics()
        grad_norm_sum, data_wait, window_start, window_steps = 0.0, 0.0, time.perf_counter(), 0
        saved_step = self.step if resumed else -1
        stopped_by = None
        with torch.random.fork_rng(devices=[]):  # creating the iterator draws a seed from the global RNG
            batches = iter(self.loader)
        try:
            with StopRequest() as stop:
                while self.step < train.max_steps:
                    wait_start = time.perf_counter()
                    batch = next(batches)
                    data_wait += time.perf_counter() - wait_start
                    grad_norm_sum += self._train_step(batch, stats)
                    self.step += 1
                    window_steps += 1
                    if self.step % train.log_interval == 0 or self.step == train.max_steps:
                        elapsed = time.perf_counter() - window_start
                        metrics = self._metrics(stats, grad_norm_sum / window_steps, window_steps, elapsed, data_wait)
                        logger.log_scalars(self.step, metrics)
                        progress.update(self.step, metrics["loss"])
                        stats = TrainingStatistics()
                        grad_norm_sum, data_wait, window_start, window_steps = 0.0, 0.0, time.perf_counter(), 0
                    if self.step % train.save_interval == 0 or self.step == train.max_steps:
                        self.save()
                        saved_step = self.step
                    if (
                        train.sample_interval
                        and self.dist.is_main
                        and (self.step % train.sample_interval == 0 or self.step == train.max_steps)
                    ):
                        truth, samples, obs_mask = self.sample_videos()
                        log_sample_videos(logger, self.run_dir, self.step, truth, samples, obs_mask)
                        logger.log_scalars(self.step, self.diagnostics(truth, samples))
                    if self._stop_everywhere(stop.requested):
                        stopped_by = stop.signal_name() or "a signal on another process"
                        if saved_step != self.step:
                            self.save()
                            saved_step = self.step
                        progress.write(
                            f"stopped by {stopped_by} at step {self.step}; checkpoint saved to "
                            f"{self.last_checkpoint}; continue with: flexvid train --resume {self.run_dir}"
                        )
                        break
        finally:
            shutdown_workers(batches)
            progress.close()
            logger.close()
        return TrainResult(self.step, self.last_checkpoint, stopped_by)

    def _stop_everywhere(self, local: bool) -> bool:
        """Whether any process received SIGTERM/SIGINT (all processes must stop at the same step)."""
        if not self.dist.distributed:
            return local
        flag = torch.tensor([1.0 if local else 0.0], device=self.device)
        return bool(all_reduce_sum(flag, self.dist).item() > 0)

    def _metrics(
        self, stats: TrainingStatistics, grad_norm: float, steps: int, elapsed: float, data_wait: float
    ) -> dict[str, float]:
        metrics = {
            **stats.means(),
            "grad_norm": grad_norm,
            "lr": self.optimizer.param_groups[0]["lr"],
            "steps_per_sec": steps / elapsed,
            "videos_per_sec": steps * self.train_config.batch_size / elapsed,
            "frames_per_sec": steps * self.train_config.batch_size * self.config.data.max_frames / elapsed,
            "data_wait_frac": data_wait / elapsed,
        }
        if self.scaler.is_enabled():
            metrics["grad_scale"] = float(self.scaler.get_scale())
        return metrics
