"""ImageNet-style ResNets in plain PyTorch, with torchvision's parameter names.

The CARLA position classifier and regressor are ResNet-152s saved as torchvision state dicts, so
this module rebuilds that exact layout (conv1, bn1, layer1..4, fc) without depending on torchvision.
`base_width` shrinks every layer for tests; 64 is the standard network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from flexvid.errors import WeightsError


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, as torchvision's "v1.5"), 1x1 expand (ResNet-50+)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    """The projection (`downsample.0` conv, `downsample.1` norm) when the residual changes shape."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


@dataclass(frozen=True)
class ResNetSpec:
    """What fixes a ResNet's shape: block type, blocks per stage, stem width, classes (None: no fc)."""

    bottleneck: bool
    layers: tuple[int, int, int, int]
    base_width: int = 64
    num_classes: int | None = 1000


ARCHITECTURES: dict[str, tuple[bool, tuple[int, int, int, int]]] = {
    "resnet18": (False, (2, 2, 2, 2)),
    "resnet34": (False, (3, 4, 6, 3)),
    "resnet50": (True, (3, 4, 6, 3)),
    "resnet101": (True, (3, 4, 23, 3)),
    "resnet152": (True, (3, 8, 36, 3)),
}


class ResNet(nn.Module):
    """A ResNet whose `state_dict()` keys equal torchvision's; without `fc` it returns pooled features."""

    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__()
        self.spec = spec
        block = Bottleneck if spec.bottleneck else BasicBlock
        width = spec.base_width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = width
        stages = []
        for stage, num_blocks in enumerate(spec.layers):
            stage_width = width * 2**stage
            blocks = []
            for index in range(num_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(block(in_channels, stage_width, stride))
                in_channels = stage_width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = in_channels
        self.fc = None if spec.num_classes is None else nn.Linear(in_channels, spec.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation: He-normal convolutions, unit-scale zero-shift norms."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, feature_dim) globally pooled features."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.forward_features(x)
        return features if self.fc is None else self.fc(features)


def build_resnet(arch: str = "resnet152", *, num_classes: int | None = 1000, base_width: int = 64) -> ResNet:
    """A named architecture (resnet18/34/50/101/152) with `num_classes` outputs (None: features)."""
    if arch not in ARCHITECTURES:
        raise WeightsError(f"Unknown ResNet {arch!r}; choose one of {', '.join(ARCHITECTURES)}.")
    bottleneck, layers = ARCHITECTURES[arch]
    return ResNet(ResNetSpec(bottleneck, layers, base_width, num_classes))


def resnet18(**kwargs) -> ResNet:
    """ResNet-18 (basic blocks 2-2-2-2)."""
    return build_resnet("resnet18", **kwargs)


def resnet34(**kwargs) -> ResNet:
    """ResNet-34 (basic blocks 3-4-6-3)."""
    return build_resnet("resnet34", **kwargs)


def resnet50(**kwargs) -> ResNet:
    """ResNet-50 (bottlenecks 3-4-6-3)."""
    return build_resnet("resnet50", **kwargs)


def resnet101(**kwargs) -> ResNet:
    """ResNet-101 (bottlenecks 3-4-23-3)."""
    return build_resnet("resnet101", **kwargs)


def resnet152(**kwargs) -> ResNet:
    """ResNet-152 (bottlenecks 3-8-36-3), the CARLA position networks' backbone."""
    return build_resnet("resnet152", **kwargs)


def infer_resnet_spec(state_dict: Mapping[str, torch.Tensor], prefix: str = "") -> ResNetSpec:
    """Read the architecture off a torchvision-named state dict, so any trained size loads."""
    stem = state_dict.get(f"{prefix}conv1.weight")
    if stem is None or stem.ndim != 4:
        raise WeightsError(
            f"The weights have no ResNet stem '{prefix}conv1.weight'; give a torchvision-format ResNet state dict."
        )

    def stage_blocks(stage: int) -> int:
        blocks = {
            int(key[len(f"{prefix}layer{stage}.") :].split(".")[0])
            for key in state_dict
            if key.startswith(f"{prefix}layer{stage}.")
        }
        if not blocks or blocks != set(range(len(blocks))):
            raise WeightsError(
                f"The weights have no complete '{prefix}layer{stage}' stage; give a torchvision-format ResNet state "
                "dict."
            )
        return len(blocks)

    layers = (stage_blocks(1), stage_blocks(2), stage_blocks(3), stage_blocks(4))
    bottleneck = f"{prefix}layer1.0.conv3.weight" in state_dict
    fc = state_dict.get(f"{prefix}fc.weight")
    num_classes = None if fc is None else int(fc.shape[0])
    return ResNetSpec(bottleneck, layers, int(stem.shape[0]), num_classes)
