"""``image-dynamics animate`` as a user runs it: real subprocesses, a small real photo, a small
volume that moves only the left half of the picture, outputs decoded again with PyAV / OpenCV."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from image_dynamics.motion.spectral import NUM_FREQS
from image_dynamics.motion.volume_file import SpectralVolume, save_volume

W, H = 64, 45  # odd height: the MP4 is padded to 64 x 46
MOVING = slice(0, 26)  # columns of the photo that move (the volume moves x < 32, +-3 px at most)
STILL = slice(40, W)  # columns nothing can reach


@pytest.fixture(scope="module")
def photo(tmp_path_factory, photos_dir) -> Path:
    img = cv2.imread(str(photos_dir / "grass_texture.png"))
    img = cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)
    path = tmp_path_factory.mktemp("photo") / "grass.png"
    cv2.imwrite(str(path), img)
    return path


@pytest.fixture(scope="module")
def motion(tmp_path_factory) -> Path:
    """A volume at half the photo's resolution (so animate must resample it): two modes, the left
    half swaying as one piece, the right half still."""
    S = np.zeros((NUM_FREQS, 2, 23, 32), np.complex64)
    S[3, 0, :, :16] = 0.6 * np.exp(0.4j)  # 0.6 Hz in x (half-resolution pixels: doubled on resampling)
    S[5, 1, :, :16] = 0.3 * np.exp(-1.1j)  # 1.0 Hz in y
    path = tmp_path_factory.mktemp("motion") / "sway.npz"
    save_volume(path, SpectralVolume(S=S, source="synth"))
    return path


def _animate(run_cli, photo, motion, out, *extra):
    return run_cli("animate", photo, "--motion", motion, "--out", out, "--quiet", *extra)


def _decode(path: Path) -> tuple[np.ndarray, object]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        info = (stream.codec_context.name, stream.average_rate)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    return frames, info


def _read_photo(path: Path) -> np.ndarray:
    return cv2.imread(str(path))[:, :, ::-1]


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def _check_motion_where_it_is(frames: np.ndarray, still_tol: float, moving_min: float) -> None:
    f0 = frames[0]
    moving = max(_diff(f[:, MOVING], f0[:, MOVING]) for f in frames[1:])
    still = max(_diff(f[:H, STILL], f0[:H, STILL]) for f in frames[1:])
    assert moving > moving_min, moving
    assert still < still_tol, still


def test_png_folder_is_exact_and_the_loop_is_seamless(run_cli, photo, motion, tmp_path):
    from image_dynamics.motion.playback import ClipTiming, clip_coordinates, displacements
    from image_dynamics.motion.resample import resample_volume
    from image_dynamics.motion.volume_file import load_volume
    from image_dynamics.render import make_renderer

    out = tmp_path / "frames"
    r = _animate(run_cli, photo, motion, f"{out}/", "--loop", "--seconds", "1.5", "--fps", "20",
                 "--renderer", "mesh")
    assert r.returncode == 0, r.stderr
    files = sorted(out.glob("frame_*.png"))
    assert [f.name for f in files] == [f"frame_{i:05d}.png" for i in range(30)]
    frames = np.stack([_read_photo(f) for f in files])
    assert frames.shape == (30, H, W, 3)
    img = _read_photo(photo)
    # lossless: the still part is the photo itself in every frame; the left half moves
    assert all(np.array_equal(f[:, STILL], img[:, STILL]) for f in frames)
    _check_motion_where_it_is(frames, still_tol=1e-9, moving_min=3.0)
    # a loop starts at rest: frame 0 is the undistorted photo
    assert np.array_equal(frames[0], img)

    # The frame after the last, rendered explicitly with the same timing: it is the first frame.
    timing = ClipTiming(frames=30, fps=20.0, loop=True)
    vol = load_volume(motion)
    coords = clip_coordinates(NUM_FREQS, timing, vol.fps, vol.num_frames, count=31)
    D = displacements(resample_volume(vol.S, W, H), coords)
    assert np.abs(D[30] - D[0]).max() < 1e-4
    after_last = make_renderer("mesh").render(img, D[30:31])[0]
    assert np.array_equal(after_last, frames[0])

    # Without --loop a 1.5 s clip of this motion does not close: the frame after its last is not
    # its first.
    plain = tmp_path / "plain"
    r = _animate(run_cli, photo, motion, f"{plain}/", "--seconds", "1.5", "--fps", "20", "--renderer", "mesh")
    assert r.returncode == 0, r.stderr
    first = _read_photo(plain / "frame_00000.png")
    coords = clip_coordinates(NUM_FREQS, ClipTiming(frames=30, fps=20.0), vol.fps, vol.num_frames, count=31)
    D = displacements(resample_volume(vol.S, W, H), coords)
    assert np.abs(D[30] - D[0]).max() > 0.5
    assert _diff(make_renderer("mesh").render(img, D[30:31])[0][:, MOVING], first[:, MOVING]) > 3.0


def test_mp4_has_every_frame_at_even_size(run_cli, photo, motion, tmp_path):
    out = tmp_path / "clip.mp4"
    r = _animate(run_cli, photo, motion, out, "--seconds", "2", "--fps", "15", "--renderer", "mesh",
                 "--magnify", "1.5", "--speed", "0.8")
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "Traceback" not in r.stderr
    frames, (codec, rate) = _decode(out)
    assert codec == "h264" and rate == 15
    assert frames.shape == (30, 46, 64, 3)  # 45 rows padded to 46 for yuv420p
    # the pad repeats the last row (up to compression): far closer to it than neighbouring rows are
    assert _diff(frames[:, 45], frames[:, 44]) < 0.5 * _diff(frames[:, 44], frames[:, 43])
    _check_motion_where_it_is(frames, still_tol=2.5, moving_min=4.0)
    assert not (tmp_path / "clip.partial.mp4").exists()


def test_gif_loops_forever_with_every_frame(run_cli, photo, motion, tmp_path):
    out = tmp_path / "clip.gif"
    r = _animate(run_cli, photo, motion, out, "--seconds", "1", "--fps", "12", "--loop", "--renderer", "backward")
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert data[:6] == b"GIF89a"
    i = data.find(b"NETSCAPE2.0")
    assert i > 0 and data[i + 11: i + 16] == b"\x03\x01\x00\x00\x00"  # loop count 0: forever
    frames, (codec, _) = _decode(out)
    assert codec == "gif" and frames.shape == (12, H, W, 3)
    # dithering may differ a little where nothing moves; the moving half changes a lot more
    _check_motion_where_it_is(frames, still_tol=3.0, moving_min=6.0)


def test_without_motion_it_predicts_first(run_cli, photo, tmp_path):
    import torch

    from image_dynamics.model.pipeline import MotionPredictor

    torch.set_num_threads(1)
    model = tmp_path / "tiny"
    MotionPredictor.random_init("tiny", seed=0).save_pretrained(model)
    out = tmp_path / "predicted.gif"
    r = run_cli("animate", photo, "--out", out, "--model", model, "--steps", "2", "--seconds", "0.5",
                "--renderer", "backward", "--threads", "1", "--seed", "3", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "predicting the motion" in r.stderr
    frames, _ = _decode(out)
    assert frames.shape == (15, H, W, 3)


def _one_error_line(r, words: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    assert len(errors) == 1 and words in errors[0], r.stderr
    assert all(ln.startswith("image-dynamics animate: error:") or ln.lstrip().startswith("hint:") for ln in lines)


def test_bad_inputs_fail_with_one_clear_line(run_cli, photo, motion, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("a shopping list, not a photo\n")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    out = tmp_path / "o.mp4"
    _one_error_line(_animate(run_cli, tmp_path / "missing.png", motion, out), "no such file")
    _one_error_line(_animate(run_cli, text, motion, out), "not an image")
    _one_error_line(_animate(run_cli, photo, motion, tmp_path / "o.avi"), "cannot write '.avi'")
    _one_error_line(_animate(run_cli, photo, tmp_path / "nothing.npz", out), "no such motion file")
    _one_error_line(_animate(run_cli, photo, broken, out), "cannot read spectral-volume file")
    _one_error_line(_animate(run_cli, photo, motion, out, "--fps", "0"), "--fps")
    _one_error_line(_animate(run_cli, photo, motion, out, "--seed", str(2**64)), "--seed must be from 0 to")
    too_many_bins = tmp_path / "k20.npz"  # 20 bins cannot come from 30 frames
    np.savez(too_many_bins, S=np.zeros((20, 2, 8, 8), np.complex64), fps=np.float64(30), num_frames=np.int64(30))
    _one_error_line(_animate(run_cli, photo, too_many_bins, out), "20 frequency bins")
    _one_error_line(_animate(run_cli, photo, motion, out, "--loop", "--seconds", "0.01"), "cannot time this clip")
    assert not out.exists() and not list(tmp_path.glob("*.partial.*"))
