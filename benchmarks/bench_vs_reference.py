"""Time flexvid's network against the authors' code, side by side in one process.

For each configuration both networks are built from the same flags (the authors' defaults plus the
configuration's settings) and given the same state dict and inputs. The script first checks that
their outputs agree to float32 round-off and stops if they do not. It then times one no-grad
evaluation and one training step (MSE on the latent frames, backward, AdamW step) of each, after one
warm-up run of each, alternating reference and flexvid runs so that both see the same load, and
prints the medians, their ratios and the machine's load. The authors' code is imported from a local
checkout of their repository (github.com/plai-group/flexible-video-diffusion-modeling), which is
never part of flexvid:

    python benchmarks/bench_vs_reference.py --reference path/to/flexible-video-diffusion-modeling
    python benchmarks/bench_vs_reference.py --reference ... --configs small --repeats 1 --threads 2
    python benchmarks/bench_vs_reference.py --reference ... --configs small --profile
"""

from __future__ import annotations

import argparse
import gc
import importlib
import inspect
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from bench_network import BenchConfig, make_inputs

from flexvid.checkpoint import build_model, check_state_dict, config_from_reference
from flexvid.nn import UNetVideo

# Files that only the authors' FDM repository has together (improved-diffusion lacks rpe.py).
REFERENCE_FILES = ("improved_diffusion/script_util.py", "improved_diffusion/unet.py", "improved_diffusion/rpe.py")
# Largest relative error (norm of the difference / norm of the reference output) taken as round-off.
AGREEMENT_TOLERANCE = 1e-5
PROFILE_ROWS = 15
PROFILE_REPEATS = 3
# oneDNN's convolution operators (forward; backward for input and weights), as the profiler names them.
CONVOLUTION_OPS = ("aten::mkldnn_convolution", "aten::convolution_backward")


@dataclass(frozen=True)
class Case:
    """A configuration: model flags that differ from the authors' defaults, frames per call, batch."""

    flags: dict[str, Any]
    max_frames: int
    batch: int


CASES: dict[str, Case] = {
    "small": Case({"image_size": 32, "num_channels": 64, "num_res_blocks": 1}, max_frames=10, batch=2),
    "mid": Case({"image_size": 64, "num_channels": 64, "num_res_blocks": 1}, max_frames=16, batch=1),
    # The paper's 64x64 model with one res block per level, as in the authors' CARLA command.
    "paper": Case({"image_size": 64, "num_channels": 128, "num_res_blocks": 1}, max_frames=20, batch=1),
}


def import_reference(directory: Path) -> ModuleType:
    """The authors' `improved_diffusion.script_util`, imported from their checkout at `directory`."""
    missing = [name for name in REFERENCE_FILES if not (directory / name).is_file()]
    if missing:
        raise SystemExit(
            f"--reference {directory} is not a checkout of github.com/plai-group/flexible-video-diffusion-modeling "
            f"(it has no {missing[0]}); clone that repository and pass its directory."
        )
    sys.path.insert(0, str(directory))
    try:
        return importlib.import_module("improved_diffusion.script_util")
    finally:
        sys.path.remove(str(directory))


def build_pair(script_util: ModuleType, case: Case) -> tuple[torch.nn.Module, UNetVideo]:
    """The reference network and flexvid's, built from one set of flags and holding the same weights."""
    flags = {**script_util.model_and_diffusion_defaults(), **case.flags, "max_frames": case.max_frames}
    torch.manual_seed(0)
    reference = script_util.create_model(
        **{name: flags[name] for name in inspect.signature(script_util.create_model).parameters}
    )
    flexvid = build_model(config_from_reference(flags), "the benchmark's flags")
    weights = shared_weights(reference)
    check_state_dict(flexvid, weights, "the reference network")
    reference.load_state_dict(weights)
    flexvid.load_state_dict(weights)
    return reference, flexvid


def shared_weights(reference: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The reference's initial weights, with its all-zero tensors (output layers, norm biases) made
    small random values so that every path of the network shows in the output comparison."""
    gen = torch.Generator().manual_seed(0)
    return {
        name: torch.randn(t.shape, generator=gen) * 0.02 if t.is_floating_point() and not t.any() else t.clone()
        for name, t in reference.state_dict().items()
    }


def forwards(
    reference: torch.nn.Module, flexvid: UNetVideo, inputs: dict[str, torch.Tensor]
) -> dict[str, Callable[[], torch.Tensor]]:
    """One call of each network on the same inputs (the reference takes keywords and returns a pair)."""
    return {
        "reference": lambda: reference(
            inputs["x"],
            x0=inputs["x0"],
            timesteps=inputs["timesteps"],
            frame_indices=inputs["frame_indices"],
            obs_mask=inputs["obs_mask"],
            latent_mask=inputs["latent_mask"],
        )[0],
        "flexvid": lambda: flexvid(**inputs),
    }


def agreement(calls: dict[str, Callable[[], torch.Tensor]]) -> tuple[float, float]:
    """(max abs error, relative error) of flexvid's output against the reference's."""
    with torch.no_grad():
        expected, out = calls["reference"](), calls["flexvid"]()
    diff = out - expected
    return float(diff.abs().max()), float(diff.norm() / expected.norm())


def evaluation(call: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """One network evaluation without gradients."""

    def run() -> None:
        with torch.no_grad():
            call()

    return run


def training_step(
    call: Callable[[], torch.Tensor], model: torch.nn.Module, inputs: dict[str, torch.Tensor]
) -> Callable[[], None]:
    """One training step: MSE against fixed noise on the latent frames, backward, AdamW step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    target = torch.randn(inputs["x"].shape, generator=torch.Generator().manual_seed(1))
    mask = inputs["latent_mask"]

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = ((call() - target) ** 2 * mask).mean()
        loss.backward()
        optimizer.step()

    return run


def interleaved_medians(runs: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median wall seconds of each run: one warm-up each, then `repeats` rounds running each in turn."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def self_cpu_ms(run: Callable[[], None]) -> dict[str, float]:
    """Self CPU milliseconds per operator: the minimum over PROFILE_REPEATS profiled runs (after an
    unprofiled warm-up run), which filters out the slices other processes took."""
    run()
    best: dict[str, float] = {}
    for _ in range(PROFILE_REPEATS):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            run()
        for event in prof.key_averages():
            best[event.key] = min(best.get(event.key, float("inf")), event.self_cpu_time_total / 1000)
    return best


def print_profile(title: str, runs: dict[str, Callable[[], None]]) -> None:
    """The operators with the most self CPU time in either network, reference and flexvid side by side,
    then the convolutions' share and the largest ratio flexvid could reach with its convolutions as they are."""
    ms = {name: self_cpu_ms(run) for name, run in runs.items()}
    ops = sorted(set().union(*ms.values()), key=lambda op: -max(m.get(op, 0.0) for m in ms.values()))
    print(f"\n{title}: self CPU time (ms) of the top {PROFILE_ROWS} operators\n")
    print("| operator | reference | flexvid |\n|---|---:|---:|")
    for op in ops[:PROFILE_ROWS]:
        print(f"| {op} | {ms['reference'].get(op, 0.0):.1f} | {ms['flexvid'].get(op, 0.0):.1f} |")
    total = {name: sum(m.values()) for name, m in ms.items()}
    conv = {name: sum(m.get(op, 0.0) for op in CONVOLUTION_OPS) for name, m in ms.items()}
    print(f"| all operators | {total['reference']:.1f} | {total['flexvid']:.1f} |")
    print(f"| convolutions ({', '.join(CONVOLUTION_OPS)}) | {conv['reference']:.1f} | {conv['flexvid']:.1f} |")
    print(
        f"| everything else | {total['reference'] - conv['reference']:.1f} | {total['flexvid'] - conv['flexvid']:.1f} |"
    )
    print(
        f"\nConvolutions: {100 * conv['reference'] / total['reference']:.0f}% of the reference's time, "
        f"{100 * conv['flexvid'] / total['flexvid']:.0f}% of flexvid's. "
        f"Ratio now {total['reference'] / total['flexvid']:.2f}x; "
        f"with flexvid's convolutions as they are and everything else free: at most "
        f"{total['reference'] / conv['flexvid']:.2f}x.",
        flush=True,
    )


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def bench_case(name: str, case: Case, script_util: ModuleType, repeats: int, profile: bool) -> None:
    """Check agreement for one configuration, then print its table row, or its profiles with `profile`."""
    reference, flexvid = build_pair(script_util, case)
    inputs = make_inputs(BenchConfig(flexvid.config, case.batch), torch.device("cpu"))
    calls = forwards(reference, flexvid, inputs)
    reference.eval()
    flexvid.eval()
    max_abs, rel = agreement(calls)
    if rel > AGREEMENT_TOLERANCE:
        raise SystemExit(
            f"{name}: flexvid's output differs from the reference's (max abs error {max_abs:.2e}, relative "
            f"error {rel:.2e}, above float32 round-off {AGREEMENT_TOLERANCE:.0e}), so there is nothing to time."
        )
    evals = {key: evaluation(call) for key, call in calls.items()}
    models = {"reference": reference, "flexvid": flexvid}
    steps = {key: training_step(calls[key], model, inputs) for key, model in models.items()}
    if profile:
        print(f"\n## {name}: max abs error {max_abs:.1e}, relative error {rel:.1e}", flush=True)
        print_profile(f"{name}, one evaluation", evals)
        reference.train()
        flexvid.train()
        print_profile(f"{name}, one training step", steps)
        return
    eval_s = interleaved_medians(evals, repeats)
    reference.train()
    flexvid.train()
    train_s = interleaved_medians(steps, repeats)
    params = sum(p.numel() for p in flexvid.parameters()) / 1e6
    print(
        f"| {name}: {case.flags['image_size']} px, {case.flags['num_channels']} ch, "
        f"{case.flags['num_res_blocks']} res block | {params:.1f}M | {case.max_frames} | {case.batch} | "
        f"{max_abs:.1e} / {rel:.1e} | {eval_s['reference']:.3f} / {eval_s['flexvid']:.3f} | "
        f"{eval_s['reference'] / eval_s['flexvid']:.2f}x | {train_s['reference']:.3f} / {train_s['flexvid']:.3f} | "
        f"{train_s['reference'] / train_s['flexvid']:.2f}x | {os.getloadavg()[0]:.2f} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="a checkout of the authors' repository")
    parser.add_argument("--configs", default=",".join(CASES), help="comma-separated names from: " + ", ".join(CASES))
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each network per measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--profile", action="store_true", help="print per-operator profiles instead of timing")
    args = parser.parse_args()
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown configs {unknown}; choose from {list(CASES)}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    script_util = import_reference(args.reference)
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu_model()} ({os.cpu_count()} logical CPUs), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, float32; load average (1 / 5 / 15 min) before: {load()}"
    )
    if not args.profile:
        print(
            f"\nMedians of {args.repeats} interleaved runs after one warm-up each; ratio = reference time / "
            "flexvid time; error = flexvid's output against the reference's (max abs / relative); load = "
            "1-minute load average when the row finished.\n"
        )
        print(
            "| config | params | K | B | error | eval ref / flexvid (s) | ratio "
            "| train step ref / flexvid (s) | ratio | load |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for name in names:
        bench_case(name, CASES[name], script_util, args.repeats, args.profile)
        gc.collect()
    print(f"\nload average (1 / 5 / 15 min) after: {load()}")


if __name__ == "__main__":
    main()
