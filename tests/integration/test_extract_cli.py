"""``image-dynamics extract`` as a user meets it: a real subprocess, real video files.

A good clip (part of a real photo swaying), a panning clip and a still clip for the paper's filters,
bad input of every kind for the error messages, and batch mode over a folder with a corrupt file.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from image_dynamics.extract import video  # noqa: E402
from image_dynamics.extract.extractor import render_motion  # noqa: E402
from image_dynamics.extract.shards import DenseShardDataset  # noqa: E402
from image_dynamics.motion.spectral import NUM_FREQS, spectral_to_motion  # noqa: E402
from image_dynamics.motion.volume_file import load_volume  # noqa: E402

W, H = 128, 80


def _photo(photos_dir) -> np.ndarray:
    return video.convert_frame(cv2.imread(str(photos_dir / "dahlia.jpg")), (W, H))


def _sway(num_frames: int, amp: float = 3.0, k: int = 3) -> np.ndarray:
    """The left 60 % of the frame sways sideways (smooth edge), the rest stays still; D_0 = 0."""
    x = np.arange(W, dtype=np.float32)
    mask = np.clip((0.6 * W - x) / 12.0, 0.0, 1.0)
    t = np.arange(num_frames, dtype=np.float32)
    motion = np.zeros((num_frames, 2, H, W), np.float32)
    motion[:, 0] = amp * np.sin(2 * np.pi * k * t / 150)[:, None, None] * mask[None, None, :]
    motion[:, 1] = 0.3 * motion[:, 0]
    return motion


@pytest.fixture(scope="module")
def clips(tmp_path_factory, photos_dir):
    root = tmp_path_factory.mktemp("extract_clips")
    image = _photo(photos_dir)
    paths = {}
    motion = _sway(165)
    paths["motion"] = motion[:150]
    frames = render_motion(image, motion)
    paths["good"] = root / "good.mkv"
    video.write_video(paths["good"], frames[:150])
    paths["long"] = root / "long.mkv"
    video.write_video(paths["long"], frames)  # 165 frames: windows start at 0 and 10 (20 + 150 > 165)
    pan = np.zeros((150, 2, H, W), np.float32)
    pan[:, 0] = (4.0 * np.arange(150) / 149)[:, None, None]  # the whole photo slides 4 px
    paths["pan"] = root / "pan.mkv"
    video.write_video(paths["pan"], render_motion(image, pan))
    rng = np.random.default_rng(0)
    noisy = np.clip(image[None].astype(np.float32) + rng.normal(0, 1.0, (150, H, W, 3)), 0, 255).astype(np.uint8)
    noisy[0] = image
    paths["still"] = root / "still.mkv"
    video.write_video(paths["still"], noisy)
    paths["short"] = root / "short.mkv"
    video.write_video(paths["short"], frames[:40])
    data = paths["good"].read_bytes()
    paths["truncated"] = root / "truncated.mkv"
    paths["truncated"].write_bytes(data[: len(data) // 4])
    paths["text"] = root / "notes.mp4"
    paths["text"].write_text("this is a shopping list, not a video\n" * 40)
    paths["empty"] = root / "empty.mp4"
    paths["empty"].write_bytes(b"")
    return paths


def _assert_clean_error(result, code=None):
    assert result.returncode != 0
    if code is not None:
        assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, result.stderr


def test_extract_good_clip_writes_a_canonical_volume(run_cli, clips, tmp_path):
    out = tmp_path / "good.npz"
    result = run_cli("extract", clips["good"], "--out", out)
    assert result.returncode == 0, result.stderr
    assert "mean motion" in result.stdout and "Traceback" not in result.stderr
    vol = load_volume(out)
    assert vol.S.shape == (NUM_FREQS, 2, H, W) and vol.source == "extract"
    assert vol.meta["start_frame"] == 0 and vol.image.shape == (H, W, 3)
    epe = np.linalg.norm(spectral_to_motion(vol.S) - clips["motion"], axis=1).mean(axis=0)
    moving = np.linalg.norm(clips["motion"], axis=1).mean(axis=0) > 0.05
    # measured 0.051 px moving, 0.005 px static (dis_fine, zero-motion gate)
    assert epe[moving].mean() < 0.15, epe[moving].mean()
    assert epe[~moving].mean() < 0.03, epe[~moving].mean()


def test_panning_clip_is_rejected_as_camera_motion(run_cli, clips, tmp_path):
    out = tmp_path / "pan.npz"
    result = run_cli("extract", clips["pan"], "--out", out)
    _assert_clean_error(result, code=3)
    assert "camera motion" in result.stderr
    assert not out.exists()
    kept = run_cli("extract", clips["pan"], "--out", out, "--no-filter")
    assert kept.returncode == 0, kept.stderr
    assert out.exists()


def test_still_clip_is_rejected_as_no_motion(run_cli, clips, tmp_path):
    result = run_cli("extract", clips["still"], "--out", tmp_path / "still.npz")
    _assert_clean_error(result, code=3)
    assert "no motion" in result.stderr


@pytest.mark.parametrize(
    "key,extra,words",
    [
        ("missing", [], "no such"),
        ("text", [], "cannot read"),
        ("empty", [], "empty"),
        ("truncated", [], "truncated or corrupt"),
        ("short", [], "too short"),
        ("good", ["--size", "big"], "bad size"),
        ("good", ["--start-frame", "400"], "past the end"),
        ("good", ["--start-frame", "-3"], "start frame"),
        ("good", ["--method", "magic"], "unknown flow method"),
    ],
)
def test_bad_input_gives_one_clear_error_line(run_cli, clips, tmp_path, key, extra, words):
    path = tmp_path / "nowhere.mp4" if key == "missing" else clips[key]
    result = run_cli("extract", path, "--out", tmp_path / "x.npz", *extra)
    _assert_clean_error(result)
    assert words in result.stderr, result.stderr
    assert not (tmp_path / "x.npz").exists()


def test_batch_mode_writes_shards_and_skips_a_corrupt_video(run_cli, clips, tmp_path):
    src = tmp_path / "videos"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "long.mkv").write_bytes(clips["long"].read_bytes())
    (src / "broken.mp4").write_bytes(clips["truncated"].read_bytes()[:3000])
    out = tmp_path / "shards"
    result = run_cli("extract", src, "--out", out, "--size", f"{W}x{H}")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "broken.mp4" in result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    windows = manifest["windows"]
    assert [w["start_frame"] for w in windows] == [0, 10]
    assert all(w["status"] == "accepted" for w in windows), windows
    assert [f["video"] for f in manifest["failed_videos"]] == ["broken.mp4"]
    with np.load(out / "shard_0000.npz") as shard:
        assert shard["images"].shape == (2, H, W, 3)
        assert shard["S"].shape == (2, NUM_FREQS, 4, H, W) and shard["S"].dtype == np.float16
        assert str(shard["channel_order"]) == "x_re,y_re,x_im,y_im"
    ds = DenseShardDataset(out)
    assert len(ds) == 2
    image, S = ds[1]
    assert image.shape == (H, W, 3) and S.shape == (NUM_FREQS, 2, H, W) and S.dtype == np.complex64
    first = video.read_frames(clips["long"], start=10, count=1)[0]
    np.testing.assert_array_equal(image, first)  # the second window starts at frame 10


def test_batch_mode_on_a_folder_without_videos_is_an_error(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("extract", tmp_path / "empty", "--out", tmp_path / "shards")
    _assert_clean_error(result)
    assert "no videos" in result.stderr
