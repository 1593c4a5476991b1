"""The convolutional part of AlexNet, named as torchvision names it, so `alexnet-owt-7be5be79.pth` loads.

Only `features.*` is built: LPIPS reads the five ReLU outputs and never the classifier, whose
`classifier.*` weights in the torchvision file are accepted and skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from flexvid.errors import WeightsError
from flexvid.eval.weights import ALEXNET, LocatedWeights, locate_weights, state_dict_mismatch

# Indices in `features` of the ReLUs whose outputs LPIPS compares (relu1 ... relu5).
TAP_INDICES = (1, 4, 7, 9, 11)
TAP_CHANNELS = (64, 192, 384, 256, 256)


class AlexNetFeatures(nn.Module):
    """torchvision's `AlexNet.features` (conv1 ... relu5 + final max-pool), returning the five ReLU outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        taps = []
        for index, layer in enumerate(list(self.features)[: TAP_INDICES[-1] + 1]):
            x = layer(x)
            if index in TAP_INDICES:
                taps.append(x)
        return taps


def load_alexnet_state_dict(model: AlexNetFeatures, state: Mapping[str, Tensor], source: str) -> None:
    """Copy the `features.*` weights of a torchvision AlexNet state dict into `model`, checking keys and shapes."""
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{source} is not a state dict of tensors; give torchvision's {ALEXNET.filename}.")
    features = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    details = state_dict_mismatch(model.state_dict(), features)
    if details:
        raise WeightsError(f"{source} is not a torchvision AlexNet state dict ({details}); give {ALEXNET.filename}.")
    model.load_state_dict(features)


def load_alexnet(path: str | Path | None = None) -> tuple[AlexNetFeatures, LocatedWeights]:
    """AlexNet features from `path`, else from the weights directory; in eval mode on the CPU."""
    located = locate_weights(ALEXNET.name, path)
    try:
        state = torch.load(located.path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the file is not what we need
        raise WeightsError(f"Could not read {located.path} as a state dict ({err}); give {ALEXNET.filename}.") from err
    model = AlexNetFeatures()
    load_alexnet_state_dict(model, state, str(located.path))
    return model.eval(), located


__all__ = ["AlexNetFeatures", "TAP_CHANNELS", "TAP_INDICES", "load_alexnet", "load_alexnet_state_dict"]
