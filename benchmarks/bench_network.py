"""Time the FDM network: one no-grad evaluation and one training step (forward, backward, AdamW).

For each named configuration it reports the median wall-clock and CPU time over --repeats runs
(after one warm-up) and the peak memory, for flexvid's network and for a straightforward variant
of it: plain NCHW memory layout and an explicit softmax(q k^T) v spatial attention instead of
channels-last memory and `scaled_dot_product_attention`. Each variant runs in a fresh process.
Peak memory is the CUDA max-allocated on GPU, and on CPU the peak growth of the resident set
(sampled every millisecond) over what the model, optimizer and inputs hold before the first run.

    python benchmarks/bench_network.py --device cpu --configs ref32 --repeats 5
    python benchmarks/bench_network.py --profile ref32   # where the time goes, per operator
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from flexvid.config import ModelConfig
from flexvid.nn import UNetVideo
from flexvid.nn.attention import SpatialAttention


@dataclass(frozen=True)
class BenchConfig:
    """A network configuration and the batch it is timed on."""

    model: ModelConfig
    batch: int


CONFIGS: dict[str, BenchConfig] = {
    # The reference code's defaults (2 res blocks, 4 heads, attention at 16 and 8) at 32x32, 64 channels.
    "ref32": BenchConfig(ModelConfig(image_size=32, num_channels=64, max_frames=10), batch=2),
    # The paper's GQN-Mazes model: 64x64, 128 channels, K=20.
    "mazes64": BenchConfig(ModelConfig(image_size=64, num_channels=128, max_frames=20), batch=8),
    # CARLA Town01 as in the authors' README: 128x128, 128 channels, one res block per level, K=20.
    "carla128": BenchConfig(ModelConfig(image_size=128, num_channels=128, num_res_blocks=1, max_frames=20), batch=2),
}


def make_inputs(cfg: BenchConfig, device: torch.device) -> dict[str, torch.Tensor]:
    """A random batch: a few observed frames, the rest latent, with spread-out frame indices."""
    b, k, size = cfg.batch, cfg.model.max_frames, cfg.model.image_size
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(b, k, 3, size, size, generator=gen)
    obs = torch.zeros(b, k, 1, 1, 1)
    obs[:, : max(1, k // 4)] = 1
    frame_indices = torch.sort(torch.randperm(10 * k, generator=gen)[:k]).values.repeat(b, 1)
    inputs = {
        "x": torch.randn(b, k, 3, size, size, generator=gen),
        "timesteps": torch.randint(0, 1000, (b,), generator=gen),
        "frame_indices": frame_indices,
        "obs_mask": obs,
        "latent_mask": 1 - obs,
        "x0": x0,
    }
    return {name: t.to(device) for name, t in inputs.items()}


class PeakMemory:
    """Peak memory growth during a block: CUDA max-allocated, or resident set size sampled on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes = 0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start = torch.cuda.memory_allocated()
            yield
            torch.cuda.synchronize()
            self.peak_bytes = max(self.peak_bytes, torch.cuda.max_memory_allocated() - start)
            return
        start, peak, done = self._rss(), [0], threading.Event()

        def poll() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], self._rss())
                time.sleep(0.001)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            self.peak_bytes = max(self.peak_bytes, max(peak[0], self._rss()) - start)


def use_variant(model: UNetVideo, fast: bool) -> None:
    """flexvid's fast paths (channels-last memory, SDPA spatial attention) or the plain variant."""
    model.channels_last = fast
    for module in model.modules():
        if isinstance(module, SpatialAttention):
            module.use_sdpa = fast


def timed(fn: Callable[[], None], repeats: int, device: torch.device, memory: PeakMemory) -> tuple[float, float]:
    """Median wall-clock and CPU seconds of `fn` over `repeats` runs after one warm-up run."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    with memory.measure():
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        sync()
        start, start_cpu = time.perf_counter(), time.process_time()
        with memory.measure():
            fn()
        sync()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return statistics.median(walls), statistics.median(cpus)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def bench_one(
    name: str, device_name: str, precision: str, repeats: int, fast: bool, modes: tuple[str, ...], threads: int | None
) -> dict[str, float]:
    """Times (s) and peak memories (MiB) of one variant of one configuration; run in its own process."""
    if threads:
        torch.set_num_threads(threads)
    cfg, device = CONFIGS[name], torch.device(device_name)
    torch.manual_seed(0)
    model = UNetVideo(cfg.model).to(device)
    use_variant(model, fast)
    inputs = make_inputs(cfg, device)
    target = torch.randn_like(inputs["x"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def evaluate() -> None:
        with torch.no_grad(), autocast(device, precision):
            model(**inputs)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = (model(**inputs).float() - target).pow(2).mean()
        loss.backward()
        optimizer.step()

    results, mib = {}, 1024.0**2
    for mode, fn, training in (("eval", evaluate, False), ("train", train_step, True)):
        if mode not in modes:
            continue
        model.train(training)
        memory = PeakMemory(device)
        results[f"{mode}_s"], results[f"{mode}_cpu_s"] = timed(fn, repeats, device, memory)
        results[f"{mode}_mib"] = memory.peak_bytes / mib
    return results


def in_fresh_process(*args: object) -> dict[str, float]:
    """`bench_one(*args)` in a new interpreter, so memory peaks and allocator state do not carry over."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(bench_one, args)


def profile(name: str, device: torch.device, precision: str) -> None:
    """Print the operators taking the most time in one evaluation and one training step."""
    cfg = CONFIGS[name]
    model = UNetVideo(cfg.model).to(device)
    inputs = make_inputs(cfg, device)
    with torch.no_grad(), autocast(device, precision):
        model(**inputs)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    sort_key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    with torch.profiler.profile(activities=activities) as prof:
        with torch.no_grad(), autocast(device, precision):
            model(**inputs)
    print(f"== {name}: one evaluation ==")
    print(prof.key_averages().table(sort_by=sort_key, row_limit=15))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with torch.profiler.profile(activities=activities) as prof:
        with autocast(device, precision):
            loss = model(**inputs).float().pow(2).mean()
        loss.backward()
        optimizer.step()
    print(f"== {name}: one training step ==")
    print(prof.key_averages().table(sort_by=sort_key, row_limit=15))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument(
        "--configs", default="ref32,mazes64,carla128", help="comma-separated names from: " + ", ".join(CONFIGS)
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--modes", default="eval,train", help="what to time: eval, train or both")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--profile", metavar="CONFIG", help="profile one configuration instead of timing")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.profile:
        profile(args.profile, device, args.precision)
        return
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    modes = tuple(m.strip() for m in args.modes.split(","))
    print(
        f"device {device}, precision {args.precision}, torch {torch.__version__}, "
        f"{args.threads or torch.get_num_threads()} threads, median of {args.repeats} runs; "
        "times in s (wall / CPU), peak memory in MiB"
    )
    print("| config | B | K | variant | eval wall | eval CPU | train wall | train CPU | eval peak | train peak |")
    print("|---|---|---|---|---|---|---|---|---|---|")

    def cell(r: dict[str, float], key: str, fmt: str = "{:.3f}") -> str:
        return fmt.format(r[key]) if key in r else "-"

    for name in names:
        cfg = CONFIGS[name]
        rows = {}
        for variant, fast in (("flexvid", True), ("plain NCHW + explicit attention", False)):
            r = in_fresh_process(name, args.device, args.precision, args.repeats, fast, modes, args.threads)
            rows[fast] = r
            print(
                f"| {name} | {cfg.batch} | {cfg.model.max_frames} | {variant} | {cell(r, 'eval_s')} | "
                f"{cell(r, 'eval_cpu_s')} | {cell(r, 'train_s')} | {cell(r, 'train_cpu_s')} | "
                f"{cell(r, 'eval_mib', '{:.0f}')} | {cell(r, 'train_mib', '{:.0f}')} |",
                flush=True,
            )
        ratios = {key: rows[False][key] / rows[True][key] for key in rows[True] if key.endswith("_s")}
        print(
            f"| {name} | | | speed-up | {cell(ratios, 'eval_s', '{:.2f}x')} | "
            f"{cell(ratios, 'eval_cpu_s', '{:.2f}x')} | "
            f"{cell(ratios, 'train_s', '{:.2f}x')} | {cell(ratios, 'train_cpu_s', '{:.2f}x')} | | |",
            flush=True,
        )


if __name__ == "__main__":
    main()
