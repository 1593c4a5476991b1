"""`flexvid sample CHECKPOINT`: complete test videos (or sample unconditional ones) with a scheme."""

from __future__ import annotations

import argparse
import dataclasses

from flexvid.sampling.job import SampleJob, SampleSettings


DEFAULTS = SampleSettings(checkpoint="", sampling_scheme="")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    parser.add_argument("checkpoint", help="flexvid checkpoint directory or .safetensors file, or the authors' .pt")
    parser.add_argument("--sampling_scheme", required=True,
                        help="scheme name (see `flexvid schemes`) or a scheme YAML file")
    parser.add_argument("--n_obs", type=int, default=DEFAULTS.n_obs,
                        help="observed frames at the start of each video, taken from the test set (0: unconditional; "
                        "None: K)")
    parser.add_argument("--T", type=int, default=None,
                        help="length of the generated videos; longer than the training clips is fine (default: as trained)")
    parser.add_argument("--max_frames", type=int, default=None, help="K, frames per network call (default: as trained)")
    parser.add_argument("--max_latent_frames", type=int, default=None,
                        help="frames generated per stage (default: max_frames // 2)")
    parser.add_argument("--batch_size", type=int, default=8, help="videos generated together")
    parser.add_argument("--start_index", type=int, default=0, help="first test video")
    parser.add_argument("--stop_index", type=int, default=None,
                        help="one past the last test video (default: start_index + batch_size)")
    parser.add_argument("--sample_idx", type=int, default=0,
                        help="which sample of each video this is (several samples share the observed frames)")
    parser.add_argument("--sampler", choices=["ddpm", "ddim"], default=DEFAULTS.sampler, help="sampler")
    parser.add_argument("--steps", type=int, default=DEFAULTS.steps, help="diffusion steps (0 is refused; the trained "
                        "number, e.g. 1000, runs every step)")
    parser.add_argument("--eta", type=float, default=DEFAULTS.eta, help="DDIM noise scale (0: deterministic)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--eval_dir", default=None,
                        help="output directory (default: results/<checkpoint>/<scheme>_<K>_<latent>_<T>_<n_obs>)")
    parser.add_argument("--data_dir", default=None, help="test data directory (default: from the checkpoint)")
    parser.add_argument("--chunk_length", type=int, default=None,
                        help="videos longer than this are generated chunk by chunk (default: the training T)")
    parser.add_argument("--context", type=int, default=None,
                        help="frames of the previous chunk each chunk conditions on")
    parser.add_argument("--no_batch_stages", dest="batch_stages", action="store_false",
                        help="run every stage on its own instead of batching independent stages")
    parser.add_argument("--max_batch", type=int, default=64, help="most rows per network call when batching stages")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def run(args: argparse.Namespace) -> int:
    import torch

    values = vars(args).copy()
    values["device"] = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    settings = SampleSettings(**{f.name: values[f.name] for f in dataclasses.fields(SampleSettings) if f.name in values})
    job = SampleJob(settings)
    paths = job.run(progress=True)
    print(f"{len(paths)} videos of {job.T} frames in {job.eval_dir / 'samples'}")
    return 0
