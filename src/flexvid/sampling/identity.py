"""What makes an evaluation directory's videos what they are: the settings identity recorded in its
settings.json, the default folder named after it, and the refusal to add videos made otherwise.

The identity holds everything that changes a video (the checkpoint's weights, scheme, sampler, steps,
eta, seed, precision, lengths, observed frames' source, the device type the noise is drawn on) and
nothing that does not (batch sizes, which videos or sample index a run covers).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from flexvid.checkpoint import Pretrained
from flexvid.config import to_dict
from flexvid.errors import ConfigError
from flexvid.eval_layout import sample_files, settings_path
from flexvid.files import sha256_of
from flexvid.schemes import AdaptivePlan, is_scheme_file

if TYPE_CHECKING:
    from flexvid.sampling.generate import VideoGenerator

IDENTITY_KEY = "identity"  # where settings.json records the identity
RESULTS_DIR = Path("results")


def checkpoint_fingerprint(pretrained: Pretrained) -> str:
    """SHA-256 of the network's weights and of its network and diffusion configs: the checkpoint's identity,
    whatever path or format it was loaded from."""
    digest = hashlib.sha256()
    configs = {"model": to_dict(pretrained.config.network), "diffusion": to_dict(pretrained.config.diffusion)}
    digest.update(json.dumps(configs, sort_keys=True).encode())
    for tensor in pretrained.model.state_dict().values():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{flat.dtype}{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def generation_identity(
    generator: VideoGenerator, checkpoint_sha256: str, dataset: str | None, data_dir: str | None
) -> dict[str, Any]:
    """The identity of the videos a `VideoGenerator` makes, as plain JSON values."""
    settings = generator.settings
    scheme = settings.sampling_scheme
    conditional = generator.n_obs > 0
    identity = {
        "checkpoint_sha256": checkpoint_sha256,
        "sampling_scheme": Path(scheme).name if is_scheme_file(scheme) else scheme,
        "scheme_file_sha256": sha256_of(scheme) if is_scheme_file(scheme) else None,
        "scheme_weights": scheme_weights(generator),
        "n_obs": generator.n_obs,
        "T": generator.T,
        "max_frames": generator.max_frames,
        "max_latent_frames": generator.max_latent_frames,
        "chunk_length": generator.chunk_length,
        "context": generator.context,
        "sampler": settings.sampler,
        "steps": generator.steps,
        "eta": settings.eta if settings.sampler == "ddim" else None,  # DDPM has no eta
        "clip_denoised": settings.clip_denoised,
        "seed": settings.seed,
        "precision": settings.precision,
        "noise_device": torch.device(settings.device).type,  # CPU and CUDA generators draw different noise
        "dataset": dataset if conditional else None,
        "data_dir": str(Path(data_dir).resolve()) if conditional and data_dir is not None else None,
    }
    return json.loads(json.dumps(identity))


def scheme_weights(generator: VideoGenerator) -> dict[str, Any] | None:
    """Provenance (file names, SHA-256s) of the network an adaptive scheme chooses frames with; None for
    static schemes. Other weights choose other frames, so they belong to the identity."""
    for stages in generator.stages_by_shape.values():
        if isinstance(stages, AdaptivePlan):
            return dict(stages.weights)
    return None


def checkpoint_label(checkpoint: str) -> str:
    """A readable name for a checkpoint path; inside a run's checkpoints/ it starts with the run's name."""
    path = Path(checkpoint).resolve()
    parts = list(path.parts[1:])  # without the root
    if path.suffix in (".safetensors", ".pt"):
        parts[-1] = path.stem
    if "checkpoints" in parts[:-1]:
        at = len(parts) - 1 - parts[::-1].index("checkpoints")
        parts = parts[max(at - 1, 0) : at] + parts[at + 1 :]
        return "_".join(parts)
    return parts[-1] if parts else "checkpoint"


def default_eval_dir(checkpoint: str, identity: dict[str, Any]) -> Path:
    """results/<checkpoint>/<scheme>_<K>_<latent>_<T>_<n_obs>_<sampler><steps>[_eta<eta>]_seed<seed>_<precision>-<hash>,
    the hash covering the whole identity, so different settings never share a default folder."""
    i = identity
    name = f"{Path(i['sampling_scheme']).stem}_{i['max_frames']}_{i['max_latent_frames']}_{i['T']}_{i['n_obs']}"
    name += f"_{i['sampler']}{i['steps']}"
    if i["eta"] is not None:
        name += f"_eta{i['eta']:g}"
    name += f"_seed{i['seed']}_{i['precision']}-{identity_hash(identity)}"
    return RESULTS_DIR / checkpoint_label(checkpoint) / name


def identity_hash(identity: dict[str, Any]) -> str:
    """Eight hex digits naming an identity."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]


def recorded_identity(eval_dir: Path) -> dict[str, Any] | None:
    """The identity recorded in EVAL_DIR/settings.json, or None when there is none."""
    path = settings_path(eval_dir)
    try:
        values = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return values.get(IDENTITY_KEY) if isinstance(values, dict) else None


def check_same_identity(eval_dir: Path, identity: dict[str, Any]) -> None:
    """Refuse, in one sentence, to add videos to a folder that holds videos made with other settings."""
    eval_dir = Path(eval_dir)
    if not sample_files(eval_dir):
        return  # no videos to mix with
    recorded = recorded_identity(eval_dir)
    if recorded is None:
        raise ConfigError(
            f"{eval_dir} holds videos whose settings were not recorded, so new ones could not be told apart "
            "from them; write to another folder."
        )
    differences = [
        f"{key} {_short(recorded.get(key))} there, {_short(identity.get(key))} now"
        for key in sorted(set(recorded) | set(identity))
        if recorded.get(key) != identity.get(key)
    ]
    if differences:
        raise ConfigError(
            f"{eval_dir} holds videos made with other settings ({'; '.join(differences)}); write to another folder, "
            "or give the same settings to add to it."
        )


def _short(value: Any) -> str:
    """A recorded value for a message; long hashes cut to 12 digits."""
    return f"{value[:12]}..." if isinstance(value, str) and len(value) == 64 else repr(value)
