"""Sampler settings compared on one trained model: quality against ground truth, and time.

    python benchmarks/bench_samplers.py pretrained/moving_mnist --num_videos 8

Each test video's first K/2 frames are observed and the next K/2 generated in one stage, with every
setting given the same videos and per-video seeds. Reported per setting: PSNR/SSIM of the generated
frames (mean over videos) and of the first generated frame, where motion is nearly deterministic;
mean brightness (truth alongside); the share of clean frames (flexvid.eval.consistency: inside the
range of the true frames of at least 50 test videos, as `flexvid compare` judges them); and seconds
per video. Settings run one after another in one process, each timed on the same inputs.
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import numpy as np
import torch

from flexvid.checkpoint import load_pretrained
from flexvid.data.base import build_dataset
from flexvid.diffusion import respaced, samplers
from flexvid.eval.compare import data_range
from flexvid.eval.consistency import score_video, summarise_consistency
from flexvid.frame_batch import FrameBatch
from flexvid.video_io import to_uint8

SETTINGS = [("ddpm", 100, 0.0), ("ddim", 25, 0.0), ("ddim", 25, 1.0), ("ddim", 50, 0.0), ("ddim", 50, 1.0)]
# DDPM with all 1,000 steps costs 20x DDIM-50; add ("ddpm", 1000, 0.0) where time allows.


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--num_videos", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pretrained = load_pretrained(args.checkpoint)
    data = pretrained.config.data
    K = data.max_frames
    dataset = build_dataset(data.dataset, "test", T=data.T, image_size=data.image_size)
    videos = torch.stack([dataset[i][0] for i in range(args.num_videos)])
    batch = FrameBatch.from_indices(videos, range(K // 2), range(K // 2, K))
    x0 = batch.x0
    clean_range = data_range(data.dataset, data.T, data.image_size, None, args.num_videos)
    diffusion_config = pretrained.config.diffusion
    print(
        f"{args.checkpoint}: {args.num_videos} test videos, {K // 2} observed + {K // 2} generated frames, "
        f"torch {torch.__version__}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} threads\n"
    )
    print(
        "| sampler | steps | eta | PSNR latent | PSNR first | SSIM latent | brightness (truth) | clean frames "
        "| s / video |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, steps, eta in SETTINGS:
        diffusion = respaced(diffusion_config, steps, name)
        fn = functools.partial(samplers.ddim_sample, eta=eta) if name == "ddim" else samplers.ddpm_sample
        generators = [torch.Generator().manual_seed(args.seed * 1000 + i) for i in range(args.num_videos)]
        start = time.perf_counter()
        with torch.no_grad():
            samples = fn(pretrained.model, diffusion, batch, generator=generators)
        seconds = (time.perf_counter() - start) / args.num_videos
        results = [score_video(to_uint8(x0[i]), [to_uint8(samples[i])]) for i in range(args.num_videos)]
        summary = summarise_consistency(results, n_obs=K // 2, data_range=clean_range)
        first = float(np.mean([r.psnr[K // 2] for r in results]))
        print(
            f"| {name} | {steps} | {eta:g} | {summary['psnr_latent']['mean']:.2f} | {first:.2f} "
            f"| {summary['ssim_latent']['mean']:.3f} | {summary['brightness']:.3f} ({summary['truth_brightness']:.3f}) "
            f"| {100 * summary['clean_share']:.0f}% | {seconds:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
