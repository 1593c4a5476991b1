"""Fetching and unpacking dataset archives safely.

Downloads go to `<file>.part` and resume with an HTTP Range request; a short transfer is reported
instead of being taken as complete, and an optional SHA-256 is checked before the file gets its
final name. Archives are unpacked into a hidden staging directory beside the destination, which is
renamed into place only when preparation has finished and a marker file records that it did.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm import tqdm

from flexvid.errors import DatasetError, DownloadError
from flexvid.files import atomic_write_json, sha256_of

MARKER_FILE = ".flexvid_prepared.json"
CHUNK_BYTES = 1 << 20


def download(url: str, dest: Path, *, sha256: str | None = None, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download `url` to `dest`, resuming a previous partial download in `dest.part`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset and _range_total(err.headers.get("Content-Range")) == offset:
            return _finish(part, dest, url, sha256)  # the previous run had received every byte
        raise DownloadError(
            f"Downloading {url} failed with HTTP {err.code} ({err.reason}); check the URL, or download the "
            "file yourself and pass it with --archive."
        ) from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(
            f"Cannot reach {url} ({reason}); check the connection and run the command again, or pass a "
            "downloaded file with --archive."
        ) from err
    with response:
        resumed = bool(offset) and response.status == 206
        length = response.headers.get("Content-Length")
        if resumed:
            total = _range_total(response.headers.get("Content-Range")) or (offset + int(length) if length else None)
        else:
            offset, total = 0, int(length) if length else None
        received, broken = _stream(response, part, "ab" if resumed else "wb", offset, total, progress, dest.name)
    if (total is not None and received < total) or broken is not None:
        expected = f" of {total}" if total is not None else ""
        raise DownloadError(
            f"Download of {url} stopped after {received}{expected} bytes; run the same command again to resume it."
        )
    return _finish(part, dest, url, sha256)


def unpack_archive(archive: Path, dest: Path) -> None:
    """Extract a zip or (compressed) tar archive into `dest`, refusing members that would land outside it."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                for name in bundle.namelist():
                    if not _is_inside(name):
                        raise DatasetError(f"{archive} holds an unsafe path {name!r}; it will not be unpacked.")
                bundle.extractall(dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as bundle:
                bundle.extractall(dest, filter="data")
        else:
            raise DatasetError(f"{archive} is not a zip or tar archive; delete it and download it again.")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise DatasetError(f"{archive} is damaged or incomplete ({err}); delete it and download it again.") from err


def is_prepared(directory: Path) -> bool:
    """Whether `directory` was completely prepared (its marker file exists)."""
    return (directory / MARKER_FILE).is_file()


def check_destination(dest: Path) -> bool:
    """True if `dest` is already prepared; an error if it holds something else; False if free."""
    if is_prepared(dest):
        return True
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DatasetError(
            f"{dest} already exists but holds no completed preparation; remove it or choose another directory."
        )
    return False


@contextmanager
def staging_dir(dest: Path) -> Iterator[Path]:
    """A hidden temporary directory beside `dest` (same file system, so it can be renamed into place);
    removed afterwards, together with any left by an interrupted earlier run."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{dest.name}.partial-"
    for stale in dest.parent.glob(f"{prefix}*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=prefix))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(ready: Path, dest: Path, details: dict[str, Any]) -> None:
    """Write the completion marker into `ready`, then rename it to `dest` in one step."""
    atomic_write_json(ready / MARKER_FILE, details, indent=1)
    if dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()
    os.replace(ready, dest)


def _stream(response, part: Path, mode: str, offset: int, total: int | None, progress: bool, label: str):
    received, broken = offset, None
    with (
        open(part, mode) as out,
        tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not progress
        ) as bar,
    ):
        try:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        except (http.client.HTTPException, OSError) as err:
            broken = err
    return received, broken


def _finish(part: Path, dest: Path, url: str, sha256: str | None) -> Path:
    if sha256:
        actual = sha256_of(part)
        if actual.lower() != sha256.strip().lower():
            part.unlink()
            raise DownloadError(
                f"The file downloaded from {url} has SHA-256 {actual}, not the expected {sha256}; it was deleted, "
                "so run the command again to download it afresh."
            )
    os.replace(part, dest)
    return dest


def _range_total(content_range: str | None) -> int | None:
    match = re.search(r"/(\d+)\s*$", content_range or "")
    return int(match.group(1)) if match else None


def _is_inside(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return not path.is_absolute() and ".." not in path.parts and not re.match(r"^[A-Za-z]:", name)
