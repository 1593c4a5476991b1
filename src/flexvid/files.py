"""File helpers shared across flexvid: atomic writes (temp file beside the target, then rename), SHA-256,
directory locks, and file names made printable.

A crash or Ctrl-C during an atomic write leaves either the old file or the complete new one, never a
half-written file under the real name.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flexvid.errors import DirectoryInUseError

CHUNK_BYTES = 1 << 20
LOCK_FILENAME = ".flexvid.lock"
NAME_MAX = 255  # longest file name (one path component) common file systems allow


def temp_path_beside(path: Path, *, keep_suffix: bool = False) -> Path:
    """Create a new empty hidden file in `path`'s directory and return its path.

    With `keep_suffix` the name ends in `path`'s suffix (for writers that pick a format by extension);
    otherwise in `.tmp`, so directory scans for the real suffix never pick up a leftover. The name is
    cut short where needed so it never exceeds NAME_MAX. The file is created with the default
    permissions (umask applied), like any ordinary new file.
    """
    token = secrets.token_hex(6)
    base, tail = (path.stem, f".{token}.tmp{path.suffix}") if keep_suffix else (path.name, f".{token}.tmp")
    temp = path.with_name("." + base[: NAME_MAX - 1 - len(tail)] + tail)  # a long name's temp still fits
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return temp


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any], *, keep_suffix: bool = True) -> Path:
    """Call `write(temp)` on a temporary file beside `path`, fsync it, then rename it over `path`.

    Parent directories are created; the temporary file is removed if anything fails (including
    KeyboardInterrupt). The temporary name keeps `path`'s suffix unless `keep_suffix` is False.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_beside(path, keep_suffix=keep_suffix)
    try:
        write(temp)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    return atomic_write(path, lambda temp: temp.write_bytes(data), keep_suffix=False)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, **dumps_options: Any) -> Path:
    """Write `obj` as JSON to `path` atomically; `dumps_options` go to `json.dumps` (e.g. sort_keys)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, **dumps_options) + "\n")


def printable(text: str | os.PathLike) -> str:
    """A file name or text holding one, safe to print and to write as UTF-8: the bytes of a name that is
    not UTF-8 (Python keeps them as surrogate escapes) are shown as \\xNN."""
    text = os.fspath(text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates that stand for no byte, e.g. from a JSON escape
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def exclusive_lock(directory: str | os.PathLike, option: str) -> Iterator[Path]:
    """Hold an exclusive lock on `directory` for the block, or raise DirectoryInUseError naming the holder.

    The lock is an flock on `directory/.flexvid.lock`, which records who holds it; the system releases it
    when the holder exits, even by kill -9, so a stale lock file never blocks anyone. `option` is the
    flag that chose the directory, named in the error message.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILENAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            raise DirectoryInUseError(
                f"{directory} is in use by {holder}; wait for that job to finish or choose another {option}."
            ) from None
        holder = f"flexvid process {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, (holder + "\n").encode(), 0)
        yield path
    finally:
        os.close(fd)
