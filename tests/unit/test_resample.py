"""Resizing spectral volumes: fields resampled, vectors scaled with the grid."""

from __future__ import annotations

import numpy as np
import pytest

from image_dynamics.motion.resample import resample_image, resample_spectral_volume, resample_volume
from image_dynamics.motion.volume_file import SpectralVolume


def constant_translation(K=3, H=12, W=16):
    rng = np.random.default_rng(0)
    coef = rng.normal(size=(K, 2)) + 1j * rng.normal(size=(K, 2))
    return np.broadcast_to(coef[:, :, None, None], (K, 2, H, W)).astype(np.complex64), coef


@pytest.mark.parametrize("size", [(8, 6), (40, 30), (32, 5), (7, 25), (16, 12)])
def test_constant_translation_scaled_by_ratio(size):
    S, coef = constant_translation()
    w, h = size
    out = resample_volume(S, w, h)
    assert out.shape == (3, 2, h, w) and out.dtype == np.complex64
    expected = coef.copy()
    expected[:, 0] *= w / 16
    expected[:, 1] *= h / 12
    np.testing.assert_allclose(out, np.broadcast_to(expected[:, :, None, None], out.shape), rtol=1e-5, atol=1e-6)


def smooth_field(K=2, H=24, W=32):
    y, x = np.mgrid[0:H, 0:W] / np.array([H, W])[:, None, None]
    base = np.sin(2 * np.pi * x) * np.cos(np.pi * y) + 0.5 * x
    S = np.zeros((K, 2, H, W), np.complex64)
    for k in range(K):
        S[k, 0] = (k + 1) * base + 0.5j * base
        S[k, 1] = -base + 1j * (k + 1) * np.cos(2 * np.pi * y)
    return S


def test_up_then_down_is_close():
    S = smooth_field()
    up = resample_volume(S, 64, 48)
    back = resample_volume(up, 32, 24)
    scale = np.abs(S).max()
    assert np.abs(back - S).max() < 0.03 * scale
    np.testing.assert_allclose(np.abs(up[:, 0]).max() / 2, np.abs(S[:, 0]).max(), rtol=0.05)


def test_shrinking_uses_area_average():
    S = np.zeros((1, 2, 4, 4), np.complex64)
    S[0, 0] = np.array([[1, 3] * 2, [5, 7] * 2] * 2)  # every 2x2 block averages to 4
    out = resample_volume(S, 2, 2)
    np.testing.assert_allclose(out[0, 0].real, 4.0 * 0.5, rtol=1e-6)  # averaged, then x 2/4


def test_identity_size_is_copy():
    S, _ = constant_translation()
    out = resample_volume(S, 16, 12)
    np.testing.assert_array_equal(out, S)
    assert out is not S


def test_many_channels():
    rng = np.random.default_rng(1)
    S = (rng.normal(size=(140, 2, 4, 4)) + 1j * rng.normal(size=(140, 2, 4, 4))).astype(np.complex64)
    out = resample_volume(S, 8, 8)  # 560 real planes: more than cv2's channel limit at once
    assert out.shape == (140, 2, 8, 8)
    ref = resample_volume(S[130:], 8, 8)
    np.testing.assert_allclose(out[130:], ref, rtol=1e-6)
    small = resample_volume(S[:5], 3, 3)  # INTER_AREA at a non-integer ratio: 4 channels a call
    np.testing.assert_allclose(small[3:], resample_volume(S[3:5], 3, 3), rtol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError):
        resample_volume(np.zeros((2, 3, 4, 4), np.complex64), 2, 2)
    with pytest.raises(ValueError):
        resample_volume(np.zeros((2, 2, 4, 4), np.complex64), 0, 2)


def test_resample_image_and_volume_object():
    img = np.full((12, 16, 3), 200, np.uint8)
    out = resample_image(img, 8, 6)
    assert out.dtype == np.uint8 and out.shape == (6, 8, 3) and np.all(out == 200)
    gray = resample_image(np.ones((4, 4), np.float32), 9, 3)
    assert gray.shape == (3, 9)
    S, _ = constant_translation()
    vol = SpectralVolume(S=S, image=img, source="synth")
    small = resample_spectral_volume(vol, 8, 6)
    assert (small.width, small.height) == (8, 6) and small.image.shape == (6, 8, 3)
    assert small.meta["resampled_from"] == [16, 12] and small.source == "synth"


def test_upsampling_holds_little_more_than_the_result():
    """A small volume resampled to a large size allocates the result plus a few planes (one
    frequency at a time), not float64 / complex128 copies of the whole result."""
    import tracemalloc

    rng = np.random.default_rng(2)
    S = (rng.normal(size=(16, 2, 8, 8)) + 1j * rng.normal(size=(16, 2, 8, 8))).astype(np.complex64)
    tracemalloc.start()
    try:
        out = resample_volume(S, 512, 384)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (16, 2, 384, 512) and out.dtype == np.complex64
    assert peak < 1.25 * out.nbytes, (peak, out.nbytes)
    # and it is the same resampling as one frequency on its own
    np.testing.assert_array_equal(out[5:6], resample_volume(S[5:6], 512, 384))
