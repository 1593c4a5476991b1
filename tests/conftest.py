"""Shared test fixtures: where the reference data lives, and small-thread torch for a 2-core CI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = ROOT / "tests" / "data" / "reference"  # made with the authors' code; see its README

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The directory with the authors' reference checkpoint and outputs."""
    return REFERENCE_DIR
