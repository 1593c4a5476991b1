"""The exceptions flexvid raises for bad input: each carries one sentence for the user.

They subclass ValueError so library users can catch them generically; the CLI prints them
without a traceback.
"""


class FlexvidError(ValueError):
    """Base class: something the user gave us is wrong, and the message says how to fix it."""


class ConfigError(FlexvidError):
    """A configuration value is invalid or inconsistent."""


class CheckpointError(FlexvidError):
    """A checkpoint file is missing, corrupt, of an unknown format, or does not match its config."""


class DatasetError(FlexvidError):
    """A dataset is missing, empty, or holds data of the wrong shape or type."""


class SchemeError(FlexvidError):
    """A sampling scheme cannot work with the given parameters or is invalid."""


class WeightsError(FlexvidError):
    """Pretrained evaluation weights (I3D, LPIPS, CARLA regressor) are missing or wrong."""


class DirectoryInUseError(FlexvidError):
    """Another flexvid process holds the lock on a run or evaluation directory."""
