"""Motion extraction: video I/O, the spectral accumulator, the filters, and accuracy on a real photo
warped by a known band-limited displacement field (so the exact answer is known)."""

from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from image_dynamics.errors import RejectedClip, UserError  # noqa: E402
from image_dynamics.extract import extractor, filters, shards, video  # noqa: E402
from image_dynamics.motion.spectral import (  # noqa: E402
    NUM_FRAMES,
    NUM_FREQS,
    bin_weights,
    motion_to_spectral,
    spectral_to_motion,
)

SIZE = (128, 80)  # W, H: small keeps 149 flows fast


def load_photo(photos_dir, name: str, size=SIZE) -> np.ndarray:
    bgr = cv2.imread(str(photos_dir / f"{name}.jpg"))
    assert bgr is not None
    return video.convert_frame(bgr, size)


def known_spectral(rng: np.random.Generator, width: int, height: int, amp: float = 4.0, freqs: int = 3) -> np.ndarray:
    """A band-limited S: a few bins k in 1..8, plane-wave phases, inside a smooth blob mask; D_0 = 0."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = rng.uniform(0.35, 0.65) * width, rng.uniform(0.35, 0.65) * height
    r = np.hypot((xx - cx) / (0.3 * width), (yy - cy) / (0.35 * height))
    m = np.clip(1.5 - 1.5 * r, 0.0, 1.0)
    mask = m * m * (3 - 2 * m)  # smoothstep: 1 in the middle, exactly 0 outside
    S = np.zeros((NUM_FREQS, 2, height, width), np.complex64)
    for k in rng.choice(np.arange(1, 9), freqs, replace=False):
        for axis in range(2):
            phase = rng.uniform(0, 2 * np.pi)
            kx, ky = rng.uniform(-1, 1) * 2 * np.pi / width, rng.uniform(-1, 1) * 2 * np.pi / height
            S[k, axis] = amp / freqs / 2 * mask * np.exp(1j * (phase + kx * xx + ky * yy))
    # DC chosen so that D_0 = sum_k Re(c_k S_k) = 0: frame 0 is the undistorted photo.
    S[0] = -np.real((bin_weights(NUM_FREQS)[1:, None, None, None] * S[1:]).sum(axis=0))
    return S


# ---------------------------------------------------------------------------------------------
# video I/O


@pytest.mark.parametrize("text,expected", [("256x160", (256, 160)), ("128X80", (128, 80)), (" 64 x 32 ", (64, 32)),
                                           (None, None), ("", None)])
def test_parse_size_accepts(text, expected):
    assert video.parse_size(text) == expected


@pytest.mark.parametrize("text", ["256", "x160", "256x", "axb", "0x0", "256x-1", "4x4", "99999x10"])
def test_parse_size_rejects_with_user_error(text):
    with pytest.raises(UserError):
        video.parse_size(text)


def test_ffv1_round_trip_is_lossless_and_frames_are_counted_by_decoding(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (12, 40, 64, 3), dtype=np.uint8)
    path = tmp_path / "a.mkv"
    video.write_video(path, frames, fps=25)
    np.testing.assert_array_equal(video.read_frames(path), frames)
    info = video.probe_video(path)
    assert (info.num_frames, info.width, info.height) == (12, 64, 40)
    assert info.fps == pytest.approx(25)
    np.testing.assert_array_equal(video.read_frames(path, start=5, count=3), frames[5:8])


def test_resize_centre_crops_to_the_target_aspect():
    frame = np.zeros((100, 300, 3), np.uint8)
    frame[:, 100:200] = 255  # the centre third, which a 1:1 crop keeps
    out = video.convert_frame(frame, (50, 50))
    assert out.shape == (50, 50, 3)
    assert out.min() == 255


def test_truncated_video_is_a_user_error_not_a_crash(tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, (30, 40, 64, 3), dtype=np.uint8)
    good = tmp_path / "good.mkv"
    video.write_video(good, frames)
    data = good.read_bytes()
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(UserError, match="too short|corrupt"):
        video.read_frames(bad, 0, 30)
    text = tmp_path / "text.mp4"
    text.write_text("not a video\n" * 50)
    with pytest.raises(UserError, match="cannot read"):
        video.probe_video(text)
    with pytest.raises(UserError, match="no such"):
        video.probe_video(tmp_path / "missing.mp4")


def test_resample_indices_keep_thirty_fps_time():
    assert np.array_equal(extractor.resample_indices(30.0), np.arange(NUM_FRAMES))
    sixty = extractor.resample_indices(60.0)
    assert np.array_equal(sixty, 2 * np.arange(NUM_FRAMES))
    film = extractor.resample_indices(24.0)
    assert film[0] == 0 and film[-1] == round(149 * 24 / 30) and np.all(np.diff(film) >= 0)


# ---------------------------------------------------------------------------------------------
# spectral bookkeeping


def test_streaming_accumulator_equals_the_fft():
    rng = np.random.default_rng(2)
    motion = rng.standard_normal((NUM_FRAMES, 2, 6, 5)).astype(np.float32)
    acc = extractor.SpectralAccumulator(6, 5)
    for t, d in enumerate(motion):
        acc.add(t, d)
    np.testing.assert_allclose(acc.result(), motion_to_spectral(motion), atol=2e-6)


def test_shard_packing_round_trip():
    rng = np.random.default_rng(3)
    shape = (NUM_FREQS, 2, 4, 3)
    S = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    packed = shards.pack_spectral(S)
    assert packed.shape == (NUM_FREQS, 4, 4, 3) and packed.dtype == np.float16
    np.testing.assert_array_equal(packed[:, 0], S[:, 0].real.astype(np.float16))  # x_re
    np.testing.assert_array_equal(packed[:, 1], S[:, 1].real.astype(np.float16))  # y_re
    np.testing.assert_array_equal(packed[:, 2], S[:, 0].imag.astype(np.float16))  # x_im
    np.testing.assert_array_equal(packed[:, 3], S[:, 1].imag.astype(np.float16))  # y_im
    np.testing.assert_allclose(shards.unpack_spectral(packed), S, rtol=1e-3, atol=1e-3)


def test_render_motion_moves_points_forward():
    image = np.zeros((40, 40, 3), np.uint8)
    image[18:22, 10:14] = 255
    motion = np.zeros((2, 2, 40, 40), np.float32)
    motion[1, 0] = 5.0  # frame 1: everything 5 px to the right
    frames = extractor.render_motion(image, motion)
    np.testing.assert_array_equal(frames[0], image)
    assert frames[1][20, 17].min() == 255 and frames[1][20, 12].max() == 0


# ---------------------------------------------------------------------------------------------
# filters


def _volume(motion: np.ndarray) -> np.ndarray:
    return motion_to_spectral(motion)


def test_filters_reject_camera_motion_and_stillness_and_pass_local_sway():
    t = np.arange(NUM_FRAMES, dtype=np.float32)
    h, w = 20, 30
    pan = np.zeros((NUM_FRAMES, 2, h, w), np.float32)
    pan[:, 0] = (3.0 * np.sin(2 * np.pi * t / NUM_FRAMES))[:, None, None]  # whole frame swings 3 px
    with pytest.raises(RejectedClip, match="^camera motion") as exc:
        filters.check_clip(_volume(pan))
    assert exc.value.exit_code == 3

    still = np.full((NUM_FRAMES, 2, h, w), 0.05, np.float32)
    still[0] = 0
    with pytest.raises(RejectedClip, match="^no motion"):
        filters.check_clip(_volume(still))

    sway = np.zeros((NUM_FRAMES, 2, h, w), np.float32)
    sway[:, 0, :, : w // 2] = (4.0 * np.sin(2 * np.pi * 3 * t / NUM_FRAMES))[:, None, None]
    stats = filters.check_clip(_volume(sway))
    assert 0.45 < stats.moving_fraction < 0.55
    # thresholds are parameters; scaled to another resolution with the image
    strict = filters.FilterSettings(min_motion_px=5.0)
    assert filters.rejection_reason(stats, strict).startswith("no motion")
    assert filters.scale_thresholds(filters.FilterSettings(), 512, 320).min_motion_px == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------------
# accuracy against an exact answer


@pytest.mark.parametrize("photo,seed", [("dahlia", 0), ("forget_me_nots", 1)])
def test_extract_recovers_a_known_warp_of_a_real_photo(tmp_path, photos_dir, photo, seed):
    image = load_photo(photos_dir, photo)
    S_true = known_spectral(np.random.default_rng(seed), *SIZE)
    d_true = spectral_to_motion(S_true)
    assert np.abs(d_true[0]).max() < 1e-5
    path = tmp_path / "warped.mkv"
    video.write_video(path, extractor.render_motion(image, d_true), fps=30)

    vol = extractor.extract_volume(path, progress=False)
    assert vol.S.shape == S_true.shape and vol.S.dtype == np.complex64
    np.testing.assert_array_equal(vol.image, image)
    assert vol.meta["start_frame"] == 0 and vol.meta["fps"] == 30.0

    d_est = spectral_to_motion(vol.S)
    epe = np.linalg.norm(d_est - d_true, axis=1).mean(axis=0)
    magnitude = np.linalg.norm(d_true, axis=1).mean(axis=0)
    moving = magnitude > 0.05
    assert 0.2 < moving.mean() < 0.5 and magnitude[moving].mean() > 1.0  # a real test: px of motion
    # Measured with the default method (dis_fine) and the zero-motion gate: moving 0.155 px
    # (dahlia) and 0.135 px (forget-me-nots), static 0.006 and 0.004 px. Limits leave ~1.6x margin.
    assert epe[moving].mean() < 0.25, epe[moving].mean()
    assert epe[~moving].mean() < 0.03, epe[~moving].mean()
