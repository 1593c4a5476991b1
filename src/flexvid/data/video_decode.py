"""Reading frames from video files (mp4/avi/webm/... via PyAV or imageio-ffmpeg, gif via Pillow),
turning uint8 frames into the model's (T, C, H, W) float tensors in [-1, 1], and the clip rules the
datasets share (which window a clip takes, videos shorter than a clip).

imageio-ffmpeg ships its own ffmpeg binary, so decoding works without system packages; PyAV is used
instead when it is installed (it decodes in-process, without starting a subprocess per clip).
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from flexvid.errors import DatasetError, VideoDecodeError
from flexvid.video_io import from_uint8

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".webm", ".mov", ".mkv", ".m4v"})
GIF_EXTENSIONS = frozenset({".gif"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg"})
BACKENDS = ("auto", "pyav", "ffmpeg")
SHORT_VIDEO_POLICIES = ("skip", "error")


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers by value ("frame_2" before "frame_10")."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def resolve_backend(backend: str = "auto") -> str:
    """The decoder to use: PyAV when installed (or asked for), else imageio-ffmpeg."""
    if backend not in BACKENDS:
        raise VideoDecodeError(f"Unknown video backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    if backend == "ffmpeg":
        return "ffmpeg"
    if importlib.util.find_spec("av") is None:
        if backend == "pyav":
            raise VideoDecodeError("The 'pyav' video backend needs PyAV; install it with `pip install av`.")
        return "ffmpeg"
    return "pyav"


def count_video_frames(path: str | Path, backend: str = "auto") -> int:
    """Number of frames in a video or gif, found without decoding the pictures where possible."""
    path = Path(path)
    try:
        if path.suffix.lower() in GIF_EXTENSIONS:
            from PIL import Image

            with Image.open(path) as image:
                return int(getattr(image, "n_frames", 1))
        if resolve_backend(backend) == "pyav":
            return _count_frames_pyav(path)
        import imageio_ffmpeg

        return int(imageio_ffmpeg.count_frames_and_secs(str(path))[0])
    except VideoDecodeError:
        raise
    except Exception as err:  # decoders raise many types; all mean "unreadable"
        raise VideoDecodeError(f"Cannot read video {path}: {_reason(err)}.") from err


def read_video_frames(
    path: str | Path, start: int = 0, count: int | None = None, stride: int = 1, backend: str = "auto"
) -> np.ndarray:
    """Frames start, start+stride, ... (`count` of them, or to the end) as uint8 (N, H, W, 3)."""
    path = Path(path)
    _check_selection(start, count, stride)
    try:
        if path.suffix.lower() in GIF_EXTENSIONS:
            frames = _select(_gif_frames(path), count, start, stride)
        elif resolve_backend(backend) == "pyav":
            frames = _select_pyav(path, count, start, stride)
        else:
            frames = _select(_ffmpeg_frames(path), count, start, stride)
    except VideoDecodeError:
        raise
    except Exception as err:
        raise VideoDecodeError(f"Cannot decode video {path}: {_reason(err)}.") from err
    if not frames or (count is not None and len(frames) < count):
        raise VideoDecodeError(
            f"Video {path} has too few frames: asked for {count or 1} from frame {start} with stride {stride}, "
            f"got {len(frames)}."
        )
    return np.stack(frames)


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames (T, H, W), (T, H, W, 1) or (T, H, W, 3) -> float32 (T, 3, H, W) in [-1, 1]."""
    frames = np.ascontiguousarray(frames)
    video = torch.from_numpy(frames if frames.flags.writeable else frames.copy())
    if video.ndim == 3:
        video = video.unsqueeze(-1)
    if video.shape[-1] == 1:
        video = video.expand(*video.shape[:-1], 3)
    return from_uint8(video.permute(0, 3, 1, 2))


def resize_center_crop(video: torch.Tensor, image_size: int) -> torch.Tensor:
    """Scale (T, C, H, W) so its shorter side is `image_size`, then crop the centre square."""
    height, width = video.shape[-2:]
    if height == image_size and width == image_size:
        return video
    scale = image_size / min(height, width)
    new_h, new_w = max(image_size, round(height * scale)), max(image_size, round(width * scale))
    if (new_h, new_w) != (height, width):
        video = F.interpolate(video, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_h - image_size) // 2, (new_w - image_size) // 2
    return video[..., top : top + image_size, left : left + image_size].clamp_(-1.0, 1.0)


def clip_start(num_frames: int, span: int, random_window: bool, rng: np.random.Generator | None) -> int:
    """First frame of a clip covering `span` frames: for training drawn from `rng` (a fresh unseeded
    generator when None), 0 for evaluation."""
    if not random_window or num_frames <= span:
        return 0
    return int((rng or np.random.default_rng()).integers(num_frames - span + 1))


def keep_long_enough(
    names: Sequence[str], lengths: Sequence[int], span: int, short_videos: str, where: str
) -> list[int]:
    """Positions of videos with at least `span` frames; shorter ones are skipped with a warning or,
    with short_videos="error", rejected."""
    if short_videos not in SHORT_VIDEO_POLICIES:
        raise DatasetError(f"short_videos must be one of {SHORT_VIDEO_POLICIES}, not {short_videos!r}.")
    short = [i for i, length in enumerate(lengths) if length < span]
    if short and short_videos == "error":
        first = short[0]
        raise DatasetError(
            f"Video {names[first]} in {where} has {lengths[first]} frames but a clip needs {span}; "
            "lower T (or the frame stride), or skip short videos with short_videos='skip'."
        )
    if short:
        listed = ", ".join(names[i] for i in short[:5]) + (", ..." if len(short) > 5 else "")
        warnings.warn(f"Skipping {len(short)} video(s) in {where} shorter than {span} frames: {listed}", stacklevel=3)
    kept = [i for i, length in enumerate(lengths) if length >= span]
    if names and not kept:
        raise DatasetError(
            f"No video in {where} has the {span} frames a clip needs (the longest has {max(lengths)}); "
            "lower T or the frame stride."
        )
    return kept


def _check_selection(start: int, count: int | None, stride: int) -> None:
    if start < 0 or stride < 1 or (count is not None and count < 1):
        raise VideoDecodeError(f"Invalid frame selection start={start}, count={count}, stride={stride}.")


def _select(frames, wanted: int | None, start: int, stride: int) -> list[np.ndarray]:
    """Pick every `stride`-th frame from `start` out of an iterator, stopping once `wanted` are kept."""
    kept: list[np.ndarray] = []
    try:
        for position, frame in enumerate(frames):
            if position >= start and (position - start) % stride == 0:
                kept.append(frame)
                if wanted is not None and len(kept) == wanted:
                    break
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
    return kept


def _ffmpeg_frames(path: Path):
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(reader)
    width, height = meta["size"]
    try:
        for raw in reader:
            yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
    finally:
        reader.close()


def _gif_frames(path: Path):
    from PIL import Image, ImageSequence

    with Image.open(path) as image:
        for frame in ImageSequence.Iterator(image):
            yield np.asarray(frame.convert("RGB"))


def _select_pyav(path: Path, wanted: int | None, start: int, stride: int) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = (frame.to_ndarray(format="rgb24") for frame in container.decode(stream))
        return _select(frames, wanted, start, stride)


def _count_frames_pyav(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size > 0)


def _reason(err: Exception) -> str:
    """A decoder's error in a few words: an OS or FFmpeg error's reason without the path (the message names it)."""
    strerror = getattr(err, "strerror", None)
    if isinstance(strerror, str):
        return strerror.rstrip(".")
    text = str(err).strip().splitlines()
    return (text[-1] if text else type(err).__name__).rstrip(".")
