"""Training run directories: checkpoints that never lose work, and which checkpoint of a run to load.

Each checkpoint is a directory `RUN_DIR/checkpoints/step_NNNNNNN` holding weights in flexvid's format
(flexvid.weights: `model.safetensors`, `ema_<rate>.safetensors`, `config.json`), `training_state.pt`
(optimizer, step, RNG states, data position) and `manifest.json` (size and SHA-256 of every file).
It is written under a temporary name and renamed, so a crash never leaves a half-written `step_*`
directory; a checkpoint that is corrupt anyway (disk trouble, manual edits) fails its manifest
check, is reported, and the previous one is used.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flexvid.errors import CheckpointError
from flexvid.files import sha256_of
from flexvid.run_config import RunConfig
from flexvid.weights import CONFIG_FILENAME, MODEL_FILENAME, ema_filename, load_weights, save_weights

CHECKPOINTS_SUBDIR = "checkpoints"
STATE_FILENAME = "training_state.pt"
MANIFEST_FILENAME = "manifest.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")
_TEMP_PREFIX = ".tmp_"  # checkpoints are written under .tmp_step_NNNNNNN_XXXX, then renamed


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    """Where the checkpoint of `step` lives."""
    return Path(run_dir) / CHECKPOINTS_SUBDIR / f"step_{step:07d}"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, directory) of every finished checkpoint, oldest first."""
    root = Path(run_dir) / CHECKPOINTS_SUBDIR
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _STEP_DIR.match(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete the temporary checkpoint folders that saves killed mid-way (kill -9, power loss) left behind.

    Each is a full-size partial checkpoint that nothing else ever reads; call this only while no other
    process saves into `run_dir` (the `flexvid train` command holds the run directory's lock).
    """
    root = Path(run_dir) / CHECKPOINTS_SUBDIR
    stale = sorted(root.glob(f"{_TEMP_PREFIX}*")) if root.is_dir() else []
    for path in stale:
        shutil.rmtree(path)
    return stale


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states of torch (CPU and CUDA), numpy and Python, in weights_only-safe types."""
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # the legacy global generator is always an MT19937
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": list(random.getstate()[1]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo `capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    model_state: dict[str, torch.Tensor],
    ema_states: dict[float, dict[str, torch.Tensor]],
    training_state: dict[str, Any],
    config: RunConfig,
    keep: int,
) -> Path:
    """Write the checkpoint of `step` atomically, then delete all but the newest `keep` checkpoints."""
    root = Path(run_dir) / CHECKPOINTS_SUBDIR
    root.mkdir(parents=True, exist_ok=True)
    target = checkpoint_path(run_dir, step)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f"{_TEMP_PREFIX}{target.name}_"))
    try:
        save_weights(tmp, model_state, config)  # model.safetensors and config.json
        for rate, state in ema_states.items():
            save_weights(tmp / ema_filename(rate), state, config)
        torch.save({**training_state, "step": step}, tmp / STATE_FILENAME)
        files = sorted(p.name for p in tmp.iterdir())
        manifest = {name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256_of(tmp / name)} for name in files}
        (tmp / MANIFEST_FILENAME).write_text(json.dumps({"step": step, "files": manifest}, indent=2) + "\n")
        for path in tmp.iterdir():
            _fsync(path)
        os.chmod(tmp, 0o755)
        if target.exists():
            stale = root / f".old_{target.name}_{os.getpid()}"
            os.replace(target, stale)
            os.replace(tmp, target)
            shutil.rmtree(stale)
        else:
            os.replace(tmp, target)
        _fsync(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old)
    return target


def verify_checkpoint(path: str | Path) -> None:
    """Raise CheckpointError unless every file of the checkpoint matches its manifest."""
    path = Path(path)
    manifest_path = path / MANIFEST_FILENAME
    if not manifest_path.is_file():
        raise CheckpointError(f"Checkpoint {path} has no {MANIFEST_FILENAME}; it is incomplete.")
    try:
        manifest = json.loads(manifest_path.read_text())["files"]
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"Checkpoint {path} has an unreadable {MANIFEST_FILENAME} ({err}).") from err
    for required in (MODEL_FILENAME, STATE_FILENAME, CONFIG_FILENAME):
        if required not in manifest:
            raise CheckpointError(f"Checkpoint {path} lists no {required}; it is incomplete.")
    for name, expected in manifest.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"Checkpoint {path} is missing {name}.")
        if file.stat().st_size != expected["bytes"] or sha256_of(file) != expected["sha256"]:
            raise CheckpointError(f"Checkpoint {path} has a corrupt {name} (its checksum does not match).")


def _warn_on_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def latest_valid_checkpoint(run_dir: str | Path, warn: Callable[[str], None] = _warn_on_stderr) -> Path:
    """The newest checkpoint that passes `verify_checkpoint`; broken newer ones are reported via `warn`."""
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise CheckpointError(
            f"{run_dir} holds no checkpoint (nothing under {CHECKPOINTS_SUBDIR}/step_*); "
            "start a new run instead of --resume, or point --resume at the right run directory."
        )
    for _, path in reversed(checkpoints):
        try:
            verify_checkpoint(path)
        except CheckpointError as err:
            warn(f"warning: {err} Falling back to the previous checkpoint.")
            continue
        return path
    raise CheckpointError(
        f"Every checkpoint in {Path(run_dir) / CHECKPOINTS_SUBDIR} is corrupt or incomplete; "
        "the run cannot be resumed, start a new one."
    )


def load_checkpoint(path: str | Path, rates: tuple[float, ...], device: torch.device | str = "cpu") -> dict[str, Any]:
    """The model weights, EMA weights per rate and training state of a checkpoint directory."""
    path = Path(path)
    ema = {}
    for rate in rates:
        file = path / ema_filename(rate)
        if not file.is_file():
            raise CheckpointError(f"Checkpoint {path} has no EMA weights for rate {rate} ({file.name}).")
        ema[rate] = load_weights(file, device=device).state_dict
    try:
        training_state = torch.load(path / STATE_FILENAME, map_location=device, weights_only=True)
    except Exception as err:  # torch raises many types for damaged or foreign files; never retry unsafely
        raise CheckpointError(
            f"Checkpoint {path} has an unreadable {STATE_FILENAME} ({type(err).__name__}); resume from an "
            "earlier checkpoint by moving this one out of the checkpoints folder."
        ) from None
    model = load_weights(path / MODEL_FILENAME, device=device).state_dict
    return {"model": model, "ema": ema, "training_state": training_state}


def checkpoint_to_load(path: str | Path) -> Path:
    """What to load for `path`: a run directory's newest intact checkpoint, a training checkpoint once its
    manifest checks out, and any other path as it is."""
    path = Path(path)
    if path.is_dir() and (path / CHECKPOINTS_SUBDIR).is_dir() and not (path / MODEL_FILENAME).exists():
        return latest_valid_checkpoint(path)
    if path.is_dir() and (path / MANIFEST_FILENAME).is_file():
        verify_checkpoint(path)
    return path
