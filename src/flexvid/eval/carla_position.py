"""Map CARLA Town01 frames to (x, y) town positions, as the paper's WD/OP metrics need.

Two ResNets work in tandem: a classifier picks one cell of a 10x10 grid over the town's
[-10, 400]^2 metres, and a regressor with 100 linear heads (one per cell) predicts the position with
the head of that cell. State dicts use the authors' layout: the classifier is a torchvision ResNet
with a 100-way `fc`; the regressor holds the backbone under `resnet.` (no fc) and heads
`regressors.<cell>.weight/bias`. Frames are normalised with ImageNet statistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from flexvid.errors import WeightsError
from flexvid.eval.resnet import ResNet, ResNetSpec, build_resnet, infer_resnet_spec
from flexvid.eval.weights import WEIGHTS_DIR_ENV, state_dict_mismatch, weights_dir
from flexvid.files import sha256_of

TOWN_MIN, TOWN_MAX = -10.0, 400.0  # Town01's extent in metres, on both axes
GRID_SIZE = 10  # cells per axis
NUM_CELLS = GRID_SIZE * GRID_SIZE
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RELEASE_URL = "https://www.cs.ubc.ca/~wsgh/fdm/carla-regressor-ckpts/"
CLASSIFIER_FILE = "classifier_checkpoint.pth"
REGRESSOR_FILE = "regressor_checkpoint.pth"


def default_weight_paths() -> tuple[Path, Path]:
    """The classifier and regressor files looked for when no path is given (in the weights directory)."""
    return weights_dir() / CLASSIFIER_FILE, weights_dir() / REGRESSOR_FILE


def coords_to_cell(coords: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(..., >=2) positions -> (...,) grid cell `10 * x_bin + y_bin`; outside the town clamps to the border."""
    xy = torch.as_tensor(coords)[..., :2].double()
    width = (TOWN_MAX - TOWN_MIN) / GRID_SIZE
    bins = torch.floor((xy - TOWN_MIN) / width).long().clamp(0, GRID_SIZE - 1)
    return bins[..., 0] * GRID_SIZE + bins[..., 1]


def normalize_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) frames -> float ImageNet-normalised input for the position networks."""
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
        raise WeightsError(
            f"Position networks take uint8 RGB frames of shape (N, 3, H, W), got {frames.dtype} {tuple(frames.shape)}; "
            "convert the video to uint8 first."
        )
    return imagenet_normalize(frames.float() / 255.0)


def imagenet_normalize(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) floats in [0, 1] -> ImageNet-normalised (per-channel mean and std)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


class MultiHeadRegressor(nn.Module):
    """A ResNet backbone with one linear (x, y) head per grid cell; the caller says which head to use."""

    def __init__(self, spec: ResNetSpec, num_heads: int = NUM_CELLS) -> None:
        super().__init__()
        self.resnet = ResNet(ResNetSpec(spec.bottleneck, spec.layers, spec.base_width, None))
        self.regressors = nn.ModuleList(nn.Linear(self.resnet.feature_dim, 2) for _ in range(num_heads))

    def forward(self, images: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images and (B,) cell indices -> (B, 2) positions."""
        features = self.resnet(images)
        heads = cast(list[nn.Linear], list(self.regressors))
        weight = torch.stack([head.weight for head in heads])[cells]  # (B, 2, F)
        bias = torch.stack([head.bias for head in heads])[cells]  # (B, 2)
        return torch.einsum("bof,bf->bo", weight, features) + bias


def build_classifier(arch: str = "resnet152", base_width: int = 64) -> ResNet:
    """The grid-cell classifier: a ResNet with a 100-way fc."""
    return build_resnet(arch, num_classes=NUM_CELLS, base_width=base_width)


def build_regressor(arch: str = "resnet152", base_width: int = 64) -> MultiHeadRegressor:
    """The 100-head position regressor."""
    return MultiHeadRegressor(build_resnet(arch, num_classes=None, base_width=base_width).spec)


class CarlaPositionModel(nn.Module):
    """Classifier and regressor in tandem: frames -> (x, y) positions in metres."""

    def __init__(self, classifier: ResNet, regressor: MultiHeadRegressor, provenance: dict | None = None) -> None:
        super().__init__()
        self.classifier = classifier
        self.regressor = regressor
        self.provenance = provenance or {}  # which weight files (name, SHA-256) the networks came from

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) normalised images -> ((B, 2) positions, (B,) cells chosen by the classifier)."""
        cells = self.classifier(images).argmax(dim=1)
        return self.regressor(images, cells), cells

    @torch.no_grad()
    def predict_video(self, video: torch.Tensor | np.ndarray, batch_size: int = 8) -> np.ndarray:
        """uint8 (T, 3, H, W) video -> float32 (T, 2) positions, `batch_size` frames at a time."""
        frames = torch.as_tensor(video)
        device = next(self.parameters()).device
        positions = []
        for start in range(0, len(frames), batch_size):
            batch = normalize_frames(frames[start : start + batch_size]).to(device)
            positions.append(self(batch)[0].float().cpu())
        return torch.cat(positions).numpy()


def _read_state_dict(path: Path, role: str, release_name: str) -> dict[str, torch.Tensor]:
    """Load a state dict file, with errors that say where the released weights are."""
    if not path.is_file():
        raise WeightsError(
            f"CARLA {role} weights not found at {path}; download {RELEASE_URL}{release_name} there or pass its "
            f"location with --{role} (default folder: ${WEIGHTS_DIR_ENV}, else ~/.cache/flexvid), "
            "or train one with `flexvid carla-regressor train`."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or non-tensor pickles
        raise WeightsError(f"Could not read CARLA {role} weights {path} ({err}); re-download or retrain it.") from err
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsError(
            f"{path} is not a state dict of tensors; give the {role} file saved by torch.save(model.state_dict())."
        )
    return {key.removeprefix("module."): value for key, value in state.items()}


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path, role: str) -> None:
    """Copy weights in, turning key or shape mismatches into one readable sentence."""
    details = state_dict_mismatch(model.state_dict(), state, label_separator=": ")
    if details:
        raise WeightsError(f"{path} does not fit the CARLA {role} layout ({details}); give the matching {role} file.")
    model.load_state_dict(state)


def load_classifier(path: str | Path) -> ResNet:
    """A classifier from a torchvision-format state dict with a 100-way fc (any ResNet depth/width)."""
    path = Path(path)
    state = _read_state_dict(path, "classifier", CLASSIFIER_FILE)
    if any(key.startswith("regressors.") for key in state):
        raise WeightsError(f"{path} holds regressor weights, not the classifier; swap the two paths.")
    spec = infer_resnet_spec(state)
    if spec.num_classes != NUM_CELLS:
        raise WeightsError(
            f"{path} has {spec.num_classes or 'no'} classifier outputs, not {NUM_CELLS} grid cells; give the CARLA "
            "classifier file."
        )
    model = ResNet(spec)
    _load_strict(model, state, path, "classifier")
    return model.eval()


def load_regressor(path: str | Path) -> MultiHeadRegressor:
    """A 100-head regressor from the authors' layout (`resnet.*` backbone, `regressors.<i>.*` heads)."""
    path = Path(path)
    state = _read_state_dict(path, "regressor", REGRESSOR_FILE)
    if not any(key.startswith("regressors.") for key in state):
        raise WeightsError(
            f"{path} has no 'regressors.<cell>' heads; give the CARLA regressor file (not the classifier)."
        )
    model = MultiHeadRegressor(infer_resnet_spec(state, prefix="resnet."))
    _load_strict(model, state, path, "regressor")
    return model.eval()


def load_position_model(
    classifier_path: str | Path | None = None,
    regressor_path: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> CarlaPositionModel:
    """Both networks, from the given files or the default weights location, in eval mode on `device`."""
    default_classifier, default_regressor = default_weight_paths()
    paths = {
        "classifier": Path(classifier_path or default_classifier),
        "regressor": Path(regressor_path or default_regressor),
    }
    classifier, regressor = load_classifier(paths["classifier"]), load_regressor(paths["regressor"])
    provenance = {role: {"file": path.name, "sha256": sha256_of(path)} for role, path in paths.items()}
    return CarlaPositionModel(classifier, regressor, provenance).to(device).eval()
