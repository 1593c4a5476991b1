"""`flexvid.generate`: videos as tensors from observed frames, the same as `flexvid sample` makes, with clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import flexvid
from flexvid.checkpoint import load_pretrained
from flexvid.data.base import build_dataset
from flexvid.errors import ConfigError, FlexvidError
from flexvid.sampling.generate import generate
from flexvid.video_io import to_uint8

from helpers import run_cli, save_sampling_checkpoint

ROOT = Path(__file__).resolve().parents[1]
T = 12
FAST = {"steps": 2, "eta": 1.0}  # two DDIM steps with noise: quick, and the seed matters


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_sampling_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", T=T)


@pytest.fixture(scope="module")
def pretrained(checkpoint):
    return load_pretrained(checkpoint)


def frames(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_returns_the_videos_with_the_observed_frames_unchanged(pretrained):
    observed = frames(2, 3, 1, 16, 16)
    out = generate(pretrained, observed, T=T, **FAST)
    assert out.video.shape == (2, T, 1, 16, 16) and out.video.dtype == torch.float32
    assert torch.equal(out.video[:, :3], observed)
    assert out.observed_mask.tolist() == [True] * 3 + [False] * (T - 3)
    assert out.video.min() >= -1 and out.video.max() <= 1
    assert (out.video[:, 3:].std(dim=(2, 3, 4)) > 0).all()  # generated, not left empty


def test_one_video_without_a_batch_axis_and_longer_than_training(pretrained):
    observed = frames(2, 1, 16, 16)
    out = generate(pretrained, observed, T=2 * T + 5, scheme="autoreg", **FAST)
    assert out.video.shape == (2 * T + 5, 1, 16, 16)
    assert torch.equal(out.video[:2], observed)
    assert out.video[T:].std() > 0


def test_unconditional_videos_from_no_observed_frames(pretrained):
    out = generate(pretrained, torch.empty(2, 0, 1, 16, 16), T=T, scheme="autoreg", **FAST)
    assert out.video.shape == (2, T, 1, 16, 16) and not out.observed_mask.any()
    assert not torch.equal(out.video[0], out.video[1])


def test_same_seed_same_video_whatever_the_batch(pretrained):
    observed = frames(2, 2, 1, 16, 16)
    first = generate(pretrained, observed, T=T, seed=5, **FAST).video
    again = generate(pretrained, observed, T=T, seed=5, **FAST).video
    alone = generate(pretrained, observed[1:], T=T, seed=5, video_ids=[1], **FAST).video
    other = generate(pretrained, observed, T=T, seed=6, **FAST).video
    assert torch.equal(first, again)
    torch.testing.assert_close(alone[0], first[1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(other[:, 2:], first[:, 2:])


def test_equals_what_flexvid_sample_writes_for_the_same_settings(checkpoint, tmp_path):
    eval_dir = tmp_path / "eval"
    assert (
        run_cli(
            "sample",
            str(checkpoint),
            *"--sampling_scheme hierarchy-2 --n_obs 3 --batch_size 2 --stop_index 2 --sample_idx 1".split(),
            *"--seed 4 --steps 2 --eta 1 --device cpu --eval_dir".split(),
            str(eval_dir),
        )
        == 0
    )
    test_set = build_dataset("moving_mnist", "test", T=T, image_size=16)
    observed = torch.stack([test_set[i][0][:3] for i in range(2)])
    out = generate(str(checkpoint), observed, scheme="hierarchy-2", seed=4, sample_idx=1, video_ids=[0, 1], **FAST)
    for index in range(2):
        written = np.load(eval_dir / "samples" / f"sample_{index:04d}-1.npy")
        np.testing.assert_array_equal(to_uint8(out.video[index]), written)


def test_is_exported_at_the_top_level():
    assert flexvid.generate is generate


@pytest.mark.parametrize(
    "observed, options, message",
    [
        (frames(2, 1, 16), {}, r"shape \(2, 1, 16\).*\(B, n, C, H, W\)"),
        (frames(1, 2, 1, 8, 8), {}, "8x8 but the model makes 16x16"),
        (frames(1, 2, 3, 16, 16), {}, "3 channel\\(s\\) but the model takes 1"),
        (frames(1, 5, 1, 16, 16), {"T": 4}, r"T \(4\) is shorter than the 5 observed frames"),
        (torch.zeros(1, 2, 1, 16, 16, dtype=torch.uint8), {}, "uint8 frames: x / 127.5 - 1"),
        (frames(1, 2, 1, 16, 16) * 200, {}, r"within \[-1, 1\]"),
        (frames(0, 2, 1, 16, 16), {}, "no videos"),
        (frames(2, 2, 1, 16, 16), {"video_ids": [0]}, "1 video_ids for 2 videos"),
        (frames(1, 2, 1, 16, 16), {"scheme": "hierarchy-9"}, "hierarchy-9"),
        (frames(1, 2, 1, 16, 16), {"eta": -1.0}, "eta"),
        (np.zeros((1, 2, 1, 16, 16), np.float32), {}, "torch.Tensor"),
    ],
)
def test_bad_input_is_refused_in_one_sentence(pretrained, observed, options, message):
    with pytest.raises(FlexvidError, match=message):
        generate(pretrained, observed, **{"T": T, **FAST, **options})


def test_a_device_other_than_the_networks_is_refused(pretrained):
    with pytest.raises(ConfigError, match="load_pretrained"):
        generate(pretrained, frames(1, 2, 1, 16, 16), T=T, device="meta", **FAST)


@pytest.mark.slow
def test_the_readme_example_runs_on_the_shipped_model(monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text()
    (example,) = [block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "generate(" in block]
    monkeypatch.chdir(ROOT)
    exec(compile(example, "README.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "torch.Size([40, 1, 32, 32]) tensor(8)"
