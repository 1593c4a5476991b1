"""LPIPS (v0.1, AlexNet) perceptual distance: our AlexNet plus the learned linear heads of the `lpips` package.

Images in [-1, 1] are shifted and scaled per channel, passed through AlexNet; at each of the five ReLU
outputs the features are unit-normalised over channels, their squared difference is weighted per
channel by the head and averaged over space; the five layer scores are summed.
The heads come from an explicit file, the weights directory, or the copy shipped inside the `lpips`
wheel (`pip install --no-deps lpips==0.1.4`), which is located without importing the package.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from flexvid.errors import WeightsError
from flexvid.eval.alexnet import TAP_CHANNELS, AlexNetFeatures, load_alexnet
from flexvid.eval.weights import LPIPS_ALEX_HEADS, LocatedWeights, find_installed, locate_weights
from flexvid.files import sha256_of

# Per-channel input normalisation of LPIPS (its ScalingLayer), for inputs in [-1, 1].
INPUT_SHIFT = (-0.030, -0.088, -0.188)
INPUT_SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10
WHEEL_HEADS = ("weights", "v0.1", "alex.pth")


class LPIPS(nn.Module):
    """LPIPS distance between image batches (N, 1 or 3, H, W) in [-1, 1]; returns (N,)."""

    shift: Tensor  # buffers (1, 3, 1, 1): the input normalisation
    scale: Tensor

    def __init__(self, backbone: AlexNetFeatures, heads: list[Tensor]) -> None:
        super().__init__()
        if [h.shape for h in heads] != [torch.Size([1, c, 1, 1]) for c in TAP_CHANNELS]:
            raise WeightsError(
                f"LPIPS heads have shapes {[tuple(h.shape) for h in heads]}, expected (1, C, 1, 1) for C in "
                f"{TAP_CHANNELS}; give the AlexNet heads (alex.pth), not those of another backbone."
            )
        self.backbone = backbone.eval()
        for index, head in enumerate(heads):
            self.register_buffer(f"head{index}", head.detach().clone().float())
        self.register_buffer("shift", torch.tensor(INPUT_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(INPUT_SCALE).view(1, 3, 1, 1))

    def heads(self) -> list[Tensor]:
        return [getattr(self, f"head{index}") for index in range(len(TAP_CHANNELS))]

    def unit_features(self, x: Tensor) -> list[Tensor]:
        """The five AlexNet ReLU outputs of images (N, 1 or 3, H, W) in [-1, 1], unit-normalised over channels."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        taps = self.backbone((x - self.shift) / self.scale)
        return [tap / (tap.pow(2).sum(dim=1, keepdim=True).sqrt() + NORM_EPS) for tap in taps]

    @torch.no_grad()
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape:
            raise ValueError(f"LPIPS inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
        total = torch.zeros(x.shape[0], device=x.device)
        for fx, fy, head in zip(self.unit_features(x), self.unit_features(y), self.heads(), strict=True):
            total += ((fx - fy).pow(2) * head).sum(dim=1).mean(dim=(1, 2))
        return total

    @torch.no_grad()
    def embed(self, x: Tensor) -> Tensor:
        """(N, D) vectors whose squared Euclidean distances are the LPIPS distances of the images (N, C, H, W).

        Each layer's unit features are weighted by the square root of its (non-negative) head and by
        1 / sqrt(H W), so that comparing many frames costs one network pass per frame.
        """
        parts = [
            (features * head.sqrt()).flatten(1) / math.sqrt(features.shape[2] * features.shape[3])
            for features, head in zip(self.unit_features(x), self.heads(), strict=True)
        ]
        return torch.cat(parts, dim=1)


def wheel_heads_path() -> Path | None:
    """The AlexNet heads file inside an installed `lpips` package, found without importing it."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(list(spec.submodule_search_locations)[0]).joinpath(*WHEEL_HEADS)
    return candidate if candidate.is_file() else None


def locate_lpips_heads(path: str | Path | None = None) -> LocatedWeights:
    """The heads file: `path`, else the weights directory, else the `lpips` wheel; checked against its hash."""
    if path is not None or find_installed(LPIPS_ALEX_HEADS.name) is not None:
        return locate_weights(LPIPS_ALEX_HEADS.name, path)
    wheel = wheel_heads_path()
    if wheel is None:
        raise WeightsError(
            "LPIPS AlexNet heads not found; install them with `pip install --no-deps lpips==0.1.4` or "
            f"run `flexvid weights download {LPIPS_ALEX_HEADS.name}`."
        )
    digest = sha256_of(wheel)
    if digest != LPIPS_ALEX_HEADS.sha256:
        raise WeightsError(
            f"{wheel} has SHA-256 {digest}, not the published {LPIPS_ALEX_HEADS.sha256}; reinstall lpips==0.1.4."
        )
    return LocatedWeights(wheel, digest, verified=True)


def load_lpips_heads(path: Path) -> list[Tensor]:
    """The five `lin<i>.model.1.weight` tensors of an LPIPS heads file, in layer order."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the file is not what we need
        raise WeightsError(f"Could not read {path} as LPIPS heads ({err}); give lpips' weights/v0.1/alex.pth.") from err
    keys = [f"lin{index}.model.1.weight" for index in range(len(TAP_CHANNELS))]
    if not isinstance(state, dict) or sorted(state) != sorted(keys):
        found = sorted(state)[:5] if isinstance(state, dict) else type(state).__name__
        raise WeightsError(
            f"{path} is not an LPIPS heads file (keys {found}, expected {keys}); give lpips' weights/v0.1/alex.pth."
        )
    return [state[key] for key in keys]


def load_lpips(
    alexnet_path: str | Path | None = None, heads_path: str | Path | None = None
) -> tuple[LPIPS, dict[str, object]]:
    """The LPIPS network and the provenance (file names and hashes) of both weights files."""
    backbone, backbone_weights = load_alexnet(alexnet_path)
    heads_weights = locate_lpips_heads(heads_path)
    model = LPIPS(backbone, load_lpips_heads(heads_weights.path))
    return model, {"backbone": backbone_weights.describe(), "heads": heads_weights.describe()}


__all__ = ["LPIPS", "load_lpips", "load_lpips_heads", "locate_lpips_heads", "wheel_heads_path"]
