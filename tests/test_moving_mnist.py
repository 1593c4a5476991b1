"""Moving MNIST: generated videos, real digits, and the idx / mnist_test_seq.npy readers on files in
their true formats."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from flexvid.data.base import build_dataset, dataset_names, dataset_spec
from flexvid.data.mnist_digits import load_digits, read_idx_images, split_digits
from flexvid.data.moving_mnist import bouncing_trajectories, render_video
from flexvid.errors import DatasetError


def write_idx_images(path, images: np.ndarray, magic: int = 2051, truncate: int = 0) -> None:
    """Write uint8 (N, rows, cols) images in the MNIST idx3-ubyte format (gzipped when the name ends in .gz)."""
    header = np.array([magic, *images.shape], dtype=">u4").tobytes()
    payload = (header + images.astype(np.uint8).tobytes())[: -truncate or None]
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as handle:
        handle.write(payload)


def random_digits(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 28, 28), dtype=np.uint8)


def test_registered_without_data_dir():
    assert "moving_mnist" in dataset_names()
    spec = dataset_spec("moving_mnist")
    assert not spec.needs_data_dir
    video, info = build_dataset("moving_mnist", "test")[0]
    assert video.shape == (spec.default_T, 1, spec.default_image_size, spec.default_image_size)
    assert info["index"] == 0


@pytest.mark.parametrize("image_size,channels", [(32, 1), (64, 3), (16, 1)])
def test_shape_range_and_channels(image_size, channels):
    dataset = build_dataset("moving_mnist", "test", T=12, image_size=image_size, channels=channels)
    video, _ = dataset[3]
    assert dataset.channels == channels
    assert video.shape == (12, channels, image_size, image_size)
    assert video.dtype == torch.float32
    assert video.min() == -1.0 and video.max() <= 1.0
    assert (video > 0).flatten(1).any(dim=1).all()  # every frame shows digit strokes
    assert torch.equal(video, video[:, :1].expand_as(video))  # extra channels repeat the gray one


def test_test_split_is_fixed_and_train_split_is_seeded():
    first = build_dataset("moving_mnist", "test", T=8, image_size=32)
    again = build_dataset("moving_mnist", "test", T=8, image_size=32)
    assert torch.equal(first[5][0], again[5][0])
    assert not torch.equal(first[5][0], first[6][0])

    train = build_dataset("moving_mnist", "train", T=8, image_size=32, seed=1)
    assert train.infinite
    assert torch.equal(train[7][0], build_dataset("moving_mnist", "train", T=8, image_size=32, seed=1)[7][0])
    assert not torch.equal(train[7][0], build_dataset("moving_mnist", "train", T=8, image_size=32, seed=2)[7][0])
    before = train[7][0]
    train.set_epoch(1)
    assert not torch.equal(before, train[7][0])
    assert train[len(train) + 3][0].shape == before.shape  # generated data: any index is a video
    with pytest.raises(IndexError):
        first[len(first)]


def test_long_videos_bounce_and_stay_on_the_canvas():
    rng = np.random.default_rng(0)
    path = bouncing_trajectories(rng, num_digits=3, length=300)
    assert path.min() >= 0.0 and path.max() <= 1.0
    steps = np.linalg.norm(np.diff(path, axis=0), axis=-1)
    interior = (path[:-1] > 0).all(-1) & (path[:-1] < 1).all(-1) & (path[1:] > 0).all(-1) & (path[1:] < 1).all(-1)
    assert np.allclose(steps[interior], 0.1)  # 0.1 of the free range per frame away from the walls
    assert steps.max() <= 0.1 + 1e-9
    for coordinate in range(2):  # the digits hit both walls of each axis within 300 frames
        assert (path[..., coordinate] == 0.0).any() and (path[..., coordinate] == 1.0).any()

    digit = load_digits("test")[:1]
    video = render_video(digit, path[:, :1])
    assert video.shape == (300, 64, 64)
    # The whole digit is visible in every frame: nothing is cut off at the borders.
    assert (video.reshape(300, -1).astype(np.int64).sum(1) == int(digit.astype(np.int64).sum())).all()


def test_digits_composite_with_max():
    digits = np.zeros((2, 28, 28), dtype=np.uint8)
    digits[0, :, :14], digits[1, :, :] = 200, 100
    still = np.full((1, 2, 2), 0.5)  # both digits on the same spot
    frame = render_video(digits, still)[0]
    assert frame.max() == 200 and (frame == 100).sum() == 28 * 14 and (frame == 200).sum() == 28 * 14


def test_builtin_digits_are_real_mnist_and_split():
    train, test = load_digits("train"), load_digits("test")
    assert train.shape == (4000, 28, 28) and test.shape == (1000, 28, 28)
    assert train.dtype == np.uint8 and train.max() == 255
    # MNIST statistics: about 13% mean intensity, ink in every digit, empty borders.
    assert 0.08 < train.mean() / 255 < 0.2
    assert (train.reshape(len(train), -1) > 128).sum(1).min() >= 20
    assert train[:, 0, :].max() == 0
    assert not set(map(bytes, train[:200])) & set(map(bytes, test))


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"])
def test_idx_file_reader(tmp_path, name):
    images = random_digits(10)
    write_idx_images(tmp_path / name, images)
    assert np.array_equal(read_idx_images(tmp_path / name), images)
    assert np.array_equal(load_digits("test", tmp_path / name), split_digits(images, "test"))
    assert len(load_digits("train", tmp_path / name)) == 8


def test_idx_directory_gives_each_split_its_file(tmp_path):
    write_idx_images(tmp_path / "train-images-idx3-ubyte.gz", random_digits(6, seed=1))
    write_idx_images(tmp_path / "t10k-images-idx3-ubyte", random_digits(3, seed=2))
    assert np.array_equal(load_digits("train", tmp_path), random_digits(6, seed=1))
    assert np.array_equal(load_digits("test", tmp_path), random_digits(3, seed=2))
    video, _ = build_dataset("moving_mnist", "test", T=4, image_size=32, digits_path=tmp_path)[0]
    assert video.shape == (4, 1, 32, 32)


def test_bad_idx_files(tmp_path):
    write_idx_images(tmp_path / "short", random_digits(4), truncate=100)
    with pytest.raises(DatasetError, match="truncated"):
        read_idx_images(tmp_path / "short")
    write_idx_images(tmp_path / "labels", random_digits(4), magic=2049)
    with pytest.raises(DatasetError, match="not an MNIST idx images file"):
        read_idx_images(tmp_path / "labels")
    with pytest.raises(DatasetError, match="No t10k-images-idx3-ubyte"):
        load_digits("test", tmp_path)


def test_missing_digits_path_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        build_dataset("moving_mnist", "train", digits_path=tmp_path / "nope.gz")


def test_mnist_test_seq_file(tmp_path):
    sequences = np.random.default_rng(0).integers(0, 256, size=(20, 3, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "mnist_test_seq.npy", sequences)
    dataset = build_dataset("moving_mnist", "test", T=10, image_size=64, sequence_path=tmp_path / "mnist_test_seq.npy")
    assert len(dataset) == 3
    video, info = dataset[1]
    assert info["index"] == 1 and video.shape == (10, 1, 64, 64)
    assert torch.allclose((video[:, 0] + 1) * 127.5, torch.from_numpy(sequences[:10, 1]).float(), atol=1e-3)
    small, _ = build_dataset(
        "moving_mnist", "test", T=10, image_size=32, sequence_path=tmp_path / "mnist_test_seq.npy"
    )[1]
    expected = torch.from_numpy(sequences[:10, 1]).float().reshape(10, 32, 2, 32, 2).mean((2, 4)) / 127.5 - 1
    assert torch.allclose(small[:, 0], expected, atol=1e-5)
    # The train split stays generated.
    assert build_dataset("moving_mnist", "train", T=10, sequence_path=tmp_path / "mnist_test_seq.npy").infinite


def test_bad_sequence_files(tmp_path):
    np.save(tmp_path / "seq.npy", np.zeros((20, 2, 64, 64), dtype=np.uint8))
    with pytest.raises(DatasetError, match="fewer than T=30"):
        build_dataset("moving_mnist", "test", T=30, sequence_path=tmp_path / "seq.npy")
    np.save(tmp_path / "float.npy", np.zeros((20, 2, 64, 64), dtype=np.float32))
    with pytest.raises(DatasetError, match="expected uint8"):
        build_dataset("moving_mnist", "test", T=10, sequence_path=tmp_path / "float.npy")
    with pytest.raises(DatasetError, match="does not exist"):
        build_dataset("moving_mnist", "test", T=10, sequence_path=tmp_path / "missing.npy")


def test_bad_options():
    with pytest.raises(DatasetError, match="channels must be 1"):
        build_dataset("moving_mnist", "test", channels=2)
    with pytest.raises(DatasetError, match="Unknown split"):
        build_dataset("moving_mnist", "valid")
    with pytest.raises(DatasetError, match="num_digits"):
        build_dataset("moving_mnist", "test", num_digits=0)


# Unsorted, repeated, and including the first and last frame: the loader asks for such sets.
CLIP_FRAMES = [11, 0, 5, 5, 2, 9]


@pytest.mark.parametrize("split,image_size,channels", [("train", 16, 1), ("test", 64, 3), ("train", 80, 1)])
def test_clip_renders_exactly_the_chosen_frames(split, image_size, channels):
    dataset = build_dataset("moving_mnist", split, T=12, image_size=image_size, channels=channels, seed=4)
    for index in (0, 7):
        frames, info = dataset.clip(index, CLIP_FRAMES)
        assert torch.equal(frames, dataset[index][0][CLIP_FRAMES])
        assert info == {"index": index}
    single, _ = dataset.clip(3, [4])
    assert torch.equal(single, dataset[3][0][4:5])


def test_clip_of_mnist_test_seq_matches_slicing(tmp_path):
    np.save(tmp_path / "seq.npy", np.random.default_rng(1).integers(0, 256, size=(14, 2, 64, 64), dtype=np.uint8))
    dataset = build_dataset("moving_mnist", "test", T=12, image_size=32, sequence_path=tmp_path / "seq.npy")
    frames, info = dataset.clip(1, CLIP_FRAMES)
    assert torch.equal(frames, dataset[1][0][CLIP_FRAMES]) and info["index"] == 1
    with pytest.raises(DatasetError, match=r"must lie in 0\.\.11"):
        dataset.clip(1, [3, 12])  # frame 12 exists in the file but not in a T=12 item
    with pytest.raises(DatasetError, match="non-empty 1-D"):
        dataset.clip(0, [])
