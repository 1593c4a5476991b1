"""The FDM video network (per-frame U-Net with factorized temporal/spatial attention)."""

from flexvid.nn.rpe import FrameIndexError
from flexvid.nn.unet import ModelInputError, UNetVideo

__all__ = ["FrameIndexError", "ModelInputError", "UNetVideo"]
