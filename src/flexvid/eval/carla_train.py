"""Train the CARLA grid-cell classifier or the 100-head position regressor on the dataset's coords.

The recipe is the authors': SGD (lr 1e-3, momentum 0.9), learning rate x0.1 every 7 epochs,
25 epochs, batch 4, a test-split pass after every epoch and the best-by-test-loss weights kept.
The classifier is trained with binary cross-entropy against the one-hot cell and Gaussian-blur plus
colour-jitter augmentation; the regressor with MSE, each frame's true cell choosing its head.
The data is a CARLA directory as `flexvid.data.carla` reads it: `video_<i>.pt` (uint8 T x H x W x 3),
`coords_<i>.npy` (T x >=2, metres) and the split lists `video_train.csv` / `video_test.csv`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from flexvid.data.carla import carla_video_files, load_carla_video, read_split_csv
from flexvid.errors import ConfigError, DatasetError, WeightsError
from flexvid.eval.carla_position import (
    NUM_CELLS,
    build_classifier,
    build_regressor,
    coords_to_cell,
    imagenet_normalize,
)
from flexvid.eval.resnet import ResNet
from flexvid.files import atomic_write, atomic_write_json

SPLITS = ("train", "test", "all")


# --------------------------------------------------------------------------------------------
# CARLA files


def carla_split_files(data_dir: str | Path, split: str = "all") -> list[tuple[Path, Path]]:
    """(video_<i>.pt, coords_<i>.npy) pairs of a split ("all": every video in the folder), in index order."""
    data_dir = Path(data_dir)
    if split not in SPLITS:
        raise DatasetError(f"Unknown CARLA split {split!r}; use one of {', '.join(SPLITS)}.")
    if not data_dir.is_dir():
        raise DatasetError(
            f"CARLA directory {data_dir} does not exist; download it with `flexvid data carla --download`."
        )
    if split == "all":
        videos = [path for _, path in sorted(carla_video_files(data_dir).items())]
    else:
        listing = data_dir / f"video_{split}.csv"
        if not listing.is_file():
            raise DatasetError(
                f"{listing} not found; create the split lists with `flexvid data carla --split {data_dir}`."
            )
        videos = [data_dir / name for name in read_split_csv(listing)]
    if not videos:
        raise DatasetError(f"No CARLA videos (video_<i>.pt) for split {split!r} in {data_dir}; check the path.")
    return [(video, video.with_name(video.stem.replace("video_", "coords_", 1) + ".npy")) for video in videos]


def load_frames(path: str | Path) -> torch.Tensor:
    """A dataset video file -> uint8 (T, 3, H, W), memory-mapped where the file format allows."""
    return load_carla_video(Path(path)).permute(0, 3, 1, 2)


def load_carla_coords(path: str | Path, num_frames: int | None = None) -> np.ndarray:
    """coords_<i>.npy -> float64 (T, 2) positions, checked against the video's frame count."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Coordinates file {path} not found; every video_<i>.pt needs its coords_<i>.npy.")
    coords = np.load(path)
    if coords.ndim != 2 or coords.shape[1] < 2:
        raise DatasetError(f"{path} has shape {coords.shape}; coordinates must be (T, 2) or (T, 3) positions.")
    if num_frames is not None and len(coords) != num_frames:
        raise DatasetError(
            f"{path} has {len(coords)} positions but its video has {num_frames} frames; coords and videos must match."
        )
    return coords[:, :2].astype(np.float64)


# --------------------------------------------------------------------------------------------
# Augmentation (the authors' torchvision GaussianBlur((5, 9), (0.1, 5)) + ColorJitter(0.1, hue=0.1))


def gaussian_blur(image: torch.Tensor, sigma: float, kernel_size: tuple[int, int] = (5, 9)) -> torch.Tensor:
    """Blur (C, H, W) with a separable Gaussian of `kernel_size` (width, height), reflect-padded."""
    out = image.unsqueeze(0)
    for axis, size in ((-1, kernel_size[0]), (-2, kernel_size[1])):
        offsets = torch.arange(size, dtype=image.dtype) - (size - 1) / 2
        kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
        kernel = (kernel / kernel.sum()).repeat(image.shape[0], 1, 1)  # (C, 1, size)
        half = size // 2
        if axis == -1:
            out = F.conv2d(F.pad(out, (half, half, 0, 0), mode="reflect"), kernel.unsqueeze(2), groups=image.shape[0])
        else:
            out = F.conv2d(F.pad(out, (0, 0, half, half), mode="reflect"), kernel.unsqueeze(3), groups=image.shape[0])
    return out.squeeze(0)


def rgb_to_hsv(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1] -> HSV with hue in [0, 1)."""
    r, g, b = image
    value, _ = image.max(0)
    delta = value - image.min(0).values
    saturation = torch.where(value > 0, delta / value.clamp_min(1e-12), torch.zeros_like(value))
    safe = delta.clamp_min(1e-12)
    hue = torch.where(value == r, ((g - b) / safe) % 6, torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(delta > 0, hue / 6, torch.zeros_like(hue))
    return torch.stack([hue, saturation, value])


def hsv_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) HSV (hue in [0, 1)) -> RGB in [0, 1]."""
    hue, saturation, value = image
    sector = torch.floor(hue * 6)
    frac = hue * 6 - sector
    p = value * (1 - saturation)
    q = value * (1 - saturation * frac)
    t = value * (1 - saturation * (1 - frac))
    sector = sector.long() % 6
    choices = torch.stack(
        [
            torch.stack([value, t, p]),
            torch.stack([q, value, p]),
            torch.stack([p, value, t]),
            torch.stack([p, q, value]),
            torch.stack([t, p, value]),
            torch.stack([value, p, q]),
        ]
    )  # (6, 3, H, W)
    return torch.gather(choices, 0, sector.expand(1, 3, *sector.shape)).squeeze(0)


def shift_hue(image: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue of (3, H, W) RGB by `shift` turns (in [-0.5, 0.5])."""
    hsv = rgb_to_hsv(image)
    hsv[0] = (hsv[0] + shift) % 1.0
    return hsv_to_rgb(hsv)


def augment_frame(image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random blur (sigma in [0.1, 5]), then brightness x[0.9, 1.1] and hue +-0.1 in random order."""
    low, span = torch.tensor([0.1, 0.9, -0.1]), torch.tensor([4.9, 0.2, 0.2])
    sigma, factor, shift = (low + span * torch.rand(3, generator=generator)).tolist()
    image = gaussian_blur(image, sigma)
    jitters = [lambda x: (x * factor).clamp(0, 1), lambda x: shift_hue(x, shift)]
    for choice in torch.randperm(2, generator=generator).tolist():
        image = jitters[choice](image)
    return image


# --------------------------------------------------------------------------------------------
# Frames dataset


class CarlaFrames(Dataset):
    """Every frame of a CARLA split: (normalised image (3, H, W), position (2,), cell) items."""

    def __init__(self, data_dir: str | Path, split: str, *, augment: bool = False) -> None:
        self.files = carla_split_files(data_dir, split)
        self.augment = augment
        self.coords = []
        self.index: list[tuple[int, int]] = []
        for number, (video_path, coords_path) in enumerate(self.files):
            num_frames = len(load_frames(video_path))
            self.coords.append(load_carla_coords(coords_path, num_frames))
            self.index.extend((number, frame) for frame in range(num_frames))
        self._videos: dict[int, torch.Tensor] = {}  # memory-mapped videos, opened on first use

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        number, frame = self.index[item]
        if number not in self._videos:
            self._videos[number] = load_frames(self.files[number][0])
        image = self._videos[number][frame].float() / 255.0
        if self.augment:
            image = augment_frame(image)
        image = imagenet_normalize(image.unsqueeze(0))[0]
        position = torch.from_numpy(self.coords[number][frame]).float()
        return image, position, coords_to_cell(position)


# --------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainConfig:
    """The training recipe; defaults are the paper's. Shrink arch/base_width/epochs for quick runs."""

    kind: str = "classifier"  # classifier | regressor
    arch: str = "resnet152"
    base_width: int = 64
    epochs: int = 25
    batch_size: int = 4
    lr: float = 1e-3
    momentum: float = 0.9
    lr_step_epochs: int = 7
    lr_gamma: float = 0.1
    augment: bool | None = None  # None: on for the classifier, off for the regressor
    init: str | None = None  # torchvision-format (e.g. ImageNet) ResNet weights for the backbone
    num_workers: int = 2
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("classifier", "regressor"):
            raise ConfigError(f"Unknown network kind {self.kind!r}; train a 'classifier' or a 'regressor'.")
        if self.epochs < 1 or self.batch_size < 1 or self.lr_step_epochs < 1:
            raise ConfigError("epochs, batch_size and lr_step_epochs must all be at least 1.")

    @property
    def use_augmentation(self) -> bool:
        return self.kind == "classifier" if self.augment is None else self.augment


def load_backbone_weights(backbone: ResNet, path: str | Path) -> None:
    """Initialise a backbone from a torchvision-format ResNet file, ignoring its fc (e.g. ImageNet's)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Backbone weights {path} not found; give a torchvision-format ResNet state dict (.pth).")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    expected = {k: v for k, v in backbone.state_dict().items() if not k.startswith("fc.")}
    bad = sorted(k for k in expected if k not in state or state[k].shape != expected[k].shape)
    if bad or set(state) - set(expected):
        raise WeightsError(
            f"{path} does not match a {backbone.spec.layers} ResNet of base width {backbone.spec.base_width} "
            f"(first mismatch: {(bad or sorted(set(state) - set(expected)))[0]}); pick the matching --arch."
        )
    backbone.load_state_dict(state, strict=False)


def _loss(
    kind: str, model: nn.Module, images: torch.Tensor, positions: torch.Tensor, cells: torch.Tensor
) -> torch.Tensor:
    if kind == "classifier":
        target = F.one_hot(cells, NUM_CELLS).float()
        return F.binary_cross_entropy_with_logits(model(images), target)
    return F.mse_loss(model(images, cells), positions)


def train_position_network(
    data_dir: str | Path,
    out_path: str | Path,
    config: TrainConfig,
    log: Callable[[str], None] = print,
) -> list[dict[str, float]]:
    """Train on the train split, keep the best test-loss weights at `out_path`; returns per-epoch losses."""
    torch.manual_seed(config.seed)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    datasets = {
        "train": CarlaFrames(data_dir, "train", augment=config.use_augmentation),
        "test": CarlaFrames(data_dir, "test"),
    }
    loaders = {
        phase: DataLoader(
            dataset,
            batch_size=config.batch_size,
            shuffle=True,
            num_workers=config.num_workers,
            generator=torch.Generator().manual_seed(config.seed),
        )
        for phase, dataset in datasets.items()
    }
    model: nn.Module
    if config.kind == "classifier":
        model = backbone = build_classifier(config.arch, config.base_width)
    else:
        regressor = build_regressor(config.arch, config.base_width)
        model, backbone = regressor, regressor.resnet
    if config.init:
        load_backbone_weights(backbone, config.init)
    model.to(config.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step_epochs, gamma=config.lr_gamma)

    history: list[dict[str, float]] = []
    best = math.inf
    for epoch in range(config.epochs):
        losses = {}
        for phase in ("train", "test"):
            model.train(phase == "train")
            total = 0.0
            for images, positions, cells in loaders[phase]:
                images, positions, cells = (t.to(config.device) for t in (images, positions, cells))
                with torch.set_grad_enabled(phase == "train"):
                    loss = _loss(config.kind, model, images, positions, cells)
                if phase == "train":
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                total += loss.item() * len(images)
            losses[phase] = total / len(datasets[phase])
        scheduler.step()
        history.append({"epoch": epoch, "train_loss": losses["train"], "test_loss": losses["test"]})
        log(f"epoch {epoch + 1}/{config.epochs}: train loss {losses['train']:.5g}, test loss {losses['test']:.5g}")
        if losses["test"] < best:
            best = losses["test"]
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            atomic_write(out_path, functools.partial(torch.save, state))
    summary = {"config": asdict(config), "history": history, "best_test_loss": best}
    atomic_write_json(out_path.with_suffix(".json"), summary)
    return history
