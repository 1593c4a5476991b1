"""File helpers shared across flexvid: atomic writes (temp file beside the target, then rename) and SHA-256.

A crash or Ctrl-C during an atomic write leaves either the old file or the complete new one, never a
half-written file under the real name.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable

CHUNK_BYTES = 1 << 20


def temp_path_beside(path: Path, *, keep_suffix: bool = False) -> Path:
    """Create a new empty hidden file in `path`'s directory and return its path.

    With `keep_suffix` the name ends in `path`'s suffix (for writers that pick a format by extension);
    otherwise in `.tmp`, so directory scans for the real suffix never pick up a leftover. The file is
    created with the default permissions (umask applied), like any ordinary new file.
    """
    token = secrets.token_hex(6)
    name = f".{path.stem}.{token}.tmp{path.suffix}" if keep_suffix else f".{path.name}.{token}.tmp"
    temp = path.with_name(name)
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


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
