"""Render requests: what ``parse_render`` lets in is what the server can hold; the frame service's
banded displacement sum equals the plain one."""

from __future__ import annotations

import numpy as np
import pytest

from image_dynamics.motion.playback import ClipTiming, clip_coordinates, displacements
from image_dynamics.protocol.messages import MAX_RENDER_FREQS, ErrorCode, ProtocolError, parse_render
from image_dynamics.service.limits import Limits


def _request(image, S, **options):
    return {"op": "render", "id": "r-1", "options": {"frames": 1, **options}}, {"image": image, "S": S}


def test_a_small_volume_for_a_big_photo_is_refused_before_resampling():
    """4096 x 4096 photo, (16, 2, 8, 8) volume, 1 frame: every other check passes, but S at the
    photo's size would be 16 x 2 x 4096 x 4096 complex64 = 4 GiB."""
    image = np.zeros((4096, 4096, 3), np.uint8)
    S = np.zeros((16, 2, 8, 8), np.complex64)
    with pytest.raises(ProtocolError) as exc:
        parse_render(*_request(image, S), Limits())
    e = exc.value
    assert e.code is ErrorCode.TOO_LARGE and "at the photo's size" in e.message and "4.0 GiB" in e.message
    assert f"at most {Limits().max_render_pixels // 16} pixels" in e.hint


def test_the_bound_is_k_times_photo_pixels_within_max_render_pixels():
    limits = Limits(max_render_pixels=16 * 40 * 30)
    S = np.zeros((16, 2, 8, 8), np.complex64)
    parse_render(*_request(np.zeros((30, 40, 3), np.uint8), S), limits)  # exactly at the limit
    with pytest.raises(ProtocolError, match="at the photo's size"):
        parse_render(*_request(np.zeros((30, 41, 3), np.uint8), S), limits)
    # fewer frequencies, the same photo: fits again
    parse_render(*_request(np.zeros((30, 41, 3), np.uint8), S[:8]), limits)


def test_frequencies_are_capped_whatever_volume_num_frames_says():
    image = np.zeros((8, 8, 3), np.uint8)
    S = np.zeros((MAX_RENDER_FREQS, 2, 8, 8), np.complex64)
    parse_render(*_request(image, S, volume_num_frames=100_000), Limits())
    with pytest.raises(ProtocolError) as exc:
        parse_render(*_request(image, np.zeros((MAX_RENDER_FREQS + 1, 2, 8, 8), np.complex64),
                               volume_num_frames=100_000), Limits())
    assert exc.value.code is ErrorCode.BAD_ARRAY and "frequencies" in exc.value.message


def test_banded_displacements_equal_the_plain_sum(monkeypatch):
    from image_dynamics.service import rendering

    rng = np.random.default_rng(0)
    S = (rng.normal(size=(16, 2, 37, 23)) + 1j * rng.normal(size=(16, 2, 37, 23))).astype(np.complex64)
    q = clip_coordinates(16, ClipTiming(frames=9, fps=30.0))
    want = displacements(S, q, 1.5)
    monkeypatch.setattr(rendering, "_BAND_VALUES", 16 * 2 * 23 * 5)  # 5 rows a band, the last one shorter
    got = rendering._banded_displacements(S, q, 1.5)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
