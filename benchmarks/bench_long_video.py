"""Peak memory of generating very long videos chunk by chunk with frames streamed to disk.

Each length runs in its own process (the peak resident set size, ru_maxrss, only ever grows
within a process). The process builds a tiny random-weight network, generates the video with
`generate_long` (each chunk conditioned on the end of the previous one) and writes every finished
frame straight to an `.npy` file with `NpyStreamWriter`. A thread samples VmRSS from
/proc/self/status while it runs. If memory is bounded, the peak is the same for 1,000 and 10,000
frames, and the peak over the last tenth of the frames is no higher than over the first tenth.

    python benchmarks/bench_long_video.py                       # 1,000 and 10,000 frames, 32x32
    python benchmarks/bench_long_video.py --lengths 1000,10000 --scheme hierarchy-2 --steps 2
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from flexvid.config import DiffusionConfig, ModelConfig
from flexvid.diffusion import ddim_sample, respaced
from flexvid.nn import UNetVideo
from flexvid.sampling.engine import network_calls
from flexvid.sampling.long_video import chunk_plan, generate_long
from flexvid.sampling.outputs import NpyStreamWriter
from flexvid.schemes import scheme_stages
from flexvid.video_io import to_uint8

MIB = 1024.0**2


def vm_rss_bytes() -> int:
    """The current resident set size of this process, from /proc/self/status."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


class RssSampler:
    """Samples VmRSS every `interval` seconds in a background thread, with the frames done at that time."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.frames_done = 0
        self.samples: list[tuple[int, int]] = []  # (frames done, RSS bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((self.frames_done, vm_rss_bytes()))
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((self.frames_done, vm_rss_bytes()))

    def peak_between(self, first: float, last: float) -> int:
        """The highest RSS sampled while the frames written were in [first, last]."""
        return max(rss for done, rss in self.samples if first <= done <= last)


def generate(args: argparse.Namespace, length: int) -> dict[str, float]:
    """Generate one `length`-frame video, streamed to a temporary .npy file; return memory and time figures."""
    config = ModelConfig(
        image_size=args.image_size,
        num_channels=args.num_channels,
        num_res_blocks=args.num_res_blocks,
        max_frames=args.max_frames,
    )
    torch.manual_seed(0)
    model = UNetVideo(config).eval()
    diffusion = respaced(DiffusionConfig(), args.steps, "ddim")
    sample_fn = functools.partial(ddim_sample, eta=0.0)
    stage_lists: dict[tuple[int, int], list] = {}

    def make_stages(video_length: int, n_obs: int) -> list:
        key = (video_length, n_obs)
        if key not in stage_lists:
            stage_lists[key] = scheme_stages(
                args.scheme,
                video_length=video_length,
                num_observed_frames=n_obs,
                max_frames=args.max_frames,
                step_size=args.max_latent_frames,
            )
        return stage_lists[key]

    plan = chunk_plan(length, 0, args.chunk_length, args.context)
    calls_per_step = sum(len(network_calls(make_stages(n, known), 1, 64, True)) for _, n, known in plan)
    frame_shape = (3, args.image_size, args.image_size)
    observed = torch.zeros(1, 0, *frame_shape)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sample.npy"
        writer = NpyStreamWriter(path, (length, *frame_shape))
        rss_before = vm_rss_bytes()
        with RssSampler() as sampler:

            def emit(start: int, frames: torch.Tensor) -> None:
                writer.write(to_uint8(frames[0]))
                sampler.frames_done = start + frames.shape[1]

            begin = time.perf_counter()
            generate_long(
                model,
                diffusion,
                observed,
                length,
                make_stages,
                sample_fn,
                emit,
                chunk_length=args.chunk_length,
                context=args.context,
                seed=0,
                video_keys=[0],
            )
            seconds = time.perf_counter() - begin
            writer.close()
        video = np.load(path, mmap_mode="r")
        if video.shape != (length, *frame_shape) or not video[-1].any():
            raise RuntimeError(f"the streamed file has shape {video.shape} or an empty last frame")
        file_mib = path.stat().st_size / MIB
    return {
        "frames": length,
        "chunks": len(plan),
        "network_calls": calls_per_step * args.steps,
        "seconds": seconds,
        "file_mib": file_mib,
        "rss_before_mib": rss_before / MIB,
        "peak_first_tenth_mib": sampler.peak_between(0, 0.1 * length) / MIB,
        "peak_last_tenth_mib": sampler.peak_between(0.9 * length, length) / MIB,
        "rss_end_mib": sampler.samples[-1][1] / MIB,
        "peak_sampled_mib": max(rss for _, rss in sampler.samples) / MIB,
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB,
        "rss_samples": len(sampler.samples),
    }


def child_command(args: argparse.Namespace, length: int) -> list[str]:
    """This script, run for one length in a fresh process."""
    command = [sys.executable, __file__, "--child", str(length)]
    for name in (
        "scheme",
        "steps",
        "image_size",
        "num_channels",
        "num_res_blocks",
        "max_frames",
        "max_latent_frames",
        "chunk_length",
        "context",
        "threads",
    ):
        command += [f"--{name}", str(getattr(args, name))]
    return command


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--lengths", type=lambda s: [int(n) for n in s.split(",")], default=[1000, 10000])
    parser.add_argument("--scheme", default="autoreg")
    parser.add_argument("--steps", type=int, default=2, help="DDIM steps")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--num_channels", type=int, default=32)
    parser.add_argument("--num_res_blocks", type=int, default=1)
    parser.add_argument("--max_frames", type=int, default=10)
    parser.add_argument("--max_latent_frames", type=int, default=6)
    parser.add_argument("--chunk_length", type=int, default=64)
    parser.add_argument("--context", type=int, default=10, help="frames each chunk conditions on")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child is not None:
        print(json.dumps(generate(args, args.child)))
        return
    print(
        f"torch {torch.__version__}, {args.threads} CPU thread(s); {args.image_size}x{args.image_size}, "
        f"{args.num_channels} channels, {args.num_res_blocks} res block(s), random weights, {args.scheme}, "
        f"DDIM-{args.steps}, K={args.max_frames}, {args.max_latent_frames} latent frames per stage, "
        f"chunks of {args.chunk_length} frames conditioned on the previous {args.context}, one video"
    )
    header = [
        "frames",
        "chunks",
        "network calls",
        "time (s)",
        "file (MiB)",
        "RSS before (MiB)",
        "peak, first 10% of frames",
        "peak, last 10%",
        "RSS at end",
        "peak VmRSS (sampled)",
        "ru_maxrss",
        "last 10% minus first 10%",
    ]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header), flush=True)
    for length in args.lengths:
        child = subprocess.run(child_command(args, length), capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f"the {length}-frame run failed:\n{child.stderr}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        growth = result["peak_last_tenth_mib"] - result["peak_first_tenth_mib"]
        cells = [
            length,
            result["chunks"],
            result["network_calls"],
            f"{result['seconds']:.0f}",
            f"{result['file_mib']:.1f}",
        ]
        cells += [
            f"{result[key]:.0f}"
            for key in (
                "rss_before_mib",
                "peak_first_tenth_mib",
                "peak_last_tenth_mib",
                "rss_end_mib",
                "peak_sampled_mib",
                "ru_maxrss_mib",
            )
        ]
        cells.append(f"{growth:+.1f}")
        print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
