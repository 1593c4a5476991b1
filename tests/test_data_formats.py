"""Datasets on small files in their true on-disk formats: CARLA (.pt + csv), numbered .npy splits
(GQN-Mazes / MineRL), CWVAE zips of mp4 converted by `flexvid data`, and folders of the user's videos."""

from __future__ import annotations

import json
import os
import zipfile

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from flexvid.cli.main import main as flexvid_main
from flexvid.data.base import build_dataset, dataset_names, dataset_spec
from flexvid.data.contact_sheet import contact_sheet
from flexvid.data.download import MARKER_FILE
from flexvid.data.prepare import write_carla_splits
from flexvid.data.video_decode import VideoDecodeError, count_video_frames, read_video_frames
from flexvid.errors import DatasetError

SIZE = 16


def ramp_video(num_frames: int, seed: int, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    """uint8 (T, H, W, 3) whose frames are flat colours that change with t: easy to check after resizing
    and after lossy video coding."""
    video = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        video[t] = (20 * t + 5 * seed) % 200 + 20, 200 - 15 * t % 180, 60 + 10 * seed
    return video


def to_model_range(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


def write_mp4(path, frames: np.ndarray) -> None:
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (frames.shape[2], frames.shape[1]),
        fps=8,
        codec="libx264",
        macro_block_size=1,
        output_params=["-qp", "0"],
        ffmpeg_log_level="error",
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


# ---------------------------------------------------------------- registry


def test_registry_has_paper_defaults():
    names = dataset_names()
    for name in ("carla_no_traffic", "minerl", "mazes", "mazes_cwvae", "folder"):
        assert name in names
    defaults = {n: (dataset_spec(n).default_T, dataset_spec(n).default_image_size) for n in names}
    assert defaults["carla_no_traffic"] == (1000, 128)
    assert defaults["minerl"] == (500, 64)
    assert defaults["mazes"] == defaults["mazes_cwvae"] == (300, 64)
    with pytest.raises(DatasetError, match="needs --data_dir"):
        build_dataset("folder")


# ---------------------------------------------------------------- CARLA


def write_carla(directory, numbers=(0, 1, 2, 10, 11), frames=8):
    directory.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        torch.save(torch.from_numpy(ramp_video(frames, n)), directory / f"video_{n}.pt")
        np.save(directory / f"coords_{n}.npy", np.arange(frames * 3, dtype=np.float64).reshape(frames, 3) + 100 * n)
        np.save(directory / f"actions_{n}.npy", np.full((frames, 2), n, np.float32))
    return directory


def test_carla_split_files_number_videos_numerically(tmp_path):
    carla = write_carla(tmp_path / "carla")
    assert write_carla_splits(carla, num_test=2) == (3, 2)
    train = (carla / "video_train.csv").read_text().splitlines()
    test = (carla / "video_test.csv").read_text().splitlines()
    assert train == [",path", "0,video_0.pt", "1,video_1.pt", "2,video_2.pt"]
    assert test == [",path", "3,video_10.pt", "4,video_11.pt"]  # 10 and 11 are the highest numbers
    with pytest.raises(DatasetError, match="test split alone takes 5"):
        write_carla_splits(carla, num_test=5)


def test_carla_items_windows_and_coords(tmp_path):
    carla = write_carla(tmp_path / "carla")
    write_carla_splits(carla, num_test=2)
    train = build_dataset("carla_no_traffic", "train", T=4, image_size=SIZE, data_dir=carla)
    assert len(train) == 3
    for index in range(3):
        video, info = train[index]
        start = int(info["frame_indices"][0])
        assert video.shape == (4, 3, SIZE, SIZE) and video.dtype == torch.float32
        number = int(info["path"].rsplit("_", 1)[1][:-3])
        torch.testing.assert_close(video, to_model_range(ramp_video(8, number)[start : start + 4]))
        assert info["coords"].shape == (4, 3)
        assert float(info["coords"][0, 0]) == 100 * number + 3 * start
        assert info["actions"].shape == (4, 2)

    test = build_dataset("carla_no_traffic", "test", T=4, image_size=8, data_dir=carla)
    video, info = test[1]
    assert video.shape == (4, 3, 8, 8)
    assert info["frame_indices"].tolist() == [0, 1, 2, 3]  # evaluation clips start at the first frame
    assert info["path"].endswith("video_11.pt")


def test_carla_random_windows_vary(tmp_path):
    carla = write_carla(tmp_path / "carla", numbers=(0, 1), frames=30)
    write_carla_splits(carla, num_test=1)
    train = build_dataset("carla_no_traffic", "train", T=4, image_size=SIZE, data_dir=carla)
    rng = np.random.default_rng(0)
    starts = {int(train.item(0, rng)[1]["frame_indices"][0]) for _ in range(20)}
    assert len(starts) > 3 and max(starts) <= 26


def test_carla_errors(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="flexvid data carla --download"):
        build_dataset("carla_no_traffic", data_dir=missing)
    carla = write_carla(tmp_path / "carla", numbers=(0, 1, 2))
    with pytest.raises(DatasetError, match="flexvid data carla --split"):
        build_dataset("carla_no_traffic", data_dir=carla)
    write_carla_splits(carla, num_test=1)
    with pytest.raises(DatasetError, match="has 8 frames but a clip needs 9"):
        build_dataset("carla_no_traffic", T=9, image_size=SIZE, data_dir=carla, short_videos="error")
    with pytest.warns(UserWarning, match="Skipping 2 video"), pytest.raises(DatasetError, match="longest has 8"):
        build_dataset("carla_no_traffic", T=9, image_size=SIZE, data_dir=carla)
    torch.save(torch.zeros(8, SIZE, SIZE, 3), carla / "video_1.pt")  # float, not uint8
    with pytest.raises(DatasetError, match="video_1.pt holds a torch.float32 tensor"):
        build_dataset("carla_no_traffic", T=4, image_size=SIZE, data_dir=carla)
    (carla / "video_train.csv").write_text(",path\n")
    with pytest.raises(DatasetError, match="lists no videos"):
        build_dataset("carla_no_traffic", T=4, image_size=SIZE, data_dir=carla)


def test_carla_split_command(tmp_path, capsys):
    carla = write_carla(tmp_path / "carla", numbers=(3, 4, 5))
    with pytest.raises(SystemExit) as exit_info:
        flexvid_main(["data", "carla", "--split", str(carla), "--num_test", "1"])
    assert exit_info.value.code == 0
    assert (carla / "video_test.csv").read_text().splitlines() == [",path", "2,video_5.pt"]
    assert "2 videos" in capsys.readouterr().out


# Unsorted, repeated, first and last frame of a T=6 clip: the kind of set the training loader asks for.
CLIP_FRAMES = [5, 0, 3, 3, 1]


def assert_clip_matches_item(dataset, index, seed=0):
    """clip(index, CLIP_FRAMES) equals item `index` sliced, with the same random window (drawn from an rng
    seeded with `seed`) and per-frame info."""
    video, info = dataset.item(index, np.random.default_rng(seed))
    frames, clip_info = dataset.clip(index, CLIP_FRAMES, np.random.default_rng(seed))
    assert torch.equal(frames, video[CLIP_FRAMES])
    assert clip_info.keys() == info.keys()
    for key, value in info.items():
        expected = value[CLIP_FRAMES] if key in dataset.per_frame_info else value
        assert torch.equal(clip_info[key], expected) if isinstance(value, torch.Tensor) else clip_info[key] == expected
    return clip_info


def window_start(clip_info) -> int:
    """The first video frame of the clip a CLIP_FRAMES clip came from (its second frame is clip frame 0)."""
    return int(clip_info["frame_indices"][CLIP_FRAMES.index(0)])


@pytest.mark.parametrize("legacy_format", [False, True])
def test_carla_clip_matches_slicing_the_item(tmp_path, legacy_format):
    carla = write_carla(tmp_path / "carla", numbers=(0, 1, 2), frames=20)
    noise = np.random.default_rng(0).integers(0, 256, (3, 20, SIZE, SIZE, 3), dtype=np.uint8)
    for n in range(3):  # textured frames check resizing pixel by pixel; the legacy (pre-zip) format
        # cannot be memory-mapped and is read whole
        path = carla / f"video_{n}.pt"
        torch.save(torch.from_numpy(noise[n]), path, _use_new_zipfile_serialization=not legacy_format)
    write_carla_splits(carla, num_test=1)
    for split, size in (("train", SIZE), ("train", 8), ("test", SIZE)):
        dataset = build_dataset("carla_no_traffic", split, T=6, image_size=size, data_dir=carla)
        windows = {window_start(assert_clip_matches_item(dataset, 0, seed)) for seed in range(6)}
        assert (len(windows) > 1) == (split == "train")  # random training windows, fixed test clips
        assert set(assert_clip_matches_item(dataset, 0)) >= {"coords", "actions"}
    with pytest.raises(DatasetError, match=r"must lie in 0\.\.5"):
        dataset.clip(0, [2, 6])


# ---------------------------------------------------------------- numbered .npy (mazes / minerl)


def write_npy_splits(root, counts=(3, 2), frames=6):
    for split, count in zip(("train", "test"), counts, strict=True):
        (root / split).mkdir(parents=True)
        for n in range(count):
            np.save(root / split / f"{n}.npy", ramp_video(frames, n + (10 if split == "test" else 0)))
    return root


@pytest.mark.parametrize("name", ["mazes", "mazes_cwvae", "minerl"])
def test_npy_datasets_load_clips(tmp_path, name):
    root = write_npy_splits(tmp_path / name)
    train = build_dataset(name, "train", T=4, image_size=SIZE, data_dir=root)
    test = build_dataset(name, "test", T=4, image_size=SIZE, data_dir=root)
    assert (len(train), len(test)) == (3, 2)
    video, info = train[2]
    start = int(info["frame_indices"][0])
    torch.testing.assert_close(video, to_model_range(ramp_video(6, 2)[start : start + 4]))
    video, info = test[1]
    assert info["frame_indices"].tolist() == [0, 1, 2, 3]
    torch.testing.assert_close(video, to_model_range(ramp_video(6, 11)[:4]))
    assert build_dataset(name, "test", T=4, image_size=8, data_dir=root)[0][0].shape == (4, 3, 8, 8)


def test_npy_clip_matches_slicing_the_item(tmp_path):
    root = write_npy_splits(tmp_path / "minerl", frames=20)
    for split in ("train", "test"):  # textured frames check resizing pixel by pixel
        np.save(root / split / "1.npy", np.random.default_rng(1).integers(0, 256, (20, SIZE, SIZE, 3), dtype=np.uint8))
    for split, size in (("train", SIZE), ("train", 8), ("test", SIZE)):
        dataset = build_dataset("minerl", split, T=6, image_size=size, data_dir=root)
        for seed in range(3):
            assert_clip_matches_item(dataset, 1, seed)


def test_training_windows_come_from_the_given_rng_alone(tmp_path):
    root = write_npy_splits(tmp_path / "minerl", frames=20)
    train = build_dataset("minerl", "train", T=6, image_size=SIZE, data_dir=root)

    def starts(dataset) -> list[int]:
        return [int(dataset.item(0, np.random.default_rng(seed))[1]["frame_indices"][0]) for seed in range(8)]

    torch.manual_seed(0)
    np.random.seed(0)
    first = starts(train)
    torch.manual_seed(1)
    np.random.seed(1)
    assert starts(train) == first and len(set(first)) > 1  # the rng decides; the global RNGs play no part
    assert set(starts(build_dataset("minerl", "test", T=6, image_size=SIZE, data_dir=root))) == {0}


def test_npy_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="flexvid data mazes --download"):
        build_dataset("mazes", data_dir=tmp_path / "absent")
    root = write_npy_splits(tmp_path / "mazes")
    with pytest.raises(DatasetError, match="flexvid data minerl --download"):
        build_dataset("minerl", "train", T=4, image_size=SIZE, data_dir=tmp_path / "mazes" / "train")
    (root / "empty").mkdir()
    for path in (root / "test").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match="No numbered .npy videos"):
        build_dataset("mazes", "test", T=4, data_dir=root)
    with pytest.raises(DatasetError, match="0.npy in .* has 6 frames but a clip needs 7"):
        build_dataset("mazes", "train", T=7, data_dir=root, short_videos="error")
    np.save(root / "train" / "1.npy", np.zeros((6, SIZE, SIZE), np.uint8))
    with pytest.raises(DatasetError, match=r"1.npy holds a uint8 array of shape \(6, 16, 16\)"):
        build_dataset("mazes", "train", T=4, data_dir=root)
    np.save(root / "train" / "1.npy", np.zeros((6, SIZE, SIZE, 3), np.float32))
    with pytest.raises(DatasetError, match="holds a float32 array"):
        build_dataset("mazes", "train", T=4, data_dir=root)


# ---------------------------------------------------------------- CWVAE zip of mp4 -> npy


def test_minerl_zip_of_mp4_is_converted(tmp_path, capsys):
    videos = {"train": [ramp_video(8, 0), ramp_video(8, 1)], "test": [ramp_video(8, 2)]}
    archive = tmp_path / "minerl_navigate.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for split, clips in videos.items():
            for n, clip in enumerate(clips):
                mp4 = tmp_path / f"{split}{n}.mp4"
                write_mp4(mp4, clip)
                # numbered so that natural order (2 before 10) differs from plain string order
                bundle.write(mp4, f"minerl_navigate/{split}/{[2, 10][n]}.mp4")
    dest = tmp_path / "data" / "minerl"
    with pytest.raises(SystemExit) as exit_info:
        flexvid_main(["data", "minerl", "--download", str(dest), "--archive", str(archive), "--no_progress"])
    assert exit_info.value.code == 0
    assert sorted(p.name for p in (dest / "train").iterdir()) == ["0.npy", "1.npy"]
    for split, clips in videos.items():
        for n, clip in enumerate(clips):
            stored = np.load(dest / split / f"{n}.npy")
            assert stored.dtype == np.uint8 and stored.shape == (8, SIZE, SIZE, 3)
            assert np.abs(stored.astype(int) - clip).max() <= 6  # video coding is near-lossless here
    marker = json.loads((dest / MARKER_FILE).read_text())
    assert marker["train_sources"] == ["2.mp4", "10.mp4"]
    assert archive.exists()  # a user's own archive is never deleted
    assert [p.name for p in dest.parent.iterdir()] == ["minerl"]  # no staging left behind
    assert len(build_dataset("minerl", "train", T=8, data_dir=dest, image_size=SIZE)) == 2
    assert "ready" in capsys.readouterr().out


def test_undecodable_mp4_in_archive_leaves_nothing(tmp_path):
    archive = tmp_path / "gqn_mazes.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("train/0.mp4", b"not a video at all" * 50)
        bundle.writestr("test/0.mp4", b"not a video either" * 50)
    dest = tmp_path / "mazes"
    with pytest.raises(SystemExit) as exit_info:
        flexvid_main(["data", "mazes_cwvae", "--download", str(dest), "--archive", str(archive), "--no_progress"])
    assert exit_info.value.code == 2
    assert not dest.exists() and [p.name for p in tmp_path.iterdir()] == ["gqn_mazes.zip"]


# ---------------------------------------------------------------- decoding


def test_video_decoding_windows_and_errors(tmp_path):
    clip = ramp_video(8, 3)
    write_mp4(tmp_path / "clip.mp4", clip)
    assert count_video_frames(tmp_path / "clip.mp4", backend="ffmpeg") == 8
    frames = read_video_frames(tmp_path / "clip.mp4", start=1, count=3, stride=2, backend="ffmpeg")
    assert frames.shape == (3, SIZE, SIZE, 3)
    assert np.abs(frames.astype(int) - clip[1:7:2]).max() <= 6
    with pytest.raises(VideoDecodeError, match="too few frames"):
        read_video_frames(tmp_path / "clip.mp4", start=4, count=3, stride=2, backend="ffmpeg")
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x01garbage" * 64)
    with pytest.raises(VideoDecodeError, match="Cannot decode video .*bad.mp4"):
        read_video_frames(tmp_path / "bad.mp4", backend="ffmpeg")
    with pytest.raises(VideoDecodeError, match="Unknown video backend"):
        read_video_frames(tmp_path / "clip.mp4", backend="gstreamer")


def test_pyav_backend_matches_ffmpeg(tmp_path):
    pytest.importorskip("av")
    write_mp4(tmp_path / "clip.mp4", ramp_video(8, 1))
    assert count_video_frames(tmp_path / "clip.mp4", backend="pyav") == 8
    a = read_video_frames(tmp_path / "clip.mp4", 2, 4, backend="pyav").astype(int)
    b = read_video_frames(tmp_path / "clip.mp4", 2, 4, backend="ffmpeg").astype(int)
    assert np.abs(a - b).max() <= 2


# ---------------------------------------------------------------- folder of the user's videos


def write_user_folder(root):
    """train/: mp4, gif, npy, npz, a PNG-frame directory and one corrupt mp4; test/: one npy."""
    train = root / "train"
    (train / "frames_a").mkdir(parents=True)
    write_mp4(train / "clip.mp4", ramp_video(10, 0))
    gif = ramp_video(10, 1)
    Image.fromarray(gif[0]).save(train / "anim.gif", save_all=True, append_images=[Image.fromarray(f) for f in gif[1:]])
    np.save(train / "wide.npy", ramp_video(10, 2, height=20, width=30))
    np.savez(train / "packed.npz", video=ramp_video(10, 3), labels=np.arange(3))
    for t, frame in enumerate(ramp_video(10, 4)):
        Image.fromarray(frame).save(train / "frames_a" / f"frame_{t + 1}.png")  # frame_10 sorts last
    (train / "broken.mp4").write_bytes(b"this is not an mp4" * 20)
    (root / "test").mkdir()
    np.save(root / "test" / "only.npy", ramp_video(12, 5))


def test_folder_dataset_reads_every_format(tmp_path):
    root = tmp_path / "mine"
    write_user_folder(root)
    with pytest.warns(UserWarning, match=r"Skipping 1 unreadable file.*broken.mp4"):
        train = build_dataset("folder", "train", T=4, image_size=SIZE, data_dir=root, random_window=False)
    assert len(train) == 5 and [path for path, _ in train.skipped] == ["train/broken.mp4"]
    assert train.summary()["kinds"] == ["array", "frames", "video"]
    by_path = {train.entries[i].path: train[i] for i in range(len(train))}
    expected = {
        "train/clip.mp4": 0,
        "train/anim.gif": 1,
        "train/wide.npy": 2,
        "train/packed.npz": 3,
        "train/frames_a": 4,
    }
    for path, seed in expected.items():
        video, info = by_path[path]
        assert video.shape == (4, 3, SIZE, SIZE)
        assert info["frame_indices"].tolist() == [0, 1, 2, 3]
        # flat colours survive resizing/cropping; gif palettes and video coding change them slightly
        assert (video - to_model_range(ramp_video(4, seed))).abs().max() < 0.1, path
    test = build_dataset("folder", "test", T=4, image_size=8, data_dir=root, frame_stride=3)
    video, info = test[0]
    assert len(test) == 1 and info["frame_indices"].tolist() == [0, 3, 6, 9]
    torch.testing.assert_close(video, to_model_range(ramp_video(12, 5, height=8, width=8)[0:10:3]))


def test_folder_clip_matches_slicing_the_item(tmp_path):
    root = tmp_path / "mine"
    write_user_folder(root)
    with pytest.warns(UserWarning, match="broken.mp4"):
        dataset = build_dataset("folder", "train", T=6, image_size=8, data_dir=root, frame_stride=1)
    assert dataset.summary()["kinds"] == ["array", "frames", "video"]
    for index in range(len(dataset)):  # mp4, gif, npy, npz, PNG frames, all resized
        assert_clip_matches_item(dataset, index, seed=index)
    strided = build_dataset("folder", "test", T=6, image_size=SIZE, data_dir=root, frame_stride=2, random_window=True)
    windows = {window_start(assert_clip_matches_item(strided, 0, seed)) for seed in range(4)}
    assert windows == {0, 1}  # 12 frames, and a clip spans 11


def test_folder_index_is_cached_and_refreshed(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    for n in range(2):
        np.save(root / f"v{n}.npy", ramp_video(6, n))
    first = build_dataset("folder", "train", T=4, image_size=SIZE, data_dir=root)
    index_file = root / ".flexvid_index.json"
    stamp = index_file.stat().st_mtime_ns
    second = build_dataset("folder", "test", T=4, image_size=SIZE, data_dir=root)  # no split dirs: same videos
    assert len(first) == len(second) == 2 and index_file.stat().st_mtime_ns == stamp
    np.save(root / "v1.npy", ramp_video(9, 1))
    os.utime(root / "v1.npy", ns=(stamp + 10**9, stamp + 10**9))
    third = build_dataset("folder", "train", T=4, image_size=SIZE, data_dir=root)
    assert sorted(e.num_frames for e in third.entries) == [6, 9]
    cached = {e["path"]: e["num_frames"] for e in json.loads(index_file.read_text())["entries"]}
    assert cached == {"v0.npy": 6, "v1.npy": 9}
    (root / "v0.npy").unlink()
    assert len(build_dataset("folder", "train", T=4, image_size=SIZE, data_dir=root)) == 1
    assert [e["path"] for e in json.loads(index_file.read_text())["entries"]] == ["v1.npy"]


def test_folder_short_videos_and_late_failures(tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    np.save(root / "short.npy", ramp_video(3, 0))
    np.save(root / "long.npy", ramp_video(8, 1))
    np.save(root / "other.npy", ramp_video(8, 2))
    with pytest.raises(DatasetError, match="short.npy in .* has 3 frames but a clip needs 5"):
        build_dataset("folder", T=5, image_size=SIZE, data_dir=root, short_videos="error")
    with pytest.warns(UserWarning, match="Skipping 1 video.*short.npy"):
        dataset = build_dataset("folder", "test", T=5, image_size=SIZE, data_dir=root)
    assert len(dataset) == 2
    (root / dataset.entries[0].path).write_bytes(b"corrupted after indexing")
    with pytest.warns(UserWarning, match="Skipping unreadable video"):
        video, info = dataset[0]
    assert info["path"] == dataset.entries[1].path and video.shape == (5, 3, SIZE, SIZE)
    assert len(dataset.load_failures) == 1


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        build_dataset("folder", data_dir=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No readable videos"):
        build_dataset("folder", data_dir=tmp_path / "empty")
    (tmp_path / "split" / "train").mkdir(parents=True)
    np.save(tmp_path / "split" / "train" / "a.npy", ramp_video(4, 0))
    with pytest.raises(DatasetError, match="no test/ directory"):
        build_dataset("folder", "test", T=2, data_dir=tmp_path / "split")
    np.save(tmp_path / "split" / "train" / "a.npy", np.zeros((4, 8, 8, 3), np.float32))
    with (
        pytest.warns(UserWarning, match=r"a.npy \(holds a float32 array"),
        pytest.raises(DatasetError, match="1 unreadable"),
    ):
        build_dataset("folder", "train", T=2, data_dir=tmp_path / "split")


# ---------------------------------------------------------------- info and contact sheet


def test_contact_sheet_layout():
    videos = [to_model_range(ramp_video(6, n)) for n in range(2)]
    sheet = contact_sheet(videos, frames_per_video=3, gap=2)
    assert sheet.shape == (2 * SIZE + 2, 3 * SIZE + 4, 3)
    # row 1, last column shows the last frame of video 1
    np.testing.assert_array_equal(sheet[SIZE + 2 + 3, 2 * (SIZE + 2) + 3], ramp_video(6, 1)[5, 0, 0])
    assert (sheet[SIZE, :] == 255).all()  # the gap between rows stays white


def test_info_command_on_directories(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = write_npy_splits(tmp_path / "mz", counts=(3, 1))
    with pytest.raises(SystemExit) as exit_info:
        flexvid_main(["data", "info", str(root), "--sheet", "sheet.png", "--num_videos", "2"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "dataset mazes" in out and "train: 3 videos" in out and "test: 1 videos" in out
    assert "length min 6 / median 6 / max 6" in out and "(6, 3, 64, 64)" in out
    assert Image.open(tmp_path / "sheet.png").size == (6 * 64 + 5 * 2, 2 * 64 + 2)

    folder = tmp_path / "vids"
    folder.mkdir()
    np.save(folder / "a.npy", ramp_video(5, 0))
    (folder / "b.mp4").write_bytes(b"junk" * 30)
    with pytest.raises(SystemExit):
        flexvid_main(["data", "info", str(folder), "--split", "train", "--image_size", "16"])
    out = capsys.readouterr().out
    assert "dataset folder" in out and "skipped unreadable b.mp4" in out and "1 file(s) skipped" in out
    assert not (tmp_path / "folder_contact_sheet.png").exists()  # a contact sheet only with --sheet
