"""Preparing the paper's datasets on disk: CARLA's train/test split files, and GQN-Mazes / MineRL
Navigate converted from CWVAE's zips of mp4 files to numbered uint8 .npy videos.

Conversion numbers each split's mp4 files in natural file-name order (the authors numbered them in
TensorFlow Datasets' reading order, which cannot be reproduced without it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from flexvid.data.carla import carla_video_files, load_carla_video
from flexvid.data.download import check_destination, download, publish, staging_dir, unpack_archive
from flexvid.data.video_decode import VideoDecodeError, natural_key, read_video_frames
from flexvid.errors import DatasetError
from flexvid.files import atomic_write_text, sha256_of

CARLA_URL = "https://www.cs.ubc.ca/~wsgh/fdm/carla/no-traffic.tar.gz"
CWVAE_URLS = {
    "mazes": "https://archive.org/download/gqn_mazes/gqn_mazes.zip",
    "minerl": "https://archive.org/download/minerl_navigate/minerl_navigate.zip",
}
CARLA_TEST_VIDEOS = 100


def write_carla_splits(directory: Path, num_test: int = CARLA_TEST_VIDEOS) -> tuple[int, int]:
    """Write video_train.csv / video_test.csv: the last `num_test` videos by number are the test set."""
    if not directory.is_dir():
        raise DatasetError(
            f"CARLA directory {directory} does not exist; download it with `flexvid data carla --download`."
        )
    videos = carla_video_files(directory)
    if len(videos) <= num_test:
        raise DatasetError(
            f"{directory} has {len(videos)} video_<i>.pt file(s), but the test split alone takes {num_test}; "
            "download the full dataset or lower --num_test."
        )
    numbers = sorted(videos)
    train, test = numbers[:-num_test], numbers[-num_test:]
    for split, chosen, first_row in (("train", train, 0), ("test", test, len(train))):
        rows = "".join(f"{first_row + row},{videos[number].name}\n" for row, number in enumerate(chosen))
        atomic_write_text(directory / f"video_{split}.csv", ",path\n" + rows)
    return len(train), len(test)


def prepare_carla(
    dest: Path,
    *,
    url: str = CARLA_URL,
    archive: Path | None = None,
    sha256: str | None = None,
    num_test: int = CARLA_TEST_VIDEOS,
    keep_archive: bool = False,
    progress: bool = True,
) -> Path:
    """Download (or take `archive`), unpack and check CARLA, write missing split files, publish at `dest`."""
    if check_destination(dest):
        return dest
    source, downloaded = _fetch(url, archive, dest, sha256, progress)
    with staging_dir(dest) as staging:
        unpack_archive(source, staging)
        video_dir = _directory_holding(staging, lambda d: bool(carla_video_files(d)))
        if video_dir is None:
            raise DatasetError(f"{source} holds no video_<i>.pt files; is it the CARLA archive?")
        videos = carla_video_files(video_dir)
        for path in tqdm(videos.values(), desc="checking videos", disable=not progress):
            load_carla_video(path)
        if not all((video_dir / f"video_{s}.csv").is_file() for s in ("train", "test")):
            write_carla_splits(video_dir, num_test)
        publish(video_dir, dest, {"dataset": "carla_no_traffic", "source": str(archive or url), "videos": len(videos)})
    if downloaded and not keep_archive:
        source.unlink()
    return dest


def convert_mp4_splits(source_root: Path, out_root: Path, progress: bool = True) -> dict[str, list[str]]:
    """Decode `source_root/{train,test}/*.mp4` to `out_root/{train,test}/<n>.npy` (uint8 T x H x W x 3)."""
    converted: dict[str, list[str]] = {}
    for split in ("train", "test"):
        videos = sorted((source_root / split).glob("*.mp4"), key=lambda p: natural_key(p.name))
        if not videos:
            raise DatasetError(f"{source_root / split} holds no .mp4 files; is this a CWVAE dataset archive?")
        (out_root / split).mkdir(parents=True)
        for number, video in enumerate(tqdm(videos, desc=f"converting {split}", disable=not progress)):
            try:
                frames = read_video_frames(video)
            except VideoDecodeError as err:
                raise VideoDecodeError(f"{err} The archive may be damaged: delete it and download it again.") from err
            np.save(out_root / split / f"{number}.npy", frames)
        converted[split] = [v.name for v in videos]
    return converted


def prepare_cwvae(
    name: str,
    dest: Path,
    *,
    url: str | None = None,
    archive: Path | None = None,
    sha256: str | None = None,
    keep_archive: bool = False,
    progress: bool = True,
) -> Path:
    """Download (or take `archive`) CWVAE's `mazes` or `minerl` zip and convert it to numbered .npy at `dest`."""
    if name not in CWVAE_URLS:
        raise DatasetError(f"Unknown CWVAE dataset {name!r}; choose one of {', '.join(CWVAE_URLS)}.")
    if check_destination(dest):
        return dest
    source, downloaded = _fetch(url or CWVAE_URLS[name], archive, dest, sha256, progress)
    with staging_dir(dest) as staging:
        unpack_archive(source, staging / "raw")
        root = _directory_holding(staging / "raw", lambda d: (d / "train").is_dir() and (d / "test").is_dir())
        if root is None:
            raise DatasetError(f"{source} has no train/ and test/ directories of mp4 files; is it a CWVAE archive?")
        converted = convert_mp4_splits(root, staging / "out", progress)
        details: dict[str, Any] = {"dataset": name, "source": str(archive or url or CWVAE_URLS[name])}
        details.update({f"{split}_sources": names for split, names in converted.items()})
        publish(staging / "out", dest, details)
    if downloaded and not keep_archive:
        source.unlink()
    return dest


def _fetch(url: str, archive: Path | None, dest: Path, sha256: str | None, progress: bool) -> tuple[Path, bool]:
    """The archive to unpack: the given file, or a download kept beside `dest` (so it can resume)."""
    if archive is not None:
        if not archive.is_file():
            raise DatasetError(f"Archive {archive} does not exist; check the path or leave out --archive to download.")
        if sha256 and sha256_of(archive) != sha256.strip().lower():
            raise DatasetError(f"Archive {archive} does not match the expected SHA-256; download it again.")
        return archive, False
    file_name = url.rstrip("/").rsplit("/", 1)[-1] or "archive"
    return download(url, dest.parent / f"{dest.name}.{file_name}", sha256=sha256, progress=progress), True


def _directory_holding(root: Path, wanted, depth: int = 3) -> Path | None:
    """The first directory at or below `root` (breadth first, to `depth` levels) for which `wanted` holds."""
    level = [root]
    for _ in range(depth + 1):
        for directory in level:
            if wanted(directory):
                return directory
        level = [c for d in level for c in sorted(d.iterdir()) if c.is_dir() and not c.name.startswith(("__", "."))]
    return None
