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


class ModelInputError(FlexvidError):
    """The tensors given to the network have the wrong shapes."""


class FrameIndexError(FlexvidError):
    """Frame indices cannot be encoded by the network (out of the look-up table's range)."""


class TrainingDivergedError(FlexvidError):
    """The loss or the weights became NaN or infinite; training stopped without saving the broken weights."""


class VideoDecodeError(DatasetError):
    """A video file cannot be read, or holds fewer frames than were asked for."""


class DownloadError(DatasetError):
    """A download failed, stopped early, or does not match its checksum."""
