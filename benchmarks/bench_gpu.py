"""One prepared GPU run: exactness on the device, paper-size training throughput and MFU, long-video sampling.

Made to fit one H100/H200 session of 15 minutes including CUDA start-up: about 8-10 minutes of
measured work, with a time budget per part. It prints one Markdown report and writes it to --out
(atomically, after every section, so a run cut short still leaves the finished sections):

1. Exactness: the paper's GQN-Mazes network (random weights, all-zero tensors made small random
   values) in float32 on the CPU and on the device with TF32 off, same inputs: max abs and relative
   error, PASS below 1e-5 relative. Then the authors' small reference network (reference_small.pt)
   on the device against its stored output (reference_small_io.npz), when those files are present.
   A FAIL is reported, not raised. Takes well under a minute.
2. Training step of the GQN-Mazes model (64x64, 128 channels, 2 res blocks, 4 heads, attention at
   16 and 8, K=20) under bf16 autocast: forward, MSE on the latent frames, backward, AdamW step, at
   batch 8 (the paper's) and 16. Reports s/step, videos/s, frames/s, peak memory and the model FLOPs
   utilisation: 3 x the forward FLOPs (torch.utils.flop_counter) / step time / the device's peak
   dense bf16 FLOP/s, against a 40% target. Budget --train_budget_s (default 120 s).
3. Sampling a 300-frame GQN-Mazes-shaped video (36 observed frames, K=20, 10 latent frames per
   stage) with hierarchy-2 and autoreg, DDIM-100, bf16, one video and 8 videos together, through
   `run_stages` (bench_sampling.sample_once). Each row is first timed at a few DDIM steps; a row
   whose full run would exceed its share of the remaining budget (--sample_budget_s, default 360 s)
   is timed at fewer steps and scaled linearly, marked "scaled". Targets on one H100 at one video:
   hierarchy-2 under 30 s, autoreg under 60 s (the paper: about 16 minutes per video, DDPM-1000).
4. A summary line per target: met / not met.

    python benchmarks/bench_gpu.py --out gpu_results.md
    python benchmarks/bench_gpu.py --parts sample --sample_budget_s 200   # one part again
    python benchmarks/bench_gpu.py --device cpu --smoke --out gpu_smoke.md   # every code path, tiny
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from bench_network import BenchConfig, autocast, make_inputs, use_variant
from bench_sampling import (
    PAPER_MAZES,
    SamplerSpec,
    VideoSetup,
    call_rows,
    make_sampler,
    observed_videos,
    sample_once,
    synchronize,
    warm_up,
)
from bench_vs_reference import AGREEMENT_TOLERANCE, cpu_model, shared_weights
from torch.utils.flop_counter import FlopCounterMode

from flexvid.checkpoint import config_from_reference
from flexvid.config import ModelConfig
from flexvid.nn import UNetVideo
from flexvid.sampling.generate import with_precision
from flexvid.schemes import Stage

ROOT = Path(__file__).resolve().parents[1]
# Where the authors' reference checkpoint and outputs may be: the shared copy, then the tests' copy.
REFERENCE_DIRS = (ROOT.parent / "shared" / "reference", ROOT / "tests" / "data" / "reference")
PARTS = ("exact", "train", "sample")
TARGET_MFU = 0.40
# Seconds per video at one video, DDIM-100, bf16, on one H100.
TARGET_SECONDS = {"hierarchy-2": 30.0, "autoreg": 60.0}
PAPER_SECONDS_PER_VIDEO = 16 * 60  # the paper's figure, DDPM-1000
# Peak dense bf16 FLOP/s: (device-name substring, card, FLOP/s), first match wins. An H100 SXM names
# itself "NVIDIA H100 80GB HBM3", so plain "H100" comes after the PCIe and NVL cards.
PEAK_BF16 = (
    ("H100 PCIe", "H100 PCIe", 756e12),
    ("H100 NVL", "H100 NVL", 835e12),
    ("H100", "H100 SXM", 989e12),
    ("H200", "H200", 989e12),
    ("A100", "A100", 312e12),
)
GIB = 1024.0**3


@dataclass(frozen=True)
class Plan:
    """What each part runs: the network, batches, videos, samplers and time budgets."""

    label: str
    model: ModelConfig
    exact_batch: int
    train_batches: tuple[int, ...]
    train_warmup: int
    train_max_steps: int
    train_budget_s: float
    video: VideoSetup
    schemes: tuple[str, ...]
    sample_videos: tuple[int, ...]
    sampler: SamplerSpec
    probe_steps: int
    sample_budget_s: float
    max_batch: int = 64
    goals_apply: bool = True  # False: a configuration whose timings are not comparable with the goals


PAPER = Plan(
    label="paper (GQN-Mazes)",
    model=ModelConfig(
        image_size=PAPER_MAZES["image_size"],
        num_channels=PAPER_MAZES["num_channels"],
        num_res_blocks=PAPER_MAZES["num_res_blocks"],
        num_heads=4,
        attention_resolutions=(16, 8),
        max_frames=PAPER_MAZES["max_frames"],
    ),
    exact_batch=2,
    train_batches=(8, 16),
    train_warmup=3,
    train_max_steps=50,
    train_budget_s=120.0,
    video=VideoSetup(
        PAPER_MAZES["T"], PAPER_MAZES["n_obs"], PAPER_MAZES["max_frames"], PAPER_MAZES["max_latent_frames"]
    ),
    schemes=("hierarchy-2", "autoreg"),
    sample_videos=(1, 8),
    sampler=SamplerSpec("ddim", 100),
    probe_steps=2,
    sample_budget_s=360.0,
)
SMOKE = Plan(
    label="smoke (tiny, checks the code paths only)",
    model=ModelConfig(image_size=32, num_channels=32, num_res_blocks=1, num_heads=4, max_frames=8),
    exact_batch=2,
    train_batches=(2, 4),
    train_warmup=1,
    train_max_steps=3,
    train_budget_s=30.0,
    video=VideoSetup(T=40, n_obs=8, max_frames=8, max_latent_frames=4),
    schemes=("hierarchy-2", "autoreg"),
    sample_videos=(1, 2),
    sampler=SamplerSpec("ddim", 10),
    probe_steps=2,
    sample_budget_s=60.0,
    goals_apply=False,
)


class Report:
    """Markdown lines, printed as they come and saved atomically to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def table(self, header: Sequence[str]) -> None:
        self("| " + " | ".join(header) + " |")
        self("|" + "---|" * len(header))

    def row(self, cells: Sequence[object]) -> None:
        self("| " + " | ".join(str(cell) for cell in cells) + " |")

    def save(self) -> None:
        """Write a temporary file next to the report, then move it over the report."""
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=directory, prefix=f".{self.path.name}.", delete=False) as handle:
            handle.write("\n".join(self.lines) + "\n")
        os.chmod(handle.name, 0o644)  # the temporary file is private; the report need not be
        os.replace(handle.name, self.path)


@dataclass
class Target:
    """One target of the run and whether it was met (None: not measured)."""

    name: str
    measured: str
    goal: str
    met: bool | None

    @property
    def verdict(self) -> str:
        return {True: "met", False: "not met", None: "not measured"}[self.met]


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def relative_error(out: torch.Tensor, expected: torch.Tensor) -> tuple[float, float]:
    """(max abs error, norm of the difference / norm of `expected`), both in float32 on the CPU."""
    out, expected = out.detach().float().cpu(), expected.detach().float().cpu()
    diff = out - expected
    return float(diff.abs().max()), float(diff.norm() / expected.norm())


def exactness_row(report: Report, check: str, out: torch.Tensor, expected: torch.Tensor) -> tuple[float, bool]:
    """Report one agreement check as a table row; returns (relative error, whether it passed)."""
    max_abs, rel = relative_error(out, expected)
    passed = rel < AGREEMENT_TOLERANCE
    report.row([check, f"{max_abs:.2e}", f"{rel:.2e}", f"{AGREEMENT_TOLERANCE:.0e}", "PASS" if passed else "FAIL"])
    return rel, passed


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> str:
    """torch.cuda.max_memory_allocated since the last reset_peak, in GiB ("n/a" off CUDA)."""
    if device.type != "cuda":
        return "n/a"
    return f"{torch.cuda.max_memory_allocated(device) / GIB:.1f}"


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def peak_flops(device: torch.device, override_tflops: float | None) -> tuple[float | None, str]:
    """The peak dense bf16 FLOP/s used for MFU and where it comes from."""
    if override_tflops is not None:
        return override_tflops * 1e12, f"{override_tflops:g} TFLOP/s (--peak_tflops)"
    if device.type != "cuda":
        return None, "unknown for a CPU (pass --peak_tflops to get an MFU)"
    name = torch.cuda.get_device_name(device)
    for key, card, flops in PEAK_BF16:
        if key.lower() in name.lower():
            return flops, f"{flops / 1e12:g} TFLOP/s ({card}, from the device name {name!r})"
    return None, f"unknown for {name} (pass --peak_tflops to get an MFU)"


def describe_machine(device: torch.device, report: Report, plan: Plan, cuda_init_s: float | None) -> None:
    """The machine and software at the top of the report."""
    report("# flexvid GPU benchmark")
    report()
    report(f"- date: {time.strftime('%Y-%m-%d %H:%M')}")
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        report(
            f"- device: {torch.cuda.get_device_name(device)} ({props.total_memory / GIB:.0f} GiB, "
            f"{props.multi_processor_count} SMs, compute capability {props.major}.{props.minor})"
        )
    else:
        report("- device: CPU (no accelerator: timings here say nothing about a GPU)")
    report(
        f"- torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}, cuDNN {torch.backends.cudnn.version()} "
        f"(cudnn.benchmark {torch.backends.cudnn.benchmark})"
    )
    report(f"- host CPU: {cpu_model()} ({os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads)")
    if cuda_init_s is not None:
        report(f"- CUDA start-up (first tensor on the device): {cuda_init_s:.1f} s")
    report(f"- configuration: {plan.label}")
    report()


def exactness_section(
    plan: Plan, device: torch.device, report: Report, targets: list[Target], args: argparse.Namespace
) -> None:
    """Part 1: float32 on the device (TF32 off) against float32 on the CPU, and against the authors' output."""
    report("## 1. Exactness on the device (float32, TF32 off)")
    report()
    cfg = plan.model
    report(
        f"The {cfg.image_size}x{cfg.image_size}, {cfg.num_channels}-channel network (random weights, its all-zero "
        f"tensors made small random values so every path shows), batch {plan.exact_batch}, K={cfg.max_frames}: "
        f"float32 on the CPU against float32 on {device} with TF32 disabled for matmuls and cuDNN. "
        f"Relative error = norm of the difference / norm of the expected output; PASS below {AGREEMENT_TOLERANCE:.0e}."
    )
    report()
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        report.table(["check", "max abs error", "relative error", "tolerance", "result"])
        torch.manual_seed(0)
        cpu_net = UNetVideo(cfg)
        cpu_net.load_state_dict(shared_weights(cpu_net))
        cpu_net.eval()
        inputs = make_inputs(BenchConfig(cfg, plan.exact_batch), torch.device("cpu"))
        with torch.no_grad():
            expected = cpu_net(**inputs)
        dev_net = copy.deepcopy(cpu_net).to(device)
        dev_inputs = {name: t.to(device) for name, t in inputs.items()}
        with torch.no_grad():
            out = dev_net(**dev_inputs)
            with autocast(device, "bf16"):
                out_bf16 = dev_net(**dev_inputs)
        rel, passed = exactness_row(report, f"network fp32, {device} vs CPU", out, expected)
        targets.append(Target(f"fp32 exactness, {device} vs CPU", f"{rel:.1e}", f"< {AGREEMENT_TOLERANCE:.0e}", passed))
        # Diagnostic for a FAIL: the same with plain NCHW memory and explicit attention instead of SDPA.
        use_variant(dev_net, fast=False)
        with torch.no_grad():
            out_plain = dev_net(**dev_inputs)
        exactness_row(
            report, f"network fp32, plain NCHW + explicit attention, {device} vs CPU (diagnostic)", out_plain, expected
        )
        max_abs, rel = relative_error(out_bf16, expected)
        report.row([f"network bf16 autocast, {device} vs CPU fp32", f"{max_abs:.2e}", f"{rel:.2e}", "-", "info"])
        del cpu_net, dev_net
        free_memory(device)
        reference_rows(device, report, targets, args.reference_dir)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    report()


def find_reference(explicit: Path | None) -> Path | None:
    """The first directory holding both reference files, or None."""
    for directory in (explicit,) if explicit is not None else REFERENCE_DIRS:
        if (directory / "reference_small.pt").is_file() and (directory / "reference_small_io.npz").is_file():
            return directory
    return None


def reference_rows(device: torch.device, report: Report, targets: list[Target], explicit: Path | None) -> None:
    """The authors' small network on the CPU and the device against the output their code stored."""
    directory = find_reference(explicit)
    if directory is None:
        where = explicit if explicit is not None else " or ".join(os.path.relpath(d, ROOT) for d in REFERENCE_DIRS)
        report.row(["authors' reference output", "-", "-", "-", f"skipped: no reference_small.pt/_io.npz in {where}"])
        targets.append(Target("reference output on the device", "skipped", f"< {AGREEMENT_TOLERANCE:.0e}", None))
        return
    payload = torch.load(directory / "reference_small.pt", map_location="cpu", weights_only=True)
    model = UNetVideo(config_from_reference(payload["config"]).network)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    with np.load(directory / "reference_small_io.npz") as data:
        io = {name: torch.from_numpy(data[name]) for name in data.files}
    names = ("x_t", "t", "frame_indices", "obs_mask", "latent_mask", "x_start")
    where = os.path.relpath(directory, ROOT)
    for run_on in dict.fromkeys([torch.device("cpu"), device]):
        with torch.no_grad():
            out = model.to(run_on)(*(io[name].to(run_on) for name in names))
        check = f"authors' reference network ({where}), {run_on} vs their stored output"
        rel, passed = exactness_row(report, check, out, io["model_output"])
    targets.append(Target(f"reference output on {device}", f"{rel:.1e}", f"< {AGREEMENT_TOLERANCE:.0e}", passed))


@dataclass(frozen=True)
class TrainResult:
    """One timed training run at one batch size."""

    batch: int
    steps: int
    seconds_per_step: float
    forward_flops: int
    peak_memory: str


def time_training(
    cfg: ModelConfig, batch: int, device: torch.device, budget_s: float, warmup: int, max_steps: int
) -> TrainResult:
    """Warm up, time as many steps as fit in `budget_s` (at most `max_steps`), count one forward's FLOPs."""
    begin = time.perf_counter()
    torch.manual_seed(0)
    model = UNetVideo(cfg).to(device).train()
    inputs = make_inputs(BenchConfig(cfg, batch), device)
    target = torch.randn(inputs["x"].shape, generator=torch.Generator().manual_seed(1)).to(device)
    mask = inputs["latent_mask"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, "bf16"):
            out = model(**inputs)
        loss = ((out.float() - target) ** 2 * mask).mean()
        loss.backward()
        optimizer.step()

    reset_peak(device)
    for _ in range(warmup):
        step()
    synchronize(device)
    probe_begin = time.perf_counter()
    step()
    synchronize(device)
    probe = time.perf_counter() - probe_begin
    left = budget_s - (time.perf_counter() - begin)
    steps = max(1, min(max_steps, int(left / probe)))
    synchronize(device)
    timed_begin = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    seconds = (time.perf_counter() - timed_begin) / steps
    memory = peak_memory(device)
    optimizer.zero_grad(set_to_none=True)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad(), autocast(device, "bf16"):
        model(**inputs)
    return TrainResult(batch, steps, seconds, counter.get_total_flops(), memory)


def training_section(
    plan: Plan, device: torch.device, report: Report, targets: list[Target], args: argparse.Namespace
) -> None:
    """Part 2: bf16 training steps at each batch size, throughput and MFU."""
    cfg = plan.model
    peak, peak_source = peak_flops(device, args.peak_tflops)
    report("## 2. Training step (bf16 autocast)")
    report()
    report(
        f"{cfg.image_size}x{cfg.image_size}, {cfg.num_channels} channels, {plural(cfg.num_res_blocks, 'res block')}, "
        f"{cfg.num_heads} heads, attention at {', '.join(map(str, cfg.attention_resolutions))}, K={cfg.max_frames}, "
        f"random weights: forward under bf16 autocast, MSE on the latent frames, backward, AdamW step. "
        f"{plural(plan.train_warmup, 'warm-up step')}, then as many timed steps as fit the part's budget "
        f"({plan.train_budget_s:.0f} s, shared between batch sizes; at most {plan.train_max_steps}). "
        f"MFU = 3 x forward FLOPs (FlopCounterMode, one forward at that batch) / s per step / peak dense bf16 "
        f"FLOP/s; peak used: {peak_source}. Target MFU {TARGET_MFU:.0%}. Peak memory = "
        "torch.cuda.max_memory_allocated over the batch size's run (GiB)."
    )
    report()
    report.table(
        [
            "batch (videos)",
            "steps timed",
            "s/step",
            "videos/s",
            "frames/s",
            "forward TFLOP",
            "achieved TFLOP/s",
            "MFU",
            "target MFU",
            "peak memory (GiB)",
        ]
    )
    begin = time.perf_counter()
    batches = plan.train_batches
    for i, batch in enumerate(batches):
        remaining = plan.train_budget_s - (time.perf_counter() - begin)
        if i > 0 and remaining <= 0:
            report.row([batch, "skipped: training budget spent", *["-"] * 8])
            continue
        try:
            result = time_training(
                cfg, batch, device, remaining / (len(batches) - i), plan.train_warmup, plan.train_max_steps
            )
        except torch.OutOfMemoryError:
            report.row([batch, "out of memory", *["-"] * 8])
            if i == 0:
                targets.append(Target(f"training MFU at batch {batch}", "out of memory", f">= {TARGET_MFU:.0%}", None))
            continue
        finally:
            free_memory(device)
        step_flops = 3 * result.forward_flops
        achieved = step_flops / result.seconds_per_step
        mfu = achieved / peak if peak else None
        videos_per_s = batch / result.seconds_per_step
        report.row(
            [
                batch,
                result.steps,
                f"{result.seconds_per_step:.3f}",
                f"{videos_per_s:.1f}",
                f"{videos_per_s * cfg.max_frames:.0f}",
                f"{result.forward_flops / 1e12:.2f}",
                f"{achieved / 1e12:.1f}",
                f"{mfu:.1%}" if mfu is not None else "n/a",
                f"{TARGET_MFU:.0%}",
                result.peak_memory,
            ]
        )
        if i == 0:
            targets.append(
                Target(
                    f"training MFU at batch {batch}",
                    f"{mfu:.1%}" if mfu is not None else "n/a (no peak FLOP/s)",
                    f">= {TARGET_MFU:.0%}",
                    None if mfu is None else mfu >= TARGET_MFU,
                )
            )
        report.save()
    report()


def sample_at(
    model: torch.nn.Module,
    spec: SamplerSpec,
    steps: int,
    stages: Sequence[Stage],
    start: torch.Tensor,
    max_batch: int,
    device: torch.device,
) -> tuple[float, torch.Tensor]:
    """Seconds to fill in `start`'s videos with `spec`'s sampler respaced to `steps` steps, and the videos."""
    diffusion, fn = make_sampler(spec, steps)
    return sample_once(model, diffusion, fn, stages, start, True, max_batch, device)


def sampling_section(
    plan: Plan, device: torch.device, report: Report, targets: list[Target], args: argparse.Namespace
) -> None:
    """Part 3: one long video per scheme and batch, timed whole where the budget allows, else scaled."""
    setup, spec, cfg = plan.video, plan.sampler, plan.model
    report("## 3. Sampling long videos (bf16)")
    report()
    report(
        f"T={setup.T}, {setup.n_obs} observed frames, K={setup.max_frames}, {setup.max_latent_frames} latent frames "
        f"per stage, {spec.label}, bf16 autocast, {cfg.image_size}x{cfg.image_size} network with random weights, "
        f"stages batched (max_batch {plan.max_batch}). Every row is first timed at {plan.probe_steps} DDIM steps; a "
        f"row whose full run would exceed its share of the remaining budget ({plan.sample_budget_s:.0f} s for the "
        'part) is timed at fewer steps and scaled linearly ("scaled"). Targets apply to one video on one H100; the '
        f"paper reports about {PAPER_SECONDS_PER_VIDEO // 60} minutes per video with DDPM-1000. Peak memory = "
        "torch.cuda.max_memory_allocated over the row (GiB, weights included)."
    )
    report()
    report.table(
        [
            "scheme",
            "videos",
            "network calls",
            "steps timed",
            "s per batch",
            "s per video",
            "target (s per video)",
            "met",
            "peak memory (GiB)",
            "finite",
        ]
    )
    torch.manual_seed(0)
    network = UNetVideo(cfg).to(device).eval()
    model = with_precision(network, "bf16", device.type)
    rows = [(videos, scheme) for videos in plan.sample_videos for scheme in plan.schemes]
    begin = time.perf_counter()
    for i, (videos, scheme) in enumerate(rows):
        stages = setup.stages(scheme)
        calls = call_rows(stages, videos, plan.max_batch, batch_stages=True)
        start = observed_videos(setup, videos, cfg.image_size)
        reset_peak(device)
        warm_up(model, cfg, set(calls), setup.observed_per_call, device)
        probe_s, out = sample_at(model, spec, plan.probe_steps, stages, start, plan.max_batch, device)
        estimate = probe_s * spec.steps / plan.probe_steps
        share = (plan.sample_budget_s - (time.perf_counter() - begin)) / (len(rows) - i)
        steps = (
            spec.steps
            if estimate <= share
            else max(plan.probe_steps, min(spec.steps, int(spec.steps * share / estimate)))
        )
        seconds = probe_s
        if steps != plan.probe_steps:
            seconds, out = sample_at(model, spec, steps, stages, start, plan.max_batch, device)
        per_batch = seconds * spec.steps / steps
        per_video = per_batch / videos
        scaled = f"{steps} of {spec.steps} (scaled)" if steps != spec.steps else str(steps)
        goal = TARGET_SECONDS.get(scheme) if videos == 1 else None
        met = None if goal is None else per_video < goal
        report.row(
            [
                scheme,
                videos,
                len(calls) * spec.steps,
                scaled,
                f"{per_batch:.1f}",
                f"{per_video:.2f}",
                f"< {goal:.0f}" if goal is not None else "-",
                {True: "yes", False: "no", None: "-"}[met],
                peak_memory(device),
                "yes" if bool(torch.isfinite(out).all()) else "NO",
            ]
        )
        if goal is not None:
            suffix = " (scaled)" if steps != spec.steps else ""
            targets.append(
                Target(f"{scheme}, {spec.label}, one video", f"{per_video:.1f} s{suffix}", f"< {goal:.0f} s", met)
            )
        report.save()
    del network, model
    free_memory(device)
    report()


SECTIONS: dict[str, Callable[[Plan, torch.device, Report, list[Target], argparse.Namespace], None]] = {
    "exact": exactness_section,
    "train": training_section,
    "sample": sampling_section,
}


def summary_section(
    plan: Plan, report: Report, targets: Sequence[Target], part_seconds: dict[str, float], total_s: float
) -> None:
    """Part 4: one line per target, then where the time went."""
    report("## 4. Summary")
    report()
    if not plan.goals_apply:
        report(
            f"Configuration {plan.label}: the goals are for the paper's configuration on one H100, so these "
            "verdicts only show that the code paths run."
        )
        report()
    report.table(["target", "measured", "goal", "verdict"])
    for target in targets:
        report.row([target.name, target.measured, target.goal, target.verdict])
    report()
    parts = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in part_seconds.items())
    report(f"Wall time: {parts}; {total_s:.0f} s in all since start-up (after Python imports).")


def parse_batches(text: str) -> tuple[int, ...]:
    """'8,16' -> (8, 16)."""
    try:
        batches = tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad batch list {text!r}; write e.g. 8,16") from None
    if not batches or min(batches) < 1:
        raise argparse.ArgumentTypeError(f"bad batch list {text!r}; write positive sizes, e.g. 8,16")
    return batches


def parse_parts(text: str) -> tuple[str, ...]:
    parts = tuple(item.strip() for item in text.split(",") if item.strip())
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"unknown parts {unknown or text!r}; choose from {', '.join(PARTS)}")
    return parts


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N (default), or cpu with --smoke")
    parser.add_argument("--smoke", action="store_true", help="tiny network and short videos: checks every code path")
    parser.add_argument("--out", type=Path, default=Path("gpu_results.md"), help="where the report is written")
    parser.add_argument(
        "--parts", type=parse_parts, default=PARTS, help=f"which parts to run (default {','.join(PARTS)})"
    )
    parser.add_argument("--peak_tflops", type=float, default=None, help="the device's peak dense bf16 TFLOP/s")
    parser.add_argument("--train_batches", type=parse_batches, default=None, help="training batch sizes (default 8,16)")
    parser.add_argument("--train_budget_s", type=float, default=None, help="seconds for part 2 (default 120)")
    parser.add_argument("--sample_budget_s", type=float, default=None, help="seconds for part 3 (default 360)")
    parser.add_argument("--reference_dir", type=Path, default=None, help="where reference_small.pt/_io.npz are")
    args = parser.parse_args()
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r} is not a device; pass cuda, cuda:N or cpu")
    if device.type not in ("cuda", "cpu"):
        parser.error(f"--device {args.device!r}: this benchmark runs on cuda (or cpu with --smoke) only")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for but torch sees no CUDA device here; pass --device cpu --smoke")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        parser.error(f"--device {args.device}: there are only {torch.cuda.device_count()} CUDA devices")
    if device.type == "cpu" and not args.smoke:
        parser.error("the paper-size run takes hours on a CPU; add --smoke to check the code paths there")
    for name in ("peak_tflops", "train_budget_s", "sample_budget_s"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive")
    if args.reference_dir is not None and find_reference(args.reference_dir) is None:
        parser.error(f"--reference_dir {args.reference_dir} has no reference_small.pt and reference_small_io.npz")
    plan = SMOKE if args.smoke else PAPER
    overrides = {
        "train_batches": args.train_batches,
        "train_budget_s": args.train_budget_s,
        "sample_budget_s": args.sample_budget_s,
    }
    plan = dataclasses.replace(plan, **{k: v for k, v in overrides.items() if v is not None})

    cuda_init_s = None
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
        torch.ones(1, device=device)
        torch.cuda.synchronize(device)
        cuda_init_s = time.perf_counter() - started
    report = Report(args.out)
    describe_machine(device, report, plan, cuda_init_s)
    report.save()
    targets: list[Target] = []
    part_seconds: dict[str, float] = {}
    failed = []
    for name in args.parts:
        begin = time.perf_counter()
        try:
            SECTIONS[name](plan, device, report, targets, args)
        except Exception as error:  # report it and go on: the later parts still have their budgets
            traceback.print_exc(file=sys.stderr)
            report(f"**Part {name!r} failed:** {type(error).__name__}: {error}")
            report()
            failed.append(name)
        finally:
            free_memory(device)
        part_seconds[name] = time.perf_counter() - begin
        report.save()
    summary_section(plan, report, targets, part_seconds, time.perf_counter() - started)
    report.save()
    print(f"\nreport written to {args.out}", file=sys.stderr)
    if failed:
        raise SystemExit(f"parts {', '.join(failed)} failed; see the report and the traceback(s) above")


if __name__ == "__main__":
    main()
