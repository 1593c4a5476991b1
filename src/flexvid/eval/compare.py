"""The paper's scheme comparison on one model: sample the same test videos with several schemes, then
score their long-range consistency against ground truth (flexvid.eval.consistency).

Every scheme uses the same checkpoint, sampler, seed and observed frames (the first `n_obs` of each
test video). Outputs under OUT: one evaluation directory per scheme (OUT/<scheme>/, resumable like
`flexvid sample`), `comparison.json`, `comparison.md` (the table), `per_frame_psnr.png` (metric by
frame index and scheme, revisited frames shaded) and `strips.png` (ground truth above each scheme).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flexvid.checkpoint import Pretrained, load_pretrained
from flexvid.data.base import build_dataset
from flexvid.data.panorama import revisit_mask
from flexvid.eval.consistency import (
    CLEAN_ENERGY_FACTOR,
    CLEAN_MARGIN,
    DataRange,
    VideoResult,
    mean_interval,
    score_video,
    summarise_consistency,
)
from flexvid.eval.eval_dir import load_video_file, read_settings
from flexvid.eval.plotting import pyplot
from flexvid.eval_layout import sample_path
from flexvid.files import atomic_write, atomic_write_json, atomic_write_text
from flexvid.sampling.job import SampleJob, SampleSettings
from flexvid.video_io import OBSERVED_COLOUR, to_uint8

DEFAULT_SCHEMES = ("autoreg", "long-range", "hierarchy-2", "hierarchy-3")
TIMING_FILE = "timing.json"
# Test videos whose true frames set the range a clean generated frame stays in (more than the compared
# videos when there are few of them: two videos span only part of the data's brightness).
CLEAN_RANGE_VIDEOS = 50


@dataclass
class CompareSettings:
    """What is compared and how; saved in comparison.json."""

    checkpoint: str
    out: str
    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    T: int | None = None  # None: the training clip length
    n_obs: int = 16
    num_videos: int = 20
    num_samples: int = 1  # k, for best-of-k
    max_latent_frames: int | None = None
    sampler: str = "ddim"
    steps: int | None = 50
    eta: float = 1.0
    seed: int = 0
    batch_size: int = 10
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)


class CallCounter(torch.nn.Module):
    """Wraps a network and counts the rows (one video's stage each) its calls carried."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.model(x, *args, **kwargs)


def sample_scheme(settings: CompareSettings, pretrained: Pretrained, scheme: str) -> dict[str, float]:
    """Generate the missing samples of one scheme; returns its cost per video (from this or an earlier run)."""
    eval_dir = Path(settings.out) / scheme
    timing_path = eval_dir / TIMING_FILE
    counter = CallCounter(pretrained.model)
    # The counter stands in for the UNetVideo: generation only calls it and reads its parameters.
    counted = Pretrained(counter, pretrained.diffusion, pretrained.config, pretrained.step)  # type: ignore[arg-type]
    generated, seconds = 0, 0.0
    for k in range(settings.num_samples):
        job = SampleJob(
            SampleSettings(
                checkpoint=settings.checkpoint,
                sampling_scheme=scheme,
                n_obs=settings.n_obs,
                T=settings.T,
                max_latent_frames=settings.max_latent_frames,
                batch_size=settings.batch_size,
                stop_index=settings.num_videos,
                sample_idx=k,
                sampler=settings.sampler,
                steps=settings.steps,
                eta=settings.eta,
                seed=settings.seed,
                eval_dir=str(eval_dir),
                device=settings.device,
            ),
            pretrained=counted,
        )
        missing = sum(not job.output_path(i).exists() for i in job.indices())
        start = time.perf_counter()
        job.run(progress=True)
        seconds += time.perf_counter() - start
        generated += missing
    if generated:
        # One network evaluation of one video's stage is one row; batched calls carry many rows.
        timing = {
            "seconds_per_video": seconds / generated,
            "network_evaluations_per_video": counter.rows / generated,
            "videos_timed": generated,
        }
        atomic_write_json(timing_path, timing)
        return timing
    if timing_path.is_file():
        return json.loads(timing_path.read_text())
    return {}


def revisit_masks(
    dataset_name: str, T: int, image_size: int, K: int, num_videos: int, data_dir: str | None
) -> list[np.ndarray] | None:
    """Per test video, which frames revisit content unseen for more than K frames (None: no view labels)."""
    dataset = build_dataset(dataset_name, "test", T=T, image_size=image_size, data_dir=data_dir)
    masks = []
    for index in range(num_videos):
        info = dataset[index][1]
        if "view_x" not in info:
            return None
        masks.append(revisit_mask(np.asarray(info["view_x"]), image_size, K))
    return masks


def data_range(dataset_name: str, T: int, image_size: int, data_dir: str | None, num_videos: int) -> DataRange:
    """The range of the first max(num_videos, CLEAN_RANGE_VIDEOS) test videos (all, if the split is smaller)."""
    dataset = build_dataset(dataset_name, "test", T=T, image_size=image_size, data_dir=data_dir)
    count = min(len(dataset), max(num_videos, CLEAN_RANGE_VIDEOS))
    return DataRange.of_videos(to_uint8(dataset[index][0]) for index in range(count))


def score_scheme(
    settings: CompareSettings, scheme: str, revisits: list[np.ndarray] | None, clean_range: DataRange | None = None
) -> tuple[dict[str, Any], list[VideoResult]]:
    """Consistency summary of one scheme's evaluation directory."""
    eval_dir = Path(settings.out) / scheme
    info = read_settings(eval_dir)
    dataset = build_dataset(info.dataset, "test", T=info.T, image_size=info.image_size, data_dir=info.data_dir)
    results = []
    for index in range(settings.num_videos):
        truth = to_uint8(dataset[index][0])
        samples = [load_video_file(sample_path(eval_dir, index, k)) for k in range(settings.num_samples)]
        results.append(score_video(truth, samples))
    return summarise_consistency(results, info.n_obs, revisits, clean_range), results


def run_comparison(settings: CompareSettings, pretrained: Pretrained | None = None) -> dict[str, Any]:
    """Sample every scheme, score them, and write the table, JSON and pictures under `settings.out`."""
    pretrained = pretrained or load_pretrained(settings.checkpoint, device=settings.device)
    out = Path(settings.out)
    rows: dict[str, dict[str, Any]] = {}
    for scheme in settings.schemes:
        timing = sample_scheme(settings, pretrained, scheme)
        rows[scheme] = {"timing": timing}
    info = read_settings(out / settings.schemes[0])
    revisits = revisit_masks(info.dataset, info.T, info.image_size, info.max_frames, settings.num_videos, info.data_dir)
    clean_range = data_range(info.dataset, info.T, info.image_size, info.data_dir, settings.num_videos)
    for scheme in settings.schemes:
        summary, _ = score_scheme(settings, scheme, revisits, clean_range)
        rows[scheme].update(summary)
    report = {
        "settings": {**asdict(settings), "schemes": list(settings.schemes)},
        "dataset": info.dataset,
        "max_frames": info.max_frames,
        "clean_range": clean_range.to_dict(),
        "revisit_per_frame": None if revisits is None else [[bool(v) for v in r] for r in revisits],
        "schemes": rows,
        "paired": paired_differences(rows, settings.schemes[0]),
    }
    atomic_write_json(out / "comparison.json", report)
    atomic_write_text(out / "comparison.md", markdown_table(report))
    plot_per_frame(report, out / "per_frame_psnr.png")
    draw_strips(settings, info, revisits, out / "strips.png")
    return report


PAIRED_METRICS = ("psnr_revisited", "psnr_latent", "ssim_revisited")


def paired_differences(rows: dict[str, dict[str, Any]], base: str) -> dict[str, dict[str, Any]]:
    """Per scheme, its mean difference to `base` over the same test videos, with a 95% bootstrap interval:
    pairing removes the spread between videos, which dominates the intervals of the schemes' own means."""
    paired: dict[str, dict[str, Any]] = {}
    for scheme, row in rows.items():
        if scheme == base:
            continue
        paired[scheme] = {}
        for metric in PAIRED_METRICS:
            ours, theirs = row.get(f"{metric}_per_video"), rows[base].get(f"{metric}_per_video")
            if ours is not None and theirs is not None:
                paired[scheme][metric] = mean_interval(np.array(ours) - np.array(theirs)).to_dict()
    return paired


def _cell(entry: dict[str, float] | None, digits: int) -> str:
    if not entry or entry.get("n", 0) == 0:
        return "-"
    return f"{entry['mean']:.{digits}f} [{entry['low']:.{digits}f}, {entry['high']:.{digits}f}]"


def markdown_table(report: dict[str, Any]) -> str:
    """The comparison as a Markdown table: mean [95% interval] over test videos, best of k samples."""
    s = report["settings"]
    lines = [
        f"Dataset `{report['dataset']}`, T={next(iter(report['schemes'].values()))['T']}, n_obs={s['n_obs']}, "
        f"K={report['max_frames']}, {s['num_videos']} test videos, best of {s['num_samples']} sample(s), "
        f"{s['sampler']} {s['steps']} steps, eta {s['eta']}, seed {s['seed']}.",
        "",
        "| scheme | PSNR revisited | PSNR rest | PSNR latent | SSIM revisited | SSIM rest | SSIM latent "
        "| brightness (truth) | clean frames | network evaluations / video | s / video |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scheme, row in report["schemes"].items():
        timing = row.get("timing", {})
        calls = f"{timing['network_evaluations_per_video']:.0f}" if "network_evaluations_per_video" in timing else "-"
        secs = f"{timing['seconds_per_video']:.1f}" if "seconds_per_video" in timing else "-"
        lines.append(
            f"| {scheme} | {_cell(row.get('psnr_revisited'), 2)} | {_cell(row.get('psnr_rest'), 2)} "
            f"| {_cell(row.get('psnr_latent'), 2)} | {_cell(row.get('ssim_revisited'), 3)} "
            f"| {_cell(row.get('ssim_rest'), 3)} | {_cell(row.get('ssim_latent'), 3)} "
            f"| {row['brightness']:.3f} ({row['truth_brightness']:.3f}) | {100 * row['clean_share']:.0f}% "
            f"| {calls} | {secs} |"
        )
    clean = report.get("clean_range")
    if clean:
        lines += [
            "",
            f"Clean frames: mean brightness within [{clean['brightness_low']:.3f}, {clean['brightness_high']:.3f}] "
            f"(+/- {CLEAN_MARGIN}) and high-frequency energy at most {CLEAN_ENERGY_FACTOR}x "
            f"{clean['energy_high']:.3f}, the range of the true frames of {clean['videos']} test videos.",
        ]
    paired = report.get("paired") or {}
    if paired:
        base = next(iter(report["schemes"]))
        lines += [
            "",
            f"Paired with {base} on the same test videos: mean difference [95% interval].",
            "",
            f"| scheme | PSNR revisited - {base} | PSNR latent - {base} | SSIM revisited - {base} |",
            "|---|---|---|---|",
        ]
        for scheme, diffs in paired.items():
            cells = [_cell(diffs.get(metric), 3 if metric.startswith("ssim") else 2) for metric in PAIRED_METRICS]
            lines.append(f"| {scheme} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_per_frame(report: dict[str, Any], path: Path) -> Path:
    """Best-of-k PSNR by frame index, one line per scheme; frames revisited in most videos shaded."""
    plt = pyplot("The comparison plot")
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=120)
    n_obs = report["settings"]["n_obs"]
    revisits = report.get("revisit_per_frame")
    if revisits:
        share = np.mean(np.array(revisits, dtype=float), axis=0)
        for t, value in enumerate(share):
            if t >= n_obs and value > 0:
                ax.axvspan(t - 0.5, t + 0.5, color="tab:orange", alpha=0.25 * value, lw=0)
    ax.axvspan(-0.5, n_obs - 0.5, color="0.85", lw=0, label="observed")
    for scheme, row in report["schemes"].items():
        curve = row["psnr_per_frame"]
        ax.plot(range(n_obs, len(curve)), curve[n_obs:], label=scheme, lw=1.4)
    ax.set_xlabel("frame index" + (" (orange: share of videos where the frame is a revisit)" if revisits else ""))
    ax.set_ylabel("PSNR (dB), best of k")
    ax.legend(fontsize=8, ncol=3)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path


def draw_strips(
    settings: CompareSettings, info: Any, revisits: list[np.ndarray] | None, path: Path, video: int = 0
) -> Path:
    """Ground truth above each scheme's sample 0 of one test video, every other frame from n_obs - 2 on.

    Observed frames are outlined in red; revisited frames get an orange bar above the ground truth.
    """
    from PIL import Image, ImageDraw

    dataset = build_dataset(info.dataset, "test", T=info.T, image_size=info.image_size, data_dir=info.data_dir)
    truth = to_uint8(dataset[video][0])
    rows = [("ground truth", truth)] + [
        (scheme, load_video_file(sample_path(Path(settings.out) / scheme, video, 0))) for scheme in settings.schemes
    ]
    frames = list(range(max(0, settings.n_obs - 2), truth.shape[0], 2))
    size, gap, label_width, bar = info.image_size, 2, 96, 4
    width = label_width + len(frames) * (size + gap)
    height = bar + len(rows) * (size + gap)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (name, video_frames) in enumerate(rows):
        top = bar + r * (size + gap)
        draw.text((4, top + size // 2 - 6), name, fill="black")
        for c, t in enumerate(frames):
            left = label_width + c * (size + gap)
            frame = video_frames[t].transpose(1, 2, 0)
            if frame.shape[2] == 1:
                frame = np.repeat(frame, 3, axis=2)
            canvas.paste(Image.fromarray(frame), (left, top))
            if t < settings.n_obs:
                draw.rectangle([left, top, left + size - 1, top + size - 1], outline=OBSERVED_COLOUR)
            if r == 0 and revisits is not None and revisits[video][t]:
                draw.rectangle([left, 0, left + size - 1, bar - 2], fill="orange")
    canvas = canvas.resize((width * 2, height * 2), Image.Resampling.NEAREST)
    atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG"))
    return path
