"""The FDM video network (per-frame U-Net with factorized temporal/spatial attention)."""

from flexvid.nn.unet import ModelInputError, UNetVideo
from flexvid.nn.rpe import FrameIndexError

__all__ = ["FrameIndexError", "ModelInputError", "UNetVideo"]
