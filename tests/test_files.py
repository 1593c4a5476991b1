"""Atomic writes and file hashing shared across flexvid."""

import hashlib
import json

import numpy as np
import pytest

from flexvid.files import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    sha256_of,
    temp_path_beside,
)


def test_atomic_write_creates_parents_and_keeps_the_suffix_for_format_picking_writers(tmp_path):
    target = tmp_path / "new" / "dir" / "array.npy"
    seen = []

    def write(temp):
        seen.append(temp)
        np.save(temp, np.arange(5))  # np.save appends ".npy" to any other name

    assert atomic_write(target, write) == target
    assert seen[0].parent == target.parent and seen[0].suffix == ".npy" and seen[0].name.startswith(".")
    np.testing.assert_array_equal(np.load(target), np.arange(5))
    assert [p.name for p in target.parent.iterdir()] == ["array.npy"]


@pytest.mark.parametrize("failure", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, failure):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")

    def write(temp):
        temp.write_bytes(b"half")
        raise failure

    with pytest.raises(type(failure)):
        atomic_write(target, write)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_helpers_replace_content_and_name_temporaries_without_the_real_suffix(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "b.txt", "héllo\n")
    atomic_write_json(tmp_path / "c.json", {"b": 1, "a": [2]}, sort_keys=True)
    atomic_write_json(tmp_path / "c.json", {"z": None})  # overwrites
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo\n"
    assert json.loads((tmp_path / "c.json").read_text()) == {"z": None}
    temp = temp_path_beside(tmp_path / "d.json")
    assert temp.exists() and temp.name.endswith(".tmp") and not temp.name.endswith(".json")


def test_temporaries_get_ordinary_permissions(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    written = atomic_write_bytes(tmp_path / "atomic", b"")
    assert written.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_sha256_of_matches_hashlib_over_several_chunks(tmp_path):
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)
    (tmp_path / "blob").write_bytes(data)
    assert sha256_of(tmp_path / "blob") == hashlib.sha256(data).hexdigest()
