"""Time the FDM network: one no-grad evaluation and one training step (forward, backward, AdamW).

For each named configuration it reports the median over --repeats runs (after one warm-up) and
the peak memory, for flexvid's network and for a baseline variant of it whose spatial attention
is the explicit softmax(q k^T) v instead of `scaled_dot_product_attention`. Peak memory is the
CUDA max-allocated on GPU and the peak resident-set growth (sampled every millisecond) on CPU.

    python benchmarks/bench_network.py --device cpu --configs ref32 --repeats 5
    python benchmarks/bench_network.py --profile ref32   # where the time of one evaluation goes
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

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
    "carla128": BenchConfig(
        ModelConfig(image_size=128, num_channels=128, num_res_blocks=1, max_frames=20), batch=2
    ),
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


def set_fused_attention(model: torch.nn.Module, enabled: bool) -> None:
    """Switch every spatial attention between the fused SDPA path and the explicit baseline."""
    for module in model.modules():
        if isinstance(module, SpatialAttention):
            module.use_sdpa = enabled


def timed(fn: Callable[[], None], repeats: int, device: torch.device, memory: PeakMemory) -> float:
    """Median seconds of `fn` over `repeats` runs after one warm-up run (memory tracked throughout)."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    with memory.measure():
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        with memory.measure():
            fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def bench_one(cfg: BenchConfig, device: torch.device, precision: str, repeats: int, fused: bool) -> dict[str, float]:
    """Evaluation and training-step medians (s) and peak memories (MiB) for one variant."""
    torch.manual_seed(0)
    model = UNetVideo(cfg.model).to(device)
    set_fused_attention(model, fused)
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

    model.eval()
    eval_mem = PeakMemory(device)
    eval_s = timed(evaluate, repeats, device, eval_mem)
    model.train()
    train_mem = PeakMemory(device)
    train_s = timed(train_step, repeats, device, train_mem)
    mib = 1024.0**2
    return {"eval_s": eval_s, "train_s": train_s, "eval_mib": eval_mem.peak_bytes / mib, "train_mib": train_mem.peak_bytes / mib}


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
    parser.add_argument("--configs", default="ref32,mazes64,carla128", help="comma-separated names from: " + ", ".join(CONFIGS))
    parser.add_argument("--repeats", type=int, default=5)
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
    print(f"device {device}, precision {args.precision}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} runs")
    header = (f"| config | B | K | variant | eval (s) | train step (s) | eval peak (MiB) | train peak (MiB) |\n"
              f"|---|---|---|---|---|---|---|---|")
    print(header)
    for name in names:
        cfg = CONFIGS[name]
        rows = {}
        for variant, fused in (("flexvid (SDPA)", True), ("baseline (explicit attention)", False)):
            r = bench_one(cfg, device, args.precision, args.repeats, fused)
            rows[variant] = r
            print(f"| {name} | {cfg.batch} | {cfg.model.max_frames} | {variant} | {r['eval_s']:.3f} | "
                  f"{r['train_s']:.3f} | {r['eval_mib']:.0f} | {r['train_mib']:.0f} |", flush=True)
        ours, base = rows["flexvid (SDPA)"], rows["baseline (explicit attention)"]
        print(f"| {name} | | | speed-up vs baseline | {base['eval_s'] / ours['eval_s']:.2f}x | "
              f"{base['train_s'] / ours['train_s']:.2f}x | | |", flush=True)


if __name__ == "__main__":
    main()
