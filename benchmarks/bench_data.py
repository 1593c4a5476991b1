"""Loader throughput: clips/s each dataset format delivers through a torch DataLoader with N workers,
and FDM training examples/s (K frames each) built from whole clips versus from only the chosen frames.

Synthetic videos in each true on-disk format are written to a temporary directory (CARLA .pt at the
paper's 1000 x 128 x 128, MineRL / GQN-Mazes .npy at 500 / 300 x 64 x 64, and a folder of the user's
own mp4 / gif / npy / PNG-frame videos at 160 x 120, cut to 100-frame clips at 64 x 64). Each setting
is timed several times after one warm-up clip; the median is reported.

The examples table times `TrainingExamples` in one process: "whole clips" wraps the dataset so that
every example loads its whole clip (and the padding video's) and slices it, as the loader first did;
"chosen frames" uses the dataset's own `clip`, which reads and converts only the example's frames.
Both build identical examples; their runs alternate, so the shared CPU's load affects them alike.

    python benchmarks/bench_data.py [--workers 0,2] [--clips 16] [--repeats 3] [--examples 8] [--max_frames 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, RandomSampler

from flexvid.data.base import VideoDataset, build_dataset
from flexvid.data.loader import TrainingExamples
from flexvid.data.prepare import write_carla_splits

# (label, dataset name, T, image_size, data sub-directory, how many videos to write)
SETTINGS = [
    ("CARLA .pt", "carla_no_traffic", 1000, 128, "carla", 4),
    ("MineRL .npy", "minerl", 500, 64, "minerl", 8),
    ("GQN-Mazes .npy", "mazes", 300, 64, "mazes", 8),
    ("folder mp4", "folder", 100, 64, "folder_mp4", 4),
    ("folder gif", "folder", 100, 64, "folder_gif", 4),
    ("folder npy", "folder", 100, 64, "folder_npy", 4),
    ("folder PNG frames", "folder", 100, 64, "folder_png", 4),
]
FOLDER_FRAMES, FOLDER_HEIGHT, FOLDER_WIDTH = 150, 120, 160


def synthetic_video(frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """A moving gradient with some noise: compresses like real footage rather than like flat colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    video = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        base = (x + 2 * t) % 256, (y + t) % 256, (x + y + 3 * t) % 256
        video[t] = np.stack(base, -1).astype(np.uint8) ^ rng.integers(0, 16, (height, width, 3), dtype=np.uint8)
    return video


def write_data(root: Path, sub: str, count: int) -> Path:
    """Write `count` videos of the kind named by `sub` under root/sub; return the data directory."""
    directory = root / sub
    if sub == "carla":
        directory.mkdir(parents=True)
        for n in range(count):
            torch.save(torch.from_numpy(synthetic_video(1000, 128, 128, n)), directory / f"video_{n}.pt")
            np.save(directory / f"coords_{n}.npy", np.zeros((1000, 3)))
        write_carla_splits(directory, num_test=1)
        return directory
    if sub in ("minerl", "mazes"):
        frames = 500 if sub == "minerl" else 300
        for split in ("train", "test"):
            (directory / split).mkdir(parents=True)
            for n in range(count):
                np.save(directory / split / f"{n}.npy", synthetic_video(frames, 64, 64, n))
        return directory
    directory.mkdir(parents=True)
    for n in range(count):
        video = synthetic_video(FOLDER_FRAMES, FOLDER_HEIGHT, FOLDER_WIDTH, n)
        if sub == "folder_mp4":
            size = (FOLDER_WIDTH, FOLDER_HEIGHT)
            writer = imageio_ffmpeg.write_frames(str(directory / f"{n}.mp4"), size, fps=30, macro_block_size=8)
            writer.send(None)
            for frame in video:
                writer.send(np.ascontiguousarray(frame))
            writer.close()
        elif sub == "folder_gif":
            frames = [Image.fromarray(f) for f in video]
            frames[0].save(directory / f"{n}.gif", save_all=True, append_images=frames[1:])
        elif sub == "folder_npy":
            np.save(directory / f"{n}.npy", video)
        else:
            (directory / f"video{n}").mkdir()
            for t, frame in enumerate(video):
                Image.fromarray(frame).save(directory / f"video{n}" / f"{t:05d}.png")
    return directory


def clips_per_second(dataset, workers: int, clips: int, repeats: int) -> float:
    """Median clips/s over `repeats` runs of `clips` random training clips (after one warm-up clip)."""
    rates = []
    for _ in range(repeats):
        sampler = RandomSampler(dataset, replacement=True, num_samples=clips + 1)
        loader = DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=workers)
        batches = iter(loader)
        next(batches)  # worker start-up and first file opens are not part of the steady state
        start = time.perf_counter()
        for _ in batches:
            pass
        rates.append(clips / (time.perf_counter() - start))
    return statistics.median(rates)


class WholeClips(VideoDataset):
    """A dataset seen through the basic interface only: its `clip` is the base class's, which loads
    the whole item and slices it (the baseline the frame-selective loading is compared with)."""

    def __init__(self, dataset: VideoDataset) -> None:
        self.dataset = dataset
        self.name, self.split, self.T = dataset.name, dataset.split, dataset.T
        self.image_size, self.channels, self.infinite = dataset.image_size, dataset.channels, dataset.infinite

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index]

    def item(self, index: int, rng=None):
        return self.dataset.item(index, rng)


def examples_per_second(
    datasets: dict[str, VideoDataset], max_frames: int, count: int, repeats: int
) -> dict[str, float]:
    """Median training examples/s of each dataset over `repeats` runs of `count` examples, runs alternating."""
    rates: dict[str, list[float]] = {label: [] for label in datasets}
    examples = {label: TrainingExamples(dataset, max_frames, seed=0) for label, dataset in datasets.items()}
    for source in examples.values():
        _ = source[0]  # warm-up: first file opens
    for run in range(repeats):
        for label, source in examples.items():
            start = time.perf_counter()
            for g in range(1 + run * count, 1 + (run + 1) * count):
                _ = source[g]
            rates[label].append(count / (time.perf_counter() - start))
    return {label: statistics.median(values) for label, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="0,2", help="comma-separated DataLoader worker counts")
    parser.add_argument("--clips", type=int, default=16, help="clips timed per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting (median reported)")
    parser.add_argument("--examples", type=int, default=8, help="training examples timed per run")
    parser.add_argument("--max_frames", type=int, default=20, help="K, frames per training example")
    parser.add_argument("--tables", default="clips,examples", help="which tables: clips, examples or both")
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]
    tables = args.tables.split(",")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as temp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        datasets = {}
        for label, name, T, size, sub, count in SETTINGS:
            data_dir = write_data(Path(temp), sub, count)
            datasets[label] = build_dataset(name, "train", T=T, image_size=size, data_dir=data_dir)
        if "clips" in tables:
            print(f"{'format':<18} {'clip (T @ size)':<16} {'workers':>7} {'clips/s':>9} {'ms/clip':>9}")
            for label, _name, T, size, _sub, _count in SETTINGS:
                for workers in worker_counts:
                    rate = clips_per_second(datasets[label], workers, args.clips, args.repeats)
                    row = f"{label:<18} {f'{T} @ {size}':<16} {workers:>7} {rate:>9.1f} {1000 / rate:>9.1f}"
                    print(row, flush=True)
        if "examples" in tables:
            datasets["Moving MNIST"] = build_dataset("moving_mnist", "train", T=300, image_size=64)
            print(f"\ntraining examples/s (K={args.max_frames}), one process")
            print(f"{'format':<18} {'clip (T @ size)':<16} {'whole clips':>11} {'chosen frames':>13} {'speed-up':>8}")
            for label, dataset in datasets.items():
                rates = examples_per_second(
                    {"whole": WholeClips(dataset), "chosen": dataset}, args.max_frames, args.examples, args.repeats
                )
                clip = f"{dataset.T} @ {dataset.image_size}"
                speedup = rates["chosen"] / rates["whole"]
                row = f"{label:<18} {clip:<16} {rates['whole']:>11.1f} {rates['chosen']:>13.1f} {speedup:>7.1f}x"
                print(row, flush=True)


if __name__ == "__main__":
    main()
