"""Gather the metrics of many evaluation directories into one Markdown table and one PNG plot (matplotlib).

An evaluation directory is any folder under RESULTS_DIR with a `settings.json` (written by the
sampler; flexvid.eval_layout names the files). Every other `*.json` in it is a metric file: numbers
become table columns, lists of numbers become per-frame curves, and `protocol` entries go into the
table's footnote, so each number is printed with how it was measured. FVD `.txt` files are read when
no JSON holds an FVD.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexvid.errors import DatasetError
from flexvid.eval.plotting import pyplot
from flexvid.eval_layout import find_eval_dirs, fvd_text_files, metric_files, metric_kind, parse_fvd_name, settings_path
from flexvid.files import atomic_write, atomic_write_text, printable

REPORT_MARKDOWN = "report.md"
REPORT_IMAGE = "report.png"
LOWER_IS_BETTER = ("fvd", "lpips", "loss", "mse", "wd", "op")
HIGHER_IS_BETTER = ("psnr", "ssim")
PALETTE = [  # matplotlib's tab10, one colour per run
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]
Colour = tuple[float, float, float]  # RGB in [0, 1], as matplotlib takes it


def _rgb(red: int, green: int, blue: int) -> Colour:
    return red / 255, green / 255, blue / 255


@dataclass
class EvalRun:
    """One evaluation directory: its settings, scalar metrics, per-frame curves and protocols."""

    path: Path
    label: str
    settings: dict[str, Any]
    scalars: dict[str, float | None] = field(default_factory=dict)
    series: dict[str, list[float]] = field(default_factory=dict)
    protocols: dict[str, dict[str, Any]] = field(default_factory=dict)  # metric file -> protocol

    @property
    def checkpoint(self) -> str:
        parts = Path(str(self.settings.get("checkpoint", ""))).parts
        return "/".join(parts[-2:]) if parts else "?"


def collect_runs(results_dir: str | Path) -> list[EvalRun]:
    """Every evaluation directory under `results_dir` (found by its settings.json), with its metrics."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise DatasetError(
            f"Results directory {results_dir} does not exist; give the folder holding evaluation directories."
        )
    runs = []
    for eval_dir in find_eval_dirs(results_dir):
        label = printable(eval_dir.relative_to(results_dir).as_posix() if eval_dir != results_dir else eval_dir.name)
        run = EvalRun(eval_dir, label, _read_json(settings_path(eval_dir)))
        for metric_file in metric_files(eval_dir):
            _absorb(run, metric_file.name, _read_json(metric_file))
        if not any(name.startswith("FVD") for name in run.scalars):
            for text_file in fvd_text_files(eval_dir):
                parsed = parse_fvd_name(text_file.name)
                assert parsed is not None  # fvd_text_files lists only the names that parse
                num_videos, sample = parsed
                run.scalars[_fvd_column(sample)] = _read_number(text_file)
                run.protocols[metric_kind(text_file.name)] = {"num_videos": num_videos}
        _drop_shifted_curves(run)
        runs.append(run)
    if not runs:
        raise DatasetError(f"No evaluation directories (with settings.json) under {results_dir}; sample videos first.")
    if not any(run.scalars or run.series for run in runs):
        raise DatasetError(
            f"No metric files in the evaluation directories under {results_dir}; run `flexvid fvd`, `flexvid metrics` "
            "or `flexvid carla-metrics` first."
        )
    return runs


def _fvd_column(sample: int) -> str:
    """FVD of sample index 0 is "FVD" (the paper's number); other sample indices are named."""
    return "FVD" if sample == 0 else f"FVD (sample {sample})"


def _drop_shifted_curves(run: EvalRun) -> None:
    """Keep `all_frames.X` rather than `latent_frames.X`, whose index 0 is frame n_obs, not frame 0."""
    for name in [n for n in run.series if n.startswith("latent_frames.")]:
        if "all_frames." + name.removeprefix("latent_frames.") in run.series:
            del run.series[name]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"Could not read {path} ({err}); remove or regenerate the file.") from err
    if not isinstance(data, dict):
        raise DatasetError(f"{path} should hold a JSON object; remove or regenerate the file.")
    return data


def _read_number(path: Path) -> float:
    try:
        return float(path.read_text().split()[0])
    except (IndexError, ValueError) as err:
        raise DatasetError(f"{path} should start with a number; remove or regenerate the file.") from err


def _absorb(run: EvalRun, source: str, data: dict[str, Any], prefix: str = "") -> None:
    """Sort one metric file's entries into scalars (`.mean` dropped), per-frame curves and protocol."""
    kind = metric_kind(source)
    fvd_file = parse_fvd_name(source)
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key == "protocol" and isinstance(value, dict):
            run.protocols.setdefault(kind, {}).update({f"{prefix}{k}": v for k, v in value.items()})
        elif isinstance(value, dict):
            _absorb(run, source, value, prefix=f"{name}.")
        elif isinstance(value, (bool, str)):
            run.protocols.setdefault(kind, {})[name] = value
        elif value is None or isinstance(value, (int, float)):
            column = _fvd_column(fvd_file[1]) if fvd_file and name == "fvd" else name.removesuffix(".mean")
            if column in run.scalars:
                column = f"{Path(source).stem}.{column}"
            run.scalars[column] = None if value is None or not math.isfinite(value) else float(value)
        elif isinstance(value, list):
            curve = _as_curve(value)
            if curve is not None:
                run.series[name.removesuffix(".per_frame")] = curve


def _as_curve(values: list[Any]) -> list[float] | None:
    """A list of numbers (per frame), or equal-length lists of them (averaged over the outer axis)."""
    if len(values) >= 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values]
    if values and all(isinstance(row, list) for row in values):
        rows = [_as_curve(row) for row in values]
        curves = [row for row in rows if row is not None]
        if len(curves) == len(rows) and all(len(row) == len(curves[0]) for row in curves):
            return [sum(column) / len(column) for column in zip(*curves, strict=True)]
    return None


def _direction(column: str) -> int:
    """-1 when lower is better, +1 when higher is better, 0 when unknown (matched on the name's words)."""
    words = re.split(r"[^a-z]+", column.lower())
    if any(word in LOWER_IS_BETTER for word in words):
        return -1
    if any(word in HIGHER_IS_BETTER for word in words):
        return 1
    return 0


def _columns(runs: list[EvalRun]) -> list[str]:
    """Metric columns in first-seen order, FVD first as in the paper's tables."""
    names = list(dict.fromkeys(name for run in runs for name in run.scalars))
    return sorted(names, key=lambda name: not name.startswith("FVD"))


def _format(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def markdown_table(runs: list[EvalRun], image_name: str | None = REPORT_IMAGE) -> str:
    """The paper-style table: one row per run (checkpoint / scheme), one column per metric, protocol below."""
    columns = _columns(runs)
    arrows = {1: " ↑", -1: " ↓", 0: ""}
    header = ["run", "checkpoint", "scheme", "obs", "K"] + [f"{c}{arrows[_direction(c)]}" for c in columns]
    best = {}
    for column in columns:
        values = [run.scalars.get(column) for run in runs]
        known = [v for v in values if v is not None]
        if _direction(column) and len(known) >= 2:
            best[column] = max(known) if _direction(column) > 0 else min(known)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        cells = [
            run.label,
            run.checkpoint,
            str(run.settings.get("sampling_scheme", "?")),
            str(run.settings.get("n_obs", "?")),
            str(run.settings.get("max_frames", "?")),
        ]
        for column in columns:
            value = run.scalars.get(column)
            text = _format(value)
            cells.append(f"**{text}**" if value is not None and best.get(column) == value else text)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *_footnotes(runs)]
    if image_name:
        lines += ["", f"![metrics per run and per-frame curves]({image_name})"]
    return "\n".join(lines) + "\n"


def _footnotes(runs: list[EvalRun]) -> list[str]:
    """Protocol lines: settings shared by all runs, then each metric file's protocol (shared vs varying)."""
    notes = []
    shared = _shared_items(
        [run.settings for run in runs], skip={"checkpoint", "sampling_scheme", "n_obs", "max_frames"}
    )
    settings_text = ", ".join(f"{k}={v}" for k, v in shared[0].items())
    varying = f"; varying per run: {', '.join(shared[1])}" if shared[1] else ""
    notes.append(
        f"Protocol. Sampling settings: {settings_text or 'none shared'}{varying}. "
        "Bold marks the best value of a column (↓ lower is better, ↑ higher is better)."
    )
    for source in sorted({name for run in runs for name in run.protocols}):
        common, varying_keys = _shared_items([run.protocols[source] for run in runs if source in run.protocols])
        text = "; ".join(f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in common.items())
        extra = f" (varying per run: {', '.join(varying_keys)})" if varying_keys else ""
        notes.append(f"- `{source}`: {text}{extra}")
    return notes


def _shared_items(
    dicts: list[dict[str, Any]], skip: frozenset[str] | set[str] = frozenset()
) -> tuple[dict[str, Any], list[str]]:
    """Items equal in every dict, and the keys whose values differ or are missing somewhere."""
    keys = list(dict.fromkeys(k for d in dicts for k in d if k not in skip))
    common = {k: dicts[0][k] for k in keys if all(k in d and d[k] == dicts[0][k] for d in dicts)}
    return common, [k for k in keys if k not in common]


# --------------------------------------------------------------------------------------------
# Plot


DIRECTION_NOTE = {-1: " (lower is better)", 1: " (higher is better)", 0: ""}
PANEL_INCHES = (4.6, 3.0)


def draw_plot(runs: list[EvalRun], path: str | Path) -> Path:
    """PNG (matplotlib): a bar panel per metric (one bar per run) and a line panel per per-frame curve."""
    plt = pyplot("The report's plot")
    from matplotlib.patches import Patch

    columns = _columns(runs)
    curves = list(dict.fromkeys(name for run in runs for name in run.series))
    panels = [("bar", c) for c in columns] + [("line", c) for c in curves]
    cols = 2 if len(panels) > 1 else 1
    rows = max(1, math.ceil(len(panels) / cols))
    legend_inches = 0.25 * len(runs) + 0.3
    fig, axes = plt.subplots(
        rows,
        cols,
        squeeze=False,
        dpi=100,
        figsize=(PANEL_INCHES[0] * cols, PANEL_INCHES[1] * rows + legend_inches),
    )
    colours = [_rgb(*PALETTE[number % len(PALETTE)]) for number in range(len(runs))]
    for ax, (kind, name) in zip(axes.flat, panels, strict=False):  # a grid may have a spare axis
        if kind == "bar":
            _bar_panel(ax, [run.scalars.get(name) for run in runs], colours)
            ax.set_title(f"{name}{DIRECTION_NOTE[_direction(name)]}", fontsize=10)
        else:
            _line_panel(ax, [run.series.get(name) for run in runs], colours)
            ax.set_title(f"{name} per frame", fontsize=10)
    for ax in axes.flat[len(panels) :]:
        ax.set_axis_off()
    handles = [  # a "$" in a folder name would otherwise start matplotlib's maths mode
        Patch(color=colour, label=f"{number + 1}: {run.label}".replace("$", r"\$"))
        for number, (run, colour) in enumerate(zip(runs, colours, strict=True))
    ]
    fig.legend(handles=handles, loc="upper left", frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - legend_inches / fig.get_figheight()))
    try:
        return atomic_write(path, lambda temp: fig.savefig(temp, format="png"))
    finally:
        plt.close(fig)


def _bar_panel(ax: Any, values: list[float | None], colours: list[Colour]) -> None:
    """One bar per run, numbered as in the legend; a run without the metric leaves a gap."""
    numbers = range(1, len(values) + 1)
    known = [
        (number, value, colour)
        for number, value, colour in zip(numbers, values, colours, strict=True)
        if value is not None
    ]
    if known:
        ax.bar([k[0] for k in known], [k[1] for k in known], color=[k[2] for k in known], width=0.7)
    ax.set_xticks(list(numbers))
    ax.set_xlim(0.4, len(values) + 0.6)
    ax.set_xlabel("run")
    ax.axhline(0.0, color="black", lw=0.6)


def _line_panel(ax: Any, curves: list[list[float] | None], colours: list[Colour]) -> None:
    """One curve per run that has it, against the frame index."""
    from matplotlib.ticker import MaxNLocator

    for curve, colour in zip(curves, colours, strict=True):
        if curve:
            ax.plot(range(len(curve)), curve, color=colour, lw=2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("frame")
    ax.grid(alpha=0.3)


def write_report(results_dir: str | Path, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Collect every run under `results_dir`; write report.md and report.png (into `out_dir` or results_dir)."""
    runs = collect_runs(results_dir)
    out_dir = Path(out_dir or results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image = draw_plot(runs, out_dir / REPORT_IMAGE)
    markdown = out_dir / REPORT_MARKDOWN
    atomic_write_text(markdown, printable(markdown_table(runs, image.name)))
    return markdown, image
