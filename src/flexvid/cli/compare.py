"""`flexvid compare CHECKPOINT`: the paper's scheme comparison on one model (see flexvid.eval.compare)."""

from __future__ import annotations

import argparse
from pathlib import Path

from flexvid.errors import ConfigError
from flexvid.eval.compare import DEFAULT_SCHEMES, CompareSettings, run_comparison
from flexvid.schemes.stage import LATENT_FRAMES_DEFAULT

DEFAULTS = CompareSettings(checkpoint="", out="")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="flexvid checkpoint (run directory, checkpoint directory or .safetensors)")
    parser.add_argument(
        "--out", required=True, help="output folder: one evaluation directory per scheme, table, pictures"
    )
    parser.add_argument("--schemes", default=",".join(DEFAULT_SCHEMES), help="comma-separated scheme names")
    parser.add_argument("--T", type=int, default=None, help="video length (default: the training clip length)")
    parser.add_argument(
        "--n_obs", type=int, default=DEFAULTS.n_obs, help="observed frames at the start of each test video"
    )
    parser.add_argument("--num_videos", type=int, default=DEFAULTS.num_videos, help="test videos 0..N-1")
    parser.add_argument("--num_samples", type=int, default=DEFAULTS.num_samples, help="k samples per video (best of k)")
    parser.add_argument(
        "--max_latent_frames", type=int, default=None, help=f"latent frames per stage (default {LATENT_FRAMES_DEFAULT})"
    )
    parser.add_argument("--sampler", choices=["ddpm", "ddim"], default=DEFAULTS.sampler)
    parser.add_argument("--steps", type=int, default=DEFAULTS.steps, help="diffusion steps of the sampler")
    parser.add_argument("--eta", type=float, default=DEFAULTS.eta, help="DDIM noise scale")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
    parser.add_argument("--batch_size", type=int, default=DEFAULTS.batch_size, help="videos generated together")
    parser.add_argument("--device", default=DEFAULTS.device)


def run(args: argparse.Namespace) -> int:
    schemes = tuple(name.strip() for name in args.schemes.split(",") if name.strip())
    if not schemes:
        raise ConfigError("--schemes names no scheme; give comma-separated names such as autoreg,hierarchy-2.")
    for flag in ("n_obs", "num_videos", "num_samples", "batch_size", "steps"):
        value = getattr(args, flag)
        if value is not None and value < (0 if flag == "n_obs" else 1):
            raise ConfigError(f"--{flag} must be at least {0 if flag == 'n_obs' else 1}, got {value}.")
    settings = CompareSettings(
        checkpoint=args.checkpoint,
        out=args.out,
        schemes=schemes,
        T=args.T,
        n_obs=args.n_obs,
        num_videos=args.num_videos,
        num_samples=args.num_samples,
        max_latent_frames=args.max_latent_frames,
        sampler=args.sampler,
        steps=args.steps,
        eta=args.eta,
        seed=args.seed,
        batch_size=args.batch_size,
        device=args.device,
    )
    run_comparison(settings)
    out = Path(args.out)
    print((out / "comparison.md").read_text(), end="")
    print(f"wrote {out / 'comparison.md'}, comparison.json, per_frame_psnr.png and strips.png")
    return 0
