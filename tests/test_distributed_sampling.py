"""`torchrun -m flexvid sample` on CPU: 2 gloo processes split the videos and write the files one process writes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from flexvid.sampling.shards import deal_batches

from helpers import save_sampling_checkpoint


def sample(checkpoint: Path, eval_dir: Path, *launcher: str) -> subprocess.CompletedProcess:
    """`flexvid sample` of 5 test videos in batches of 2, run as `python [launcher...] -m flexvid`."""
    command = [
        sys.executable,
        *launcher,
        "-m",
        "flexvid",
        "sample",
        str(checkpoint),
        "--n_obs",
        "2",
        "--batch_size",
        "2",
        "--stop_index",
        "5",
        "--steps",
        "2",
        "--eta",
        "1",
        "--device",
        "cpu",
        "--eval_dir",
        str(eval_dir),
    ]
    result = subprocess.run(
        command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_batches_are_dealt_in_turn():
    todo = [3, 4, 5, 6, 7]
    assert deal_batches(todo, 2, 0, 2) == [[3, 4], [7]]
    assert deal_batches(todo, 2, 1, 2) == [[5, 6]]
    assert deal_batches(todo, 2, 0, 1) == [[3, 4], [5, 6], [7]]
    assert deal_batches(todo, 8, 1, 2) == []


def test_two_processes_write_what_one_process_writes(tmp_path):
    checkpoint = save_sampling_checkpoint(tmp_path / "ckpt")
    one = sample(checkpoint, tmp_path / "one")
    two = sample(checkpoint, tmp_path / "two", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    assert "5 videos of 12 frames" in two.stderr and "by 2 processes" in two.stderr
    assert two.stdout.strip() == str(tmp_path / "two")  # rank 0 alone reports
    # Rank 0's progress bar counts its own share: batches [0, 1] and [4], 3 of the 5 videos.
    (one_total,), (two_total,) = ({int(t) for t in re.findall(r"\d+/(\d+) \[", r.stderr)} for r in (one, two))
    assert two_total * 5 == one_total * 3
    names = sorted(p.name for p in (tmp_path / "one" / "samples").iterdir())
    assert names == [f"sample_{i:04d}-0.npy" for i in range(5)]
    assert sorted(p.name for p in (tmp_path / "two" / "samples").iterdir()) == names
    for name in names:
        np.testing.assert_array_equal(
            np.load(tmp_path / "two" / "samples" / name), np.load(tmp_path / "one" / "samples" / name)
        )
    one_settings, two_settings = (json.loads((tmp_path / d / "settings.json").read_text()) for d in ("one", "two"))
    assert one_settings["identity"] == two_settings["identity"] and two_settings["world_size"] == 2
