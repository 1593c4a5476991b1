"""`flexvid sample CHECKPOINT`: complete test videos (or sample unconditional ones) with a scheme;
under `torchrun --nproc_per_node N -m flexvid sample ...` the videos are split across N processes."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from flexvid.cli.options import Switch
from flexvid.sampling.settings import DEFAULTS, PRECISIONS, SAMPLERS, SampleSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="flexvid checkpoint directory or .safetensors file, or the authors' .pt")
    parser.add_argument("--sampling_scheme", default=DEFAULTS.sampling_scheme,
                        help="scheme name (see `flexvid schemes`) or a scheme YAML file")
    parser.add_argument("--n_obs", type=int, default=DEFAULTS.n_obs,
                        help="observed frames at the start of each video, taken from the test set (0: unconditional; "
                        "default: K)")
    parser.add_argument("--T", type=int, default=None,
                        help="length of the generated videos; longer than the training clips is fine (default: as trained)")
    parser.add_argument("--max_frames", type=int, default=None, help="K, frames per network call (default: as trained)")
    parser.add_argument("--max_latent_frames", type=int, default=None,
                        help="frames generated per stage (default: max_frames // 2)")
    parser.add_argument("--batch_size", type=int, default=DEFAULTS.batch_size,
                        help="videos generated together (under torchrun, batches are dealt to the processes)")
    parser.add_argument("--start_index", type=int, default=DEFAULTS.start_index, help="first test video")
    parser.add_argument("--stop_index", type=int, default=None,
                        help="one past the last test video (default: start_index + batch_size)")
    parser.add_argument("--sample_idx", type=int, default=DEFAULTS.sample_idx,
                        help="which sample of each video this is (several samples share the observed frames)")
    parser.add_argument("--sampler", choices=list(SAMPLERS), default=DEFAULTS.sampler, help="sampler")
    parser.add_argument("--steps", type=int, default=DEFAULTS.steps, help="diffusion steps (0 is refused; the trained "
                        "number, e.g. 1000, runs every step)")
    parser.add_argument("--eta", type=float, default=DEFAULTS.eta, help="DDIM noise scale (0: deterministic)")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="noise seed (same seed, same videos)")
    parser.add_argument("--precision", choices=list(PRECISIONS), default=DEFAULTS.precision, help="network precision")
    parser.add_argument("--eval_dir", default=None,
                        help="output directory (default: results/<checkpoint>/<scheme>_<K>_<latent>_<T>_<n_obs>_"
                        "<sampler><steps>[_eta<eta>]_seed<seed>_<precision>-<hash of all settings>)")
    parser.add_argument("--data_dir", default=None, help="test data directory (default: from the checkpoint)")
    parser.add_argument("--chunk_length", type=int, default=None,
                        help="videos longer than this are generated chunk by chunk (default: the training T)")
    parser.add_argument("--context", type=int, default=None,
                        help="frames of the previous chunk each chunk conditions on (default: n_obs, or K // 2)")
    parser.add_argument("--batch_stages", action=Switch, default=DEFAULTS.batch_stages,
                        help="batch independent stages into one network call (--no_batch_stages: every stage on its own)")
    parser.add_argument("--max_batch", type=int, default=DEFAULTS.max_batch,
                        help="most rows per network call when batching stages")
    parser.add_argument("--device", default=None,
                        help="cpu or cuda (default: cuda when available; under torchrun, each process's own GPU)")


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
        settings = SampleSettings(**{f.name: values[f.name] for f in dataclasses.fields(SampleSettings) if f.name in values})
        job = SampleJob(settings, dist=dist_info)
        paths = job.run(progress=True)
    finally:
        cleanup_distributed()
    if job.dist.is_main:
        processes = f" by {job.dist.world_size} processes" if job.dist.distributed else ""
        print(f"{len(paths)} videos of {job.T} frames in {job.eval_dir / 'samples'}{processes}", file=sys.stderr)
        print(job.eval_dir)  # stdout: the folder the other commands take, e.g. flexvid video "$(flexvid sample ...)"
    return 0
