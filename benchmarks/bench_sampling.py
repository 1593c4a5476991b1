"""Time generating one long video per sampling scheme: DDPM/DDIM, batched vs one-by-one stages, fp32/bf16.

The defaults are the paper's GQN-Mazes setting: a 64x64 U-Net with 128 channels and 2 res blocks,
K=20 frames per network call, 10 latent frames per stage, 36 observed frames, T=300. Weights are
random (timing does not depend on them). For every scheme it prints the exact number of stages and
network calls (machine-independent), then times `run_stages` with batched stages and one by one,
interleaved, and reports the median of --repeats runs and their ratio. Samplers with more than
--max_timed_steps steps are timed at that many steps and scaled linearly (every step costs the
same network call); such rows are marked "scaled".

    python benchmarks/bench_sampling.py --device cuda                 # full GQN-Mazes setting
    python benchmarks/bench_sampling.py --device cpu --threads 1 --image_size 32 --num_channels 32 \\
        --num_res_blocks 1 --T 60 --n_obs 10 --max_frames 10 --max_latent_frames 5 --samplers ddim:10 \\
        --estimate_full
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from flexvid.config import DiffusionConfig, ModelConfig
from flexvid.diffusion import ddim_sample, ddpm_sample, respaced
from flexvid.nn import UNetVideo
from flexvid.sampling.engine import SampleFn, network_calls, run_stages
from flexvid.sampling.generate import with_precision
from flexvid.schemes import Stage, scheme_stages

# Schemes whose network calls are counted (counting is free); --schemes picks the ones timed.
COUNTED_SCHEMES = ("autoreg", "long-range", "only-obs", "hierarchy-2", "hierarchy-3", "hierarchy-4", "hierarchy-5")
PAPER_MAZES = dict(
    image_size=64, num_channels=128, num_res_blocks=2, T=300, n_obs=36, max_frames=20, max_latent_frames=10
)


@dataclass(frozen=True)
class SamplerSpec:
    """A sampler and its number of steps, e.g. DDIM with 100 steps."""

    name: str
    steps: int

    @property
    def label(self) -> str:
        return f"{self.name.upper()}-{self.steps}"


def parse_samplers(text: str) -> list[SamplerSpec]:
    """'ddpm:1000,ddim:100' -> [SamplerSpec('ddpm', 1000), SamplerSpec('ddim', 100)]."""
    specs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, steps = item.partition(":")
        if name not in ("ddpm", "ddim") or not steps.isdigit():
            raise argparse.ArgumentTypeError(f"bad sampler {item!r}; write e.g. ddpm:1000 or ddim:100")
        specs.append(SamplerSpec(name, int(steps)))
    return specs


@dataclass(frozen=True)
class VideoSetup:
    """What one sampled video looks like: its length, observed frames and stage sizes."""

    T: int
    n_obs: int
    max_frames: int
    max_latent_frames: int

    @property
    def observed_per_call(self) -> int:
        """Observed frames in a typical network call (K minus the latent frames of a stage)."""
        return self.max_frames - self.max_latent_frames

    def stages(self, scheme: str) -> list[Stage]:
        return scheme_stages(
            scheme,
            video_length=self.T,
            num_observed_frames=self.n_obs,
            max_frames=self.max_frames,
            step_size=self.max_latent_frames,
        )


def call_rows(stages: Sequence[Stage], videos: int, max_batch: int, batch_stages: bool) -> list[int]:
    """The rows (stage x video) of each network call per diffusion step, as run_stages makes them."""
    return [len(call) for call in network_calls(stages, videos, max_batch, batch_stages)]


class CallRecorder(torch.nn.Module):
    """Passes calls through to the network and records each call's batch size."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(x.shape[0])
        return self.model(x, *args, **kwargs)


def make_sampler(spec: SamplerSpec, steps: int) -> tuple[object, SampleFn]:
    """The respaced diffusion (default 1000-step linear schedule) and sampler function."""
    diffusion = respaced(DiffusionConfig(), steps, spec.name)
    fn = functools.partial(ddim_sample, eta=0.0) if spec.name == "ddim" else ddpm_sample
    return diffusion, fn


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def observed_videos(setup: VideoSetup, videos: int, image_size: int) -> torch.Tensor:
    """A (videos, T, 3, H, W) batch whose first n_obs frames are fixed random frames in [-1, 1]."""
    out = torch.zeros(videos, setup.T, 3, image_size, image_size)
    gen = torch.Generator().manual_seed(1234)
    out[:, : setup.n_obs] = torch.rand(videos, setup.n_obs, 3, image_size, image_size, generator=gen) * 2 - 1
    return out


def sample_once(
    model: torch.nn.Module,
    diffusion: object,
    fn: SampleFn,
    stages: Sequence[Stage],
    start: torch.Tensor,
    batch_stages: bool,
    max_batch: int,
    device: torch.device,
) -> tuple[float, torch.Tensor]:
    """Seconds to fill in every stage of `start` (a copy is filled), and the filled videos."""
    videos = start.clone()
    synchronize(device)
    begin = time.perf_counter()
    run_stages(
        model,
        diffusion,
        videos,
        stages,
        fn,
        seed=0,
        video_keys=list(range(len(videos))),
        batch_stages=batch_stages,
        max_batch=max_batch,
        device=device,
    )
    synchronize(device)
    return time.perf_counter() - begin, videos


def network_inputs(config: ModelConfig, rows: int, n_obs: int, device: torch.device) -> dict[str, torch.Tensor]:
    """One network call's inputs: `rows` examples of K frames, the first `n_obs` observed."""
    k, size = config.max_frames, config.image_size
    gen = torch.Generator().manual_seed(0)
    obs = torch.zeros(rows, k, 1, 1, 1)
    obs[:, :n_obs] = 1.0
    inputs = {
        "x": torch.randn(rows, k, 3, size, size, generator=gen),
        "timesteps": torch.full((rows,), 500),
        "frame_indices": torch.arange(k).repeat(rows, 1) * 3,
        "obs_mask": obs,
        "latent_mask": 1.0 - obs,
        "x0": torch.randn(rows, k, 3, size, size, generator=gen),
    }
    return {name: t.to(device) for name, t in inputs.items()}


def warm_up(
    model: torch.nn.Module, config: ModelConfig, row_counts: set[int], n_obs: int, device: torch.device
) -> None:
    """One network call per batch size used, so one-off costs (kernel selection, allocation) are not timed."""
    with torch.no_grad():
        for rows in sorted(row_counts):
            model(**network_inputs(config, rows, n_obs, device))
    synchronize(device)


def print_header(header: Sequence[str]) -> None:
    """The head of a markdown table; rows follow with print_row as they are measured."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header), flush=True)


def print_row(row: Sequence[object]) -> None:
    print("| " + " | ".join(str(cell) for cell in row) + " |", flush=True)


def print_call_counts(
    title: str, setup: VideoSetup, schemes: Sequence[str], samplers: Sequence[SamplerSpec], videos: int, max_batch: int
) -> None:
    """Stages and network calls per scheme, batched and one by one (exact, independent of the machine)."""
    print(
        f"\n{title}: T={setup.T}, n_obs={setup.n_obs}, K={setup.max_frames}, "
        f"{setup.max_latent_frames} latent frames per stage, {videos} video(s), max_batch={max_batch}"
    )
    header = ["scheme", "stages", "calls/step one-by-one", "calls/step batched", "rows per batched call"]
    header += [f"{s.label} calls one-by-one / batched" for s in samplers]
    print_header(header)
    for scheme in schemes:
        stages = setup.stages(scheme)
        single = call_rows(stages, videos, max_batch, batch_stages=False)
        batched = call_rows(stages, videos, max_batch, batch_stages=True)
        sizes = ", ".join(str(n) for n in sorted(set(batched)))
        print_row(
            [scheme, len(stages), len(single), len(batched), sizes]
            + [f"{len(single) * s.steps} / {len(batched) * s.steps}" for s in samplers]
        )


def time_schemes(args: argparse.Namespace, setup: VideoSetup, device: torch.device) -> None:
    """Time every scheme x sampler x precision, batched and one by one, interleaved; print a table."""
    config = ModelConfig(
        image_size=args.image_size,
        num_channels=args.num_channels,
        num_res_blocks=args.num_res_blocks,
        max_frames=setup.max_frames,
    )
    torch.manual_seed(0)
    network = UNetVideo(config).to(device).eval()
    start = observed_videos(setup, args.videos, args.image_size)
    print(
        f"\nTimed: {args.image_size}x{args.image_size}, {args.num_channels} channels, "
        f"{args.num_res_blocks} res blocks, random weights, {args.videos} video(s) per run; seconds per video, "
        f"median of {args.repeats} runs (batched and one-by-one interleaved)"
    )
    header = [
        "scheme",
        "sampler",
        "precision",
        "calls one-by-one",
        "calls batched",
        "one-by-one (s)",
        "batched (s)",
        "batched / one-by-one",
        "max abs diff",
    ]
    print_header(header)
    for precision in args.precisions:
        recorder = CallRecorder(with_precision(network, precision, device.type))
        for scheme in args.schemes:
            stages = setup.stages(scheme)
            expected = {mode: call_rows(stages, args.videos, args.max_batch, mode) for mode in (False, True)}
            warm_up(recorder.model, config, set(expected[False]) | set(expected[True]), setup.observed_per_call, device)
            for spec in args.samplers:
                timed_steps = min(spec.steps, args.max_timed_steps) if args.max_timed_steps else spec.steps
                diffusion, fn = make_sampler(spec, timed_steps)
                times: dict[bool, list[float]] = {False: [], True: []}
                outputs: dict[bool, torch.Tensor] = {}
                for _ in range(args.repeats):
                    for batch_stages in (False, True):
                        recorder.batch_sizes.clear()
                        seconds, outputs[batch_stages] = sample_once(
                            recorder, diffusion, fn, stages, start, batch_stages, args.max_batch, device
                        )
                        if recorder.batch_sizes != [n for n in expected[batch_stages] for _ in range(timed_steps)]:
                            raise RuntimeError(f"{scheme}: network calls differ from network_calls()'s plan")
                        times[batch_stages].append(seconds * spec.steps / timed_steps / args.videos)
                single, batched = statistics.median(times[False]), statistics.median(times[True])
                diff = (outputs[True] - outputs[False]).abs().max().item()
                label = spec.label + (f" (scaled from {timed_steps})" if timed_steps != spec.steps else "")
                print_row(
                    [
                        scheme,
                        label,
                        precision,
                        len(expected[False]) * spec.steps,
                        len(expected[True]) * spec.steps,
                        f"{single:.2f}",
                        f"{batched:.2f}",
                        f"{batched / single:.2f}",
                        f"{diff:.1e}",
                    ]
                )


def fit_call_time(points: dict[int, float]) -> Callable[[int], float]:
    """Seconds per network call as a function of its rows: a least-squares line through the measurements."""
    if len(points) == 1:
        ((rows, seconds),) = points.items()
        return lambda n: seconds * n / rows
    xs, ys = list(points), list(points.values())
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum((x - mean_x) ** 2 for x in xs)
    intercept = mean_y - slope * mean_x
    return lambda n: max(intercept + slope * n, 0.0)


def estimate_full(args: argparse.Namespace, device: torch.device) -> None:
    """Estimate seconds per GQN-Mazes video: measured full-size network-call time x the exact number of calls."""
    setup = VideoSetup(
        PAPER_MAZES["T"], PAPER_MAZES["n_obs"], PAPER_MAZES["max_frames"], PAPER_MAZES["max_latent_frames"]
    )
    config = ModelConfig(
        image_size=PAPER_MAZES["image_size"],
        num_channels=PAPER_MAZES["num_channels"],
        num_res_blocks=PAPER_MAZES["num_res_blocks"],
        max_frames=setup.max_frames,
    )
    torch.manual_seed(0)
    network = UNetVideo(config).to(device).eval()
    print(
        f"\nESTIMATE for the full GQN-Mazes setting (64x64, 128 channels, K=20, T=300, n_obs=36): seconds per "
        f"network call measured at {args.estimate_rows} rows (median of {args.estimate_repeats}, no warm-up), "
        "a line fitted through them, times the exact number of calls"
    )
    print_header(["precision", "rows per call", "seconds per call"])
    fits = {}
    for precision in args.precisions:
        model = with_precision(network, precision, device.type)
        points = {}
        for rows in args.estimate_rows:
            inputs = network_inputs(config, rows, setup.observed_per_call, device)
            times = []
            for _ in range(args.estimate_repeats):
                synchronize(device)
                begin = time.perf_counter()
                with torch.no_grad():
                    model(**inputs)
                synchronize(device)
                times.append(time.perf_counter() - begin)
            points[rows] = statistics.median(times)
            print_row([precision, rows, f"{points[rows]:.2f}"])
        fits[precision] = fit_call_time(points)
    print()
    header = [
        "scheme",
        "sampler",
        "precision",
        "calls one-by-one",
        "calls batched",
        "ESTIMATE one-by-one (h)",
        "ESTIMATE batched (h)",
    ]
    print_header(header)
    for scheme in args.schemes:
        stages = setup.stages(scheme)
        single = call_rows(stages, args.videos, args.max_batch, batch_stages=False)
        batched = call_rows(stages, args.videos, args.max_batch, batch_stages=True)
        for spec in args.samplers_full:
            for precision, seconds_per_call in fits.items():
                per_video = [
                    spec.steps * sum(seconds_per_call(n) for n in calls) / args.videos / 3600
                    for calls in (single, batched)
                ]
                print_row(
                    [
                        scheme,
                        spec.label,
                        precision,
                        len(single) * spec.steps,
                        len(batched) * spec.steps,
                        f"{per_video[0]:.1f}",
                        f"{per_video[1]:.1f}",
                    ]
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--schemes", type=lambda s: s.split(","), default=["autoreg", "long-range", "hierarchy-2", "hierarchy-3"]
    )
    parser.add_argument(
        "--samplers",
        type=parse_samplers,
        default=parse_samplers("ddpm:1000,ddim:100"),
        help="sampler:steps list to time (default ddpm:1000,ddim:100)",
    )
    parser.add_argument(
        "--max_timed_steps",
        type=int,
        default=100,
        help="time samplers with more steps at this many and scale linearly (0: time all steps)",
    )
    parser.add_argument("--precisions", type=lambda s: s.split(","), default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--videos", type=int, default=1, help="videos sampled together (times are per video)")
    parser.add_argument("--max_batch", type=int, default=64, help="most rows in one batched network call")
    for name in ("image_size", "num_channels", "num_res_blocks", "T", "n_obs", "max_frames", "max_latent_frames"):
        parser.add_argument(f"--{name}", type=int, default=PAPER_MAZES[name])
    parser.add_argument(
        "--estimate_full",
        action="store_true",
        help="also estimate the full GQN-Mazes time from full-size network calls",
    )
    parser.add_argument("--estimate_rows", type=lambda s: [int(n) for n in s.split(",")], default=[1, 2])
    parser.add_argument("--estimate_repeats", type=int, default=1)
    parser.add_argument(
        "--samplers_full",
        type=parse_samplers,
        default=parse_samplers("ddpm:1000,ddim:100"),
        help="samplers for the full-size estimate",
    )
    parser.add_argument("--skip_timing", action="store_true", help="only print call counts (and the estimate)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    paper = VideoSetup(
        PAPER_MAZES["T"], PAPER_MAZES["n_obs"], PAPER_MAZES["max_frames"], PAPER_MAZES["max_latent_frames"]
    )
    counted = list(dict.fromkeys([*COUNTED_SCHEMES, *args.schemes]))
    print_call_counts(
        "Network calls per GQN-Mazes video", paper, counted, args.samplers_full, args.videos, args.max_batch
    )
    setup = VideoSetup(args.T, args.n_obs, args.max_frames, args.max_latent_frames)
    if setup != paper:
        print_call_counts("Network calls per timed video", setup, counted, args.samplers, args.videos, args.max_batch)
    if not args.skip_timing:
        time_schemes(args, setup, device)
    if args.estimate_full:
        estimate_full(args, device)


if __name__ == "__main__":
    main()
