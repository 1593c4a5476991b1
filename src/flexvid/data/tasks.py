"""FDM training tasks: which frames of a video an example observes and which it learns to generate.

A task is a pair of disjoint sorted index arrays `(observed, latent)` into a video of T frames with
at most K = max_frames frames in all. Three distributions:

- `fdm`: the paper's (Algorithm 2, as in the authors' code). Repeatedly draw a group of frames: a
  count n uniform in 1..K, a spacing s = exp(U * log(T / (n - 0.999))) with U ~ U[0, 1) (log-uniform
  from 1 to about T / (n - 1)), a start uniform in [0, T - s (n - 1)), and indices
  floor(start + i s) for i < n; indices already taken are dropped. The first group is latent; each
  later group is observed or latent with probability 1/2 (decided before it is drawn). Drawing stops
  at the first group whose new indices would take the total past K.
- `uniform`: an unstructured baseline: K distinct frames chosen uniformly at random, of which a
  number uniform in 0..K-1 (chosen at random) are observed and the rest latent.
- `autoregressive`: a window of K consecutive frames at a random start; the first K // 2 are
  observed, the remaining K - K // 2 latent (predict the next frames from the ones before).

`build_example` turns a task into a fixed-size training example of K frames, padding short tasks
with masked frames; `task_frames`, `draw_padding` and `assemble_example` are its steps, for callers
that load only the frames an example uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from flexvid.errors import ConfigError, DatasetError
from flexvid.frame_batch import FrameBatch

Task = tuple[np.ndarray, np.ndarray]  # (observed indices, latent indices), each sorted int64
MAX_TASK_REDRAWS = 1000  # observed_share: draws before a distribution is declared unable to comply


def draw_group(T: int, K: int, rng: np.random.Generator) -> np.ndarray:
    """One evenly spaced group of 1..K distinct frame indices in [0, T), spacing log-uniform."""
    while True:
        n = int(rng.integers(1, K + 1))
        spacing = math.exp(rng.random() * math.log(T / (n - 0.999)))
        start = rng.random() * (T - spacing * (n - 1))
        indices = np.floor(start + spacing * np.arange(n)).astype(np.int64)
        # Round-off can push an index out of range; the group is then drawn again.
        if indices[0] >= 0 and indices[-1] < T:
            return indices


def sample_fdm_task(T: int, K: int, rng: np.random.Generator) -> Task:
    """The paper's task distribution: groups of log-uniformly spaced frames, first one latent."""
    latent = set(draw_group(T, K, rng).tolist())
    observed: set[int] = set()
    # Once all K slots are used, later groups could only add nothing or stop the loop: stop now.
    while len(latent) + len(observed) < K:
        target = observed if rng.random() < 0.5 else latent
        new = [i for i in draw_group(T, K, rng).tolist() if i not in latent and i not in observed]
        if len(new) > K - len(latent) - len(observed):
            break
        target.update(new)
    return _sorted(observed), _sorted(latent)


def sample_uniform_task(T: int, K: int, rng: np.random.Generator) -> Task:
    """K distinct uniformly chosen frames, a uniformly chosen number (0..K-1) of them observed."""
    frames = rng.choice(T, size=K, replace=False)
    num_observed = int(rng.integers(0, K))
    return np.sort(frames[:num_observed]), np.sort(frames[num_observed:])


def sample_autoregressive_task(T: int, K: int, rng: np.random.Generator) -> Task:
    """K consecutive frames at a random start: the first K // 2 observed, the rest latent."""
    start = int(rng.integers(0, T - K + 1))
    window = np.arange(start, start + K, dtype=np.int64)
    return window[: K // 2], window[K // 2 :]


TASK_DISTRIBUTIONS: dict[str, Callable[[int, int, np.random.Generator], Task]] = {
    "fdm": sample_fdm_task,
    "uniform": sample_uniform_task,
    "autoregressive": sample_autoregressive_task,
}


def check_task_sizes(T: int, K: int) -> None:
    """Raise ConfigError when no task of at most K frames can be drawn from T frames."""
    if K < 1:
        raise ConfigError(f"max_frames must be at least 1, got {K}.")
    if K > T:
        raise ConfigError(f"max_frames (K={K}) is larger than the video length T={T}; lower --max_frames or raise --T.")


def check_observed_share(observed_share: float | None) -> None:
    """Raise ConfigError unless `observed_share` is None or a probability."""
    if observed_share is not None and not (0.0 <= observed_share <= 1.0):
        raise ConfigError(f"observed_share must lie in [0, 1] (or be unset), got {observed_share}.")


def sample_task(
    T: int, K: int, distribution: str, rng: np.random.Generator, observed_share: float | None = None
) -> Task:
    """Draw `(observed, latent)` frame indices for a video of T frames from the named distribution.

    `observed_share` None keeps the distribution as it is (the paper's `fdm` tasks have observed
    frames only 29% of the time at K=20). A number p instead makes a share p of the tasks
    conditional: they are redrawn until they have an observed frame; the other 1 - p are redrawn
    until they have none. More conditional tasks teach the network to use its observed frames sooner.
    """
    if distribution not in TASK_DISTRIBUTIONS:
        raise ConfigError(f"Unknown task distribution {distribution!r}; choose one of {', '.join(TASK_DISTRIBUTIONS)}.")
    check_task_sizes(T, K)
    check_observed_share(observed_share)
    draw = TASK_DISTRIBUTIONS[distribution]
    if observed_share is None or K == 1:
        return draw(T, K, rng)
    want_observed = bool(rng.random() < observed_share)
    for _ in range(MAX_TASK_REDRAWS):
        task = draw(T, K, rng)
        if (len(task[0]) > 0) == want_observed:
            return task
    kind = "with" if want_observed else "without"
    raise ConfigError(
        f"The {distribution!r} task distribution gave no task {kind} observed frames in {MAX_TASK_REDRAWS} "
        "draws; leave observed_share unset for it."
    )


def task_frames(task: Task, K: int) -> np.ndarray:
    """A task's frames (observed and latent together) in increasing order; at most K of them."""
    observed, latent = task
    chosen = np.sort(np.concatenate([observed, latent]))
    assert len(chosen) <= K, f"A task with {len(chosen)} frames does not fit in max_frames={K}"
    return chosen


def draw_padding(num_pad: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `num_pad` padding frames, uniform over a video of `length` frames (repeats allowed)."""
    return rng.integers(0, length, size=num_pad)


def assemble_example(frames: torch.Tensor, task: Task, pad_indices: np.ndarray) -> FrameBatch:
    """The one-row example from its K gathered frames: the task's frames in increasing index, then padding.

    `frames` holds the frames at `task_frames(task, K)` followed by the padding frames at `pad_indices`.
    """
    observed, latent = task
    chosen = np.sort(np.concatenate([observed, latent]))
    assert frames.shape[0] == len(chosen) + len(pad_indices), (
        f"An example got {frames.shape[0]} frames where its task and padding need {len(chosen) + len(pad_indices)}"
    )
    padding = np.zeros(len(pad_indices), dtype=bool)
    return FrameBatch.from_slots(
        frames[None],
        torch.from_numpy(np.concatenate([chosen, pad_indices]).astype(np.int64))[None],
        torch.from_numpy(np.concatenate([np.isin(chosen, observed), padding]))[None],
        torch.from_numpy(np.concatenate([np.isin(chosen, latent), padding]))[None],
    )


def build_example(
    video: torch.Tensor,
    task: Task,
    K: int,
    rng: np.random.Generator,
    pad_video: torch.Tensor | None = None,
) -> FrameBatch:
    """Gather a task's frames from a whole video into one training example of exactly K frames.

    The task's frames come first, in increasing frame index; the remaining slots are padding:
    frames of `pad_video` (another video, as the reference's `pad_with_random_frames`; `video`
    itself when None) at uniformly random indices. Padding has obs_mask = latent_mask = 0, so the
    network keeps it out of the real frames' attention; the loss (mask 1 - obs_mask) still counts it.
    Returns a one-row FrameBatch. (The training loader builds the same example loading only these frames.)
    """
    chosen = task_frames(task, K)
    if video.shape[0] < K:
        raise DatasetError(
            f"A video has {video.shape[0]} frames, fewer than max_frames={K}; use longer videos or lower --max_frames."
        )
    source = video if pad_video is None else pad_video
    pad_indices = draw_padding(K - len(chosen), source.shape[0], rng)
    frames = torch.cat([video[torch.from_numpy(chosen)], source[torch.from_numpy(pad_indices)]])
    return assemble_example(frames, task, pad_indices)


def _sorted(indices: set[int]) -> np.ndarray:
    return np.array(sorted(indices), dtype=np.int64)
