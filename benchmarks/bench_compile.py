"""torch.compile (Inductor) of flexvid's network against the eager network, interleaved in one process.

Same weights and inputs; the compiled outputs are checked against eager ones first. Reports the
compile times and the medians of an evaluation (no grad) and a training step (forward, MSE backward):

    python benchmarks/bench_compile.py --threads 1 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from bench_network import BenchConfig, make_inputs

from flexvid.config import ModelConfig
from flexvid.nn import UNetVideo

# The side-by-side benchmark's "small" case: 32 px, 64 channels, 1 res block, K = 10, batch 2.
CONFIG = BenchConfig(ModelConfig(image_size=32, num_channels=64, num_res_blocks=1, max_frames=10), batch=2)


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    eager = UNetVideo(CONFIG.model)
    torch.nn.init.normal_(eager.out[-1].weight, std=0.02)  # the zero-initialised output layer hides errors
    compiled = torch.compile(eager)
    inputs = make_inputs(CONFIG, torch.device("cpu"))

    def evaluate(model: torch.nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return model(**inputs)

    def train_step(model: torch.nn.Module) -> None:
        model(**inputs).square().mean().backward()

    compile_eval = timed(lambda: evaluate(compiled))
    error = (evaluate(compiled) - evaluate(eager)).norm() / evaluate(eager).norm()
    compile_train = timed(lambda: train_step(compiled))
    times: dict[str, list[float]] = {"eval eager": [], "eval compiled": [], "train eager": [], "train compiled": []}
    for _ in range(args.repeats):
        times["eval eager"].append(timed(lambda: evaluate(eager)))
        times["eval compiled"].append(timed(lambda: evaluate(compiled)))
        times["train eager"].append(timed(lambda: train_step(eager)))
        times["train compiled"].append(timed(lambda: train_step(compiled)))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.2f}")
    print(f"compile: eval {compile_eval:.0f} s, training step {compile_train:.0f} s; relative error {error:.1e}")
    for mode in ("eval", "train"):
        eager_s, compiled_s = median[f"{mode} eager"], median[f"{mode} compiled"]
        print(f"{mode}: eager {eager_s:.3f} s, compiled {compiled_s:.3f} s, speed-up {eager_s / compiled_s:.2f}x")


if __name__ == "__main__":
    main()
