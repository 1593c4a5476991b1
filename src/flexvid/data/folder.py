"""The user's own videos: a directory (optionally split into `train/` and `test/`) of video files
(mp4, avi, webm, mov, mkv, gif), uint8 arrays (`.npy`, `.npz`), or sub-directories of numbered
PNG/JPEG frames. Clips of T frames (optionally every `frame_stride`-th frame) are resized and
centre-cropped to `image_size`.

The index (each video's kind and length) is built once and cached in `.flexvid_index.json` in the
data directory (or a cache directory when that is read-only); an entry is reused while its file's
modification time and size are unchanged. Unreadable files are reported by name and skipped; so are
broken links and link loops. Links to files are followed, links to directories are not: they lead out
of the folder or back into it (`loop -> .`), where following them would read foreign or repeated videos.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flexvid.data.base import FrameReadingDataset, register_dataset, select_frame_info
from flexvid.data.video_decode import (
    GIF_EXTENSIONS,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    clip_start,
    count_video_frames,
    frames_to_tensor,
    keep_long_enough,
    natural_key,
    read_video_frames,
    resize_center_crop,
)
from flexvid.errors import DatasetError
from flexvid.files import atomic_write_json

INDEX_FILE = ".flexvid_index.json"
INDEX_VERSION = 1
ARRAY_EXTENSIONS = frozenset({".npy", ".npz"})
SPLIT_DIRS = ("train", "test")
DIRECTORY_LINK = "a link to a directory, not followed (move or copy its videos into the folder instead)"


class UnreadableFilesWarning(UserWarning):
    """Files of a video folder that are skipped (unreadable, broken links, links to directories)."""


@dataclass
class IndexEntry:
    """One video of the folder: where it is, what kind, how many frames (or why it is unreadable)."""

    path: str  # relative to the data directory, with "/" separators
    kind: str  # video | array | frames | link (a link to a directory: reported, never read)
    mtime_ns: int
    size: int
    num_frames: int = 0
    error: str = ""


def find_videos(root: Path) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Every video under `root` with its kind (a directory holding images is one frames video), and
    the links to directories passed over with why: such a link leads out of the tree or back into it
    (`loop -> .`), so following it would read foreign videos or count the same ones again."""
    found: list[tuple[Path, str]] = []
    passed: list[tuple[Path, str]] = []
    if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in root.iterdir() if p.is_file()):
        return [(root, "frames")], passed
    for child in sorted(root.iterdir(), key=lambda p: natural_key(p.name)):
        suffix = child.suffix.lower()
        if child.name.startswith("."):
            continue
        if child.is_dir():
            if child.is_symlink():
                passed.append((child, DIRECTORY_LINK))
                continue
            videos, links = find_videos(child)
            found.extend(videos)
            passed.extend(links)
        elif suffix in VIDEO_EXTENSIONS or suffix in GIF_EXTENSIONS:
            found.append((child, "video"))
        elif suffix in ARRAY_EXTENSIONS:
            found.append((child, "array"))
    return found, passed


def image_files(directory: Path) -> list[Path]:
    """The PNG/JPEG frames of a directory in numeric order."""
    frames = [p for p in directory.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    return sorted(frames, key=lambda p: natural_key(p.name))


def read_array(path: Path) -> np.ndarray:
    """A video array from .npy (memory-mapped) or .npz (its only array, or the one named "video")."""
    if path.suffix.lower() == ".npy":
        return np.load(path, mmap_mode="r", allow_pickle=False)
    with np.load(path, allow_pickle=False) as arrays:
        return arrays[_npz_key(path, arrays.files)]


def array_frame_count(path: Path) -> int:
    """Frames in a .npy/.npz video, read from the array header only; wrong dtype or shape raises."""
    if path.suffix.lower() == ".npy":
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        shape, dtype = array.shape, array.dtype
    else:
        with zipfile.ZipFile(path) as archive:
            key = _npz_key(path, [n[:-4] for n in archive.namelist() if n.endswith(".npy")])
            with archive.open(f"{key}.npy") as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    if dtype != np.uint8 or not (len(shape) == 3 or (len(shape) == 4 and shape[-1] in (1, 3))):
        raise DatasetError(f"holds a {dtype} array of shape {tuple(shape)}, not uint8 (T, H, W[, 1 or 3])")
    return int(shape[0])


def probe(path: Path, kind: str, backend: str) -> int:
    """Number of frames of one video; raises if it cannot be read."""
    if kind == "frames":
        frames = image_files(path)
        from PIL import Image

        with Image.open(frames[0]) as first:
            first.verify()
        return len(frames)
    if kind == "array":
        return array_frame_count(path)
    return count_video_frames(path, backend)


class FolderIndex:
    """The cached index of a data directory: entries reused while mtime and size are unchanged."""

    def __init__(self, data_dir: Path, cache_dir: Path | None = None) -> None:
        self.data_dir = data_dir
        self.cache_path = self._cache_location(data_dir, cache_dir)

    def entries(self, root: Path, backend: str) -> list[IndexEntry]:
        """Index entries of every video under `root`, probing only new or changed files; files that
        cannot even be looked at (broken links, link loops, links to directories) come back as
        entries with an error and are not cached."""
        cached = self._load()
        found, passed = find_videos(root)
        prefix = root.relative_to(self.data_dir).as_posix()
        present = {p.relative_to(self.data_dir).as_posix() for p, _ in found}
        gone = [k for k in cached if k not in present and (prefix == "." or k.startswith(prefix + "/"))]
        for key in gone:
            del cached[key]
        result = [IndexEntry(p.relative_to(self.data_dir).as_posix(), "link", 0, 0, error=why) for p, why in passed]
        changed = bool(gone)
        for path, kind in found:
            key = path.relative_to(self.data_dir).as_posix()
            try:
                stat = path.stat()
            except OSError as err:  # a broken link or a link loop: reported and skipped like any unreadable file
                cached.pop(key, None)
                result.append(IndexEntry(key, kind, 0, 0, error=_link_problem(path, err)))
                continue
            old = cached.get(key)
            if old is not None and (old.kind, old.mtime_ns, old.size) == (kind, stat.st_mtime_ns, stat.st_size):
                result.append(old)
                continue
            entry = IndexEntry(key, kind, stat.st_mtime_ns, stat.st_size)
            try:
                entry.num_frames = probe(path, kind, backend)
            except Exception as err:  # any failure means the file is unusable; it is reported, not fatal
                entry.error = str(err).rstrip(".") or type(err).__name__
            cached[key] = entry
            result.append(entry)
            changed = True
        if changed:
            self._save(cached)
        return result

    def _load(self) -> dict[str, IndexEntry]:
        try:
            data = json.loads(self.cache_path.read_text())
            if data.get("version") != INDEX_VERSION:
                return {}
            return {e["path"]: IndexEntry(**e) for e in data["entries"]}
        except (OSError, ValueError, TypeError, KeyError):
            return {}

    def _save(self, entries: dict[str, IndexEntry]) -> None:
        payload = {"version": INDEX_VERSION, "entries": [asdict(e) for e in entries.values()]}
        try:
            atomic_write_json(self.cache_path, payload, indent=None)
        except OSError as err:
            warnings.warn(f"Could not cache the video index at {self.cache_path}: {err}", stacklevel=2)

    @staticmethod
    def _cache_location(data_dir: Path, cache_dir: Path | None) -> Path:
        if cache_dir is None and os.access(data_dir, os.W_OK):
            return data_dir / INDEX_FILE
        base = cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "flexvid" / "index"
        digest = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:16]
        return Path(base) / f"{digest}.json"


class FolderVideos(FrameReadingDataset):
    """One split of a folder of the user's videos; an item is a clip of T frames."""

    name = "folder"

    def __init__(
        self,
        data_dir: Path,
        split: str,
        *,
        T: int,
        image_size: int,
        frame_stride: int = 1,
        short_videos: str = "skip",
        random_window: bool | None = None,
        cache_dir: str | Path | None = None,
        backend: str = "auto",
    ) -> None:
        if not data_dir.is_dir():
            raise DatasetError(f"Video folder {data_dir} does not exist; give --data_dir a directory of videos.")
        if frame_stride < 1:
            raise DatasetError(f"frame_stride must be at least 1, not {frame_stride}.")
        self.data_dir, self.split, self.T, self.image_size = data_dir, split, T, image_size
        self.frame_stride, self.backend = frame_stride, backend
        self.random_window = split == "train" if random_window is None else random_window
        root = self._split_root(data_dir, split)
        entries = FolderIndex(data_dir, None if cache_dir is None else Path(cache_dir)).entries(root, backend)
        self.skipped = [(e.path, e.error) for e in entries if e.error]
        if self.skipped:
            listed = "; ".join(f"{path} ({reason})" for path, reason in self.skipped[:5])
            warnings.warn(
                f"Skipping {len(self.skipped)} unreadable file(s) in {root}: {listed}",
                UnreadableFilesWarning,
                stacklevel=2,
            )
        readable = [e for e in entries if not e.error]
        if not readable:
            raise DatasetError(
                f"No readable videos in {root}"
                + (f" ({len(self.skipped)} unreadable)" if self.skipped else "")
                + "; add mp4/avi/webm/gif files, .npy/.npz arrays, or folders of numbered PNG/JPEG frames."
            )
        names, lengths = [e.path for e in readable], [e.num_frames for e in readable]
        kept = keep_long_enough(names, lengths, self.span, short_videos, str(root))
        self.entries = [readable[i] for i in kept]
        self.load_failures: list[tuple[str, str]] = []

    @property
    def span(self) -> int:
        """Frames of the source video one clip covers."""
        return (self.T - 1) * self.frame_stride + 1

    def __len__(self) -> int:
        return len(self.entries)

    def _read_clip(
        self, index: int, positions: np.ndarray | None, rng: np.random.Generator | None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Item `index` (its T-frame window, drawn from `rng`), or the window's frames at `positions`
        (arrays and image folders read just those, videos are decoded up to the last one); a video that
        fails to load is reported and the next one used."""
        for attempt in range(len(self.entries)):
            entry = self.entries[(index + attempt) % len(self.entries)]
            start = clip_start(entry.num_frames, self.span, self.random_window, rng)
            try:
                frames = self._read(entry, start, positions)
            except Exception as err:  # a file that broke after indexing must not stop a long run
                self._report_failure(entry, err)
                continue
            clip = resize_center_crop(frames_to_tensor(frames), self.image_size)
            info = {
                "index": index,
                "frame_indices": torch.arange(start, start + self.span, self.frame_stride),
                "path": entry.path,
            }
            return clip, select_frame_info(info, positions, self.per_frame_info)
        raise DatasetError(f"Every video in {self.data_dir} failed to load; see the warnings above for the reasons.")

    def summary(self) -> dict[str, Any]:
        """Counts, video lengths and skipped files, for `flexvid data info`."""
        return {
            "videos": len(self.entries),
            "lengths": [e.num_frames for e in self.entries],
            "kinds": sorted({e.kind for e in self.entries}),
            "skipped": list(self.skipped),
        }

    def _read(self, entry: IndexEntry, start: int, positions: np.ndarray | None) -> np.ndarray:
        """uint8 frames of the clip from `start`: all T, or those at `positions` within it."""
        path = self.data_dir / entry.path
        stop = start + self.span
        if entry.kind == "video":
            count = self.T if positions is None else int(positions.max()) + 1
            frames = read_video_frames(path, start, count, self.frame_stride, self.backend)
            return frames if positions is None else frames[positions]
        if entry.kind == "array":
            window = read_array(path)[start : stop : self.frame_stride]
            self._check_frame_count(entry, len(window))
            return np.asarray(window if positions is None else window[positions])
        images = image_files(path)[start : stop : self.frame_stride]
        self._check_frame_count(entry, len(images))
        if positions is None:
            return np.stack([_read_image(image) for image in images])
        needed, order = np.unique(positions, return_inverse=True)  # each image file is read once
        return np.stack([_read_image(images[i]) for i in needed])[order]

    def _check_frame_count(self, entry: IndexEntry, count: int) -> None:
        if count != self.T:
            raise DatasetError(f"{entry.path} gave {count} frames where {self.T} were expected")

    def _report_failure(self, entry: IndexEntry, err: Exception) -> None:
        if all(path != entry.path for path, _ in self.load_failures):
            self.load_failures.append((entry.path, str(err)))
            warnings.warn(f"Skipping unreadable video {entry.path}: {err}", stacklevel=3)

    @staticmethod
    def _split_root(data_dir: Path, split: str) -> Path:
        present = [name for name in SPLIT_DIRS if (data_dir / name).is_dir()]
        if not present:
            return data_dir
        if split not in SPLIT_DIRS or not (data_dir / split).is_dir():
            raise DatasetError(
                f"{data_dir} has {'/ and '.join(present)}/ but no {split}/ directory; add it or use split "
                f"{present[0]!r}."
            )
        return data_dir / split


def _link_problem(path: Path, err: OSError) -> str:
    """Why a video file could not even be looked at: a broken link, a link loop, or the OS's reason."""
    if path.is_symlink():
        target = os.readlink(path)
        if err.errno == errno.ELOOP:
            return f"a link loop ({path.name} -> {target} never reaches a file)"
        if err.errno == errno.ENOENT:
            return f"a broken link to {target}, which does not exist"
    return err.strerror or str(err)


def _npz_key(path: Path, keys: list[str]) -> str:
    if len(keys) == 1:
        return keys[0]
    if "video" in keys:
        return "video"
    raise DatasetError(f"holds arrays {keys}; keep one array, or name the video array 'video'")


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@register_dataset("folder", default_T=100, default_image_size=64)
def build_folder(split: str, *, T: int, image_size: int, data_dir: Path, **options: Any) -> FolderVideos:
    """Factory for the registry: the user's own videos under `data_dir`."""
    return FolderVideos(data_dir, split, T=T, image_size=image_size, **options)
