"""FDM training tasks (against the reference sampler's statistics) and the sharded, resumable training loader."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from flexvid.data.base import VideoDataset, build_dataset
from flexvid.data.loader import (
    StepBatchSampler,
    TrainingExamples,
    collate_examples,
    make_train_loader,
)
from flexvid.data.tasks import build_example, draw_group, sample_task
from flexvid.errors import ConfigError, DatasetError
from flexvid.frame_batch import FrameBatch

NUM_DRAWS = 20_000


def row(example: FrameBatch) -> dict[str, torch.Tensor]:
    """A one-row FrameBatch as the fields of its row: frames (K, C, H, W), frame_indices (K,), masks (K, 1, 1, 1)."""
    return {
        "frames": example.x0[0],
        "frame_indices": example.frame_indices[0],
        "obs_mask": example.obs_mask[0],
        "latent_mask": example.latent_mask[0],
    }


def flat(batch: dict) -> dict[str, torch.Tensor]:
    """A loader batch as plain tensors: the FrameBatch's fields and the example numbers."""
    frames = batch["frames"]
    return {
        "x0": frames.x0,
        "frame_indices": frames.frame_indices,
        "obs_mask": frames.obs_mask,
        "latent_mask": frames.latent_mask,
        "example_id": batch["example_id"],
    }


def task_statistics(T: int, K: int, draws: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Per-draw observed count, latent count and span of our `fdm` sampler."""
    rng = np.random.default_rng(seed)
    observed, latent, span = np.zeros(draws), np.zeros(draws), np.zeros(draws)
    for i in range(draws):
        obs, lat = sample_task(T, K, "fdm", rng)
        frames = np.concatenate([obs, lat])
        observed[i], latent[i], span[i] = len(obs), len(lat), frames.max() - frames.min()
    return {"observed": observed, "latent": latent, "span": span}


def test_fdm_tasks_match_reference_statistics(reference_dir):
    rows = [json.loads(line) for line in (reference_dir / "training_task_stats.jsonl").read_text().splitlines() if line]
    assert rows
    for ref in rows:
        T, K = ref["T"], ref["K"]
        draws = task_statistics(T, K, NUM_DRAWS)
        total = draws["observed"] + draws["latent"]
        per_draw = {
            "mean_obs": draws["observed"],
            "mean_latent": draws["latent"],
            "frac_zero_obs": (draws["observed"] == 0).astype(float),
            "mean_total": total,
            "frac_total_eq_K": (total == K).astype(float),
            "mean_span": draws["span"],
        }
        for key, values in per_draw.items():
            ours = values.mean()
            # Both figures are Monte Carlo estimates: allow 4 standard errors of their difference,
            # and never more than a few percent.
            tolerance = 4 * values.std() * np.sqrt(1 / NUM_DRAWS + 1 / ref["N"])
            assert abs(ours - ref[key]) <= tolerance, (T, K, key, ours, ref[key])
            assert abs(ours - ref[key]) <= 0.06 * ref[key], (T, K, key, ours, ref[key])
        assert abs(np.median(draws["span"]) - ref["median_span"]) <= 0.05 * ref["median_span"]
        assert total.max() == ref["max_total"] == K


@pytest.mark.parametrize("distribution", ["fdm", "uniform", "autoregressive"])
def test_tasks_are_valid(distribution):
    rng = np.random.default_rng(1)
    T, K = 40, 10
    for _ in range(300):
        observed, latent = sample_task(T, K, distribution, rng)
        frames = np.concatenate([observed, latent])
        assert len(latent) >= 1 and len(frames) <= K
        assert len(set(frames.tolist())) == len(frames)
        assert frames.min() >= 0 and frames.max() < T
        assert np.all(np.diff(observed) > 0) and np.all(np.diff(latent) > 0)


def test_fdm_groups_are_evenly_spaced_and_cover_all_scales():
    rng = np.random.default_rng(2)
    spacings = []
    for _ in range(2000):
        group = draw_group(300, 20, rng)
        if len(group) > 2:
            gaps = np.diff(group)
            assert gaps.max() - gaps.min() <= 1  # floor(start + i * spacing)
            spacings.append(gaps.mean())
    spacings = np.array(spacings)
    assert spacings.min() < 2 and spacings.max() > 50  # log-uniform: dense and sparse groups


def test_fdm_short_video_where_k_equals_t_terminates():
    rng = np.random.default_rng(3)
    for _ in range(500):
        observed, latent = sample_task(8, 8, "fdm", rng)
        assert len(observed) + len(latent) <= 8


def test_uniform_and_autoregressive_tasks():
    rng = np.random.default_rng(4)
    counts = []
    for _ in range(2000):
        observed, latent = sample_task(50, 10, "uniform", rng)
        assert len(observed) + len(latent) == 10
        counts.append(len(observed))
    assert set(counts) == set(range(10)) and abs(np.mean(counts) - 4.5) < 0.3

    starts = set()
    for _ in range(200):
        observed, latent = sample_task(30, 10, "autoregressive", rng)
        assert np.array_equal(np.concatenate([observed, latent]), np.arange(observed[0], observed[0] + 10))
        assert len(observed) == 5 and len(latent) == 5
        starts.add(int(observed[0]))
    assert min(starts) == 0 and max(starts) == 20


def test_example_padding_comes_from_the_other_video_and_is_masked():
    T, K = 30, 12
    video = torch.arange(T, dtype=torch.float32).view(T, 1, 1, 1).expand(T, 1, 2, 2)
    pad_video = -1 - video
    task = (np.array([3, 20]), np.array([4, 5, 6]))
    example = row(build_example(video, task, K, np.random.default_rng(0), pad_video=pad_video))
    assert example["frames"].shape == (K, 1, 2, 2)
    assert example["frame_indices"].dtype == torch.int64
    assert example["frame_indices"][:5].tolist() == [3, 4, 5, 6, 20]
    assert example["obs_mask"].view(-1).tolist() == [1, 0, 0, 0, 1] + [0] * 7
    assert example["latent_mask"].view(-1).tolist() == [0, 1, 1, 1, 0] + [0] * 7
    values = example["frames"][:, 0, 0, 0]
    assert torch.equal(values[:5], example["frame_indices"][:5].float())
    assert torch.equal(values[5:], -1 - example["frame_indices"][5:].float())  # padding: the other video
    assert (example["frame_indices"] < T).all() and (example["frame_indices"] >= 0).all()
    same_video = row(build_example(video, task, K, np.random.default_rng(0)))  # no second video: pad from itself
    assert torch.equal(same_video["frames"][:, 0, 0, 0], same_video["frame_indices"].float())
    assert same_video["obs_mask"][5:].sum() == same_video["latent_mask"][5:].sum() == 0


def test_task_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="larger than the video length"):
        sample_task(10, 20, "fdm", rng)
    with pytest.raises(ConfigError, match="Unknown task distribution"):
        sample_task(10, 5, "random", rng)
    with pytest.raises(DatasetError, match="fewer than max_frames"):
        build_example(torch.zeros(6, 1, 2, 2), (np.array([0]), np.array([1])), 8, rng)


@pytest.fixture(scope="module")
def train_set():
    return build_dataset("moving_mnist", "train", T=24, image_size=16, seed=0)


def batches(loader, count):
    iterator = iter(loader)
    return [flat(next(iterator)) for _ in range(count)]


def test_loader_batches(train_set):
    (batch,) = batches(make_train_loader(train_set, global_batch_size=3, max_frames=8), 1)
    assert batch["x0"].shape == (3, 8, 1, 16, 16)
    assert batch["frame_indices"].shape == (3, 8) and batch["frame_indices"].dtype == torch.int64
    assert batch["obs_mask"].shape == batch["latent_mask"].shape == (3, 8, 1, 1, 1)
    assert batch["example_id"].tolist() == [0, 1, 2]
    assert ((batch["obs_mask"] + batch["latent_mask"]) <= 1).all()
    assert (batch["latent_mask"].sum((1, 2, 3, 4)) >= 1).all()
    assert batch["x0"].min() >= -1 and batch["x0"].max() <= 1


def test_loader_shards_and_resumes_exactly(train_set):
    kwargs = dict(max_frames=8, seed=5)
    single = batches(make_train_loader(train_set, global_batch_size=4, **kwargs), 3)
    ranks = [
        batches(make_train_loader(train_set, global_batch_size=4, rank=r, world_size=2, **kwargs), 3) for r in (0, 1)
    ]
    for step in range(3):
        for key in single[step]:
            assert torch.equal(single[step][key], torch.cat([ranks[0][step][key], ranks[1][step][key]]))
    resumed = batches(make_train_loader(train_set, global_batch_size=4, start_step=2, **kwargs), 1)[0]
    for key in resumed:
        assert torch.equal(resumed[key], single[2][key])
    other_seed = batches(make_train_loader(train_set, global_batch_size=4, max_frames=8, seed=6), 1)[0]
    assert not torch.equal(other_seed["x0"], single[0]["x0"])


def test_loader_workers_give_the_same_stream(train_set):
    kwargs = dict(global_batch_size=2, max_frames=8, seed=1)
    in_process = batches(make_train_loader(train_set, **kwargs), 2)
    with_worker = batches(make_train_loader(train_set, num_workers=1, **kwargs), 2)
    for a, b in zip(in_process, with_worker, strict=True):
        assert all(torch.equal(a[key], b[key]) for key in a)


def test_finite_dataset_epochs_visit_every_video_once(tmp_path):
    np.save(tmp_path / "seq.npy", np.random.default_rng(0).integers(0, 256, (20, 5, 64, 64), dtype=np.uint8))
    finite = build_dataset("moving_mnist", "test", T=20, image_size=16, sequence_path=tmp_path / "seq.npy")
    examples = TrainingExamples(finite, 6, seed=3)
    epoch0 = [examples.video_index(g) for g in range(5)]
    epoch1 = [examples.video_index(g) for g in range(5, 10)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(5)) and epoch0 != epoch1
    rng = np.random.default_rng(0)
    assert all(examples.pad_video_index(g, rng) != examples.video_index(g) for g in range(20))
    batch = flat(collate_examples([examples[g] for g in range(4)]))
    assert batch["x0"].shape == (4, 6, 1, 16, 16)


def whole_clip_example(examples: TrainingExamples, g: int) -> dict[str, torch.Tensor]:
    """Example g built the straightforward way: load whole clips, then pick the task's frames."""
    dataset = examples.dataset
    rng = examples.example_rng(g)
    video = dataset.item(examples.video_index(g), examples.window_rng(g, 0))[0]
    task = sample_task(video.shape[0], examples.max_frames, examples.distribution, rng)
    pad_video = None
    if examples.pad_with_random_frames and len(task[0]) + len(task[1]) < examples.max_frames:
        pad_index = examples.pad_video_index(g, rng)
        pad_video = dataset.item(pad_index, examples.window_rng(g, 1))[0]
    return build_example(video, task, examples.max_frames, rng, pad_video=pad_video)


@pytest.mark.parametrize("distribution", ["fdm", "uniform", "autoregressive"])
@pytest.mark.parametrize("pad_with_random_frames", [True, False])
def test_examples_load_only_their_frames_yet_equal_whole_clip_examples(
    tmp_path, train_set, distribution, pad_with_random_frames
):
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        for n in range(3):  # 40-frame videos, 16-frame random training windows
            noise = np.random.default_rng(n).integers(0, 256, (40, 12, 12, 3), dtype=np.uint8)
            np.save(tmp_path / split / f"{n}.npy", noise)
    windows = build_dataset("mazes", "train", T=16, image_size=8, data_dir=tmp_path)
    for dataset in (windows, train_set):
        examples = TrainingExamples(
            dataset, 6, distribution=distribution, seed=2, pad_with_random_frames=pad_with_random_frames
        )
        for g in range(6):
            expected, item = row(whole_clip_example(examples, g)), row(examples[g]["frames"])
            assert all(torch.equal(item[key], expected[key]) for key in expected), (type(dataset).__name__, g)


class InMemoryVideos(VideoDataset):
    """A user's dataset that implements only the basic interface (no frame-selective `clip`)."""

    name, T, channels = "in_memory", 10, 1

    def __init__(self, lengths: list[int]) -> None:
        # pixel value = video number + frame number
        self.videos = [v + torch.arange(n).float().view(n, 1, 1, 1).expand(n, 1, 2, 2) for v, n in enumerate(lengths)]

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int):
        return self.videos[index], {"index": index, "frame_indices": torch.arange(len(self.videos[index]))}


def test_datasets_without_their_own_clip_fall_back_to_whole_items():
    dataset = InMemoryVideos([10, 10, 10])
    frames, info = dataset.clip(2, [9, 1, 1])
    assert frames.view(-1, 4)[:, 0].tolist() == [11.0, 3.0, 3.0] and info["frame_indices"].tolist() == [9, 1, 1]
    item = row(TrainingExamples(dataset, 4, seed=0)[1]["frames"])
    real = item["obs_mask"].view(-1) + item["latent_mask"].view(-1) > 0
    video = float(item["frames"][0, 0, 0, 0] - item["frame_indices"][0])  # which video the task used
    assert torch.equal(item["frames"][real, 0, 0, 0], video + item["frame_indices"][real].float())
    short_second = TrainingExamples(InMemoryVideos([10, 7]), 4, seed=0, pad_with_random_frames=False)
    with pytest.raises(DatasetError, match="Item 1 of dataset 'in_memory' has 7 frames, but the dataset's T is 10"):
        [short_second[g] for g in range(2)]  # the first epoch visits both videos


def test_loader_errors(train_set, tmp_path):
    with pytest.raises(ConfigError, match="not divisible"):
        make_train_loader(train_set, global_batch_size=3, max_frames=8, world_size=2)
    with pytest.raises(ConfigError, match="larger than the video length"):
        make_train_loader(train_set, global_batch_size=2, max_frames=30)
    with pytest.raises(ConfigError, match="Unknown task distribution"):
        make_train_loader(train_set, global_batch_size=2, max_frames=8, distribution="fancy")
    with pytest.raises(ConfigError, match="rank 2"):
        StepBatchSampler(4, rank=2, world_size=2)
    # A dataset whose videos are shorter than max_frames (T below K) is refused before training.
    np.save(tmp_path / "seq.npy", np.zeros((6, 2, 64, 64), dtype=np.uint8))
    short = build_dataset("moving_mnist", "test", T=6, sequence_path=tmp_path / "seq.npy")
    with pytest.raises(ConfigError, match="max_frames \\(K=8\\) is larger than the video length T=6"):
        TrainingExamples(short, 8)


def seed_global_rngs(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def global_draws() -> tuple[float, float, float]:
    """One draw from each global RNG: torch's, NumPy's and Python's."""
    return float(torch.rand(1)), float(np.random.rand()), random.random()


def test_examples_are_seeded_per_example_and_leave_the_global_rngs_alone(tmp_path):
    (tmp_path / "train").mkdir()
    for n in range(2):  # 40-frame videos, 16-frame random training windows
        np.save(
            tmp_path / "train" / f"{n}.npy", np.random.default_rng(n).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
        )
    examples = TrainingExamples(build_dataset("mazes", "train", T=16, image_size=8, data_dir=tmp_path), 6, seed=1)
    seed_global_rngs(0)
    expected_next = global_draws()
    seed_global_rngs(0)
    first = [row(examples[g]["frames"]) for g in range(4)]
    assert global_draws() == expected_next  # loading drew nothing from the global RNGs
    seed_global_rngs(5)  # nor does it depend on them
    again = [row(examples[g]["frames"]) for g in range(4)]
    assert all(torch.equal(a[key], b[key]) for a, b in zip(first, again, strict=True) for key in a)


def test_observed_share_sets_the_share_of_conditional_tasks() -> None:
    from flexvid.data.tasks import sample_task

    rng = np.random.default_rng(0)
    natural = [sample_task(40, 8, "fdm", rng) for _ in range(2000)]
    shared = [sample_task(40, 8, "fdm", rng, observed_share=0.9) for _ in range(2000)]
    natural_share = np.mean([len(obs) > 0 for obs, _ in natural])
    share = np.mean([len(obs) > 0 for obs, _ in shared])
    assert natural_share < 0.5
    assert abs(share - 0.9) < 0.03
    # Every task is still a valid FDM task: disjoint, at most K frames, at least one latent frame.
    for obs, latent in shared:
        assert len(latent) >= 1 and len(obs) + len(latent) <= 8 and not set(obs) & set(latent)
    assert all(len(obs) == 0 for obs, _ in (sample_task(40, 8, "fdm", rng, observed_share=0.0) for _ in range(200)))


def test_observed_share_must_be_a_probability() -> None:
    from flexvid.data.tasks import sample_task

    with pytest.raises(ConfigError, match="observed_share"):
        sample_task(40, 8, "fdm", np.random.default_rng(0), observed_share=1.5)
    # The autoregressive distribution always observes frames, so it cannot give unconditional tasks.
    with pytest.raises(ConfigError, match="observed_share"):
        sample_task(40, 8, "autoregressive", np.random.default_rng(0), observed_share=0.0)
