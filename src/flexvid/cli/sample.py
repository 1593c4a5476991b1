"""`flexvid sample CHECKPOINT`: complete test videos (or sample unconditional ones) with a scheme;
under `torchrun --nproc_per_node N -m flexvid sample ...` the videos are split across N processes."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from flexvid.cli.options import add_config_flags
from flexvid.sampling.settings import SampleSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `flexvid sample`: one per field of SampleSettings (its help in the field's metadata)."""
    parser.add_argument("checkpoint", help="flexvid checkpoint directory or .safetensors file, or the authors' .pt")
    add_config_flags(parser, SampleSettings, exclude=("checkpoint", "device"))
    parser.add_argument(
        "--device",
        default=None,
        help="cpu or cuda (default: cuda when available; under torchrun, each process's own GPU)",
    )


def run(args: argparse.Namespace) -> int:
    from flexvid.sampling.job import SampleJob
    from flexvid.training.distributed import cleanup_distributed, launched_by_torchrun, setup_distributed

    values = vars(args).copy()
    dist_info = None
    try:
        if launched_by_torchrun():
            dist_info = setup_distributed(args.device or "auto")
            values["device"] = str(dist_info.device)
        else:
            import torch

            values["device"] = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        settings = SampleSettings(
            **{f.name: values[f.name] for f in dataclasses.fields(SampleSettings) if f.name in values}
        )
        job = SampleJob(settings, dist=dist_info)
        paths = job.run(progress=True)
    finally:
        cleanup_distributed()
    if job.dist.is_main:
        processes = f" by {job.dist.world_size} processes" if job.dist.distributed else ""
        print(f"{len(paths)} videos of {job.T} frames in {job.eval_dir / 'samples'}{processes}", file=sys.stderr)
        print(job.eval_dir)  # stdout: the folder the other commands take, e.g. flexvid video "$(flexvid sample ...)"
    return 0
