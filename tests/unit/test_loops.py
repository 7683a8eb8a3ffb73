"""Loop closure: T-frame loops close by construction, others don't until snapped."""

from __future__ import annotations

import numpy as np
import pytest

from image_dynamics.motion.loops import (
    ModalMotion,
    loop_closure_error,
    loop_velocity_error,
    snap_to_loop,
    snapped_frequencies,
)
from image_dynamics.motion.spectral import spectral_to_motion

T, K = 150, 16


def random_volume(seed=0, H=4, W=5):
    rng = np.random.default_rng(seed)
    S = (rng.normal(size=(K, 2, H, W)) + 1j * rng.normal(size=(K, 2, H, W))) / (1 + np.arange(K))[:, None, None, None]
    S[0] = S[0].real  # real motion has a real DC term
    return S.astype(np.complex64)


def test_T_frame_loop_closes_by_construction_others_do_not():
    S = random_volume()
    assert loop_closure_error(S, T) < 1e-5
    assert loop_velocity_error(S, T) < 1e-6
    assert loop_closure_error(S, 90) > 0.1
    assert loop_velocity_error(S, 90) > 0.01
    assert loop_closure_error(S, 2 * T) < 1e-5


def test_closure_error_is_mean_endpoint_distance():
    S = random_volume(1)
    D = spectral_to_motion(S, T)
    expected = np.sqrt(((D[45] - D[0]) ** 2).sum(axis=0)).mean()
    assert loop_closure_error(S, 45) == pytest.approx(expected, rel=1e-5)


def test_velocity_error_matches_finite_difference():
    S = random_volume(2)
    h = 1e-3
    v = (spectral_to_motion(S, T, times=[-h, h, 60 - h, 60 + h]).astype(np.float64))
    v0, vL = (v[1] - v[0]) / (2 * h), (v[3] - v[2]) / (2 * h)
    expected = np.sqrt(((vL - v0) ** 2).sum(axis=0)).mean()
    assert loop_velocity_error(S, 60) == pytest.approx(expected, rel=1e-2)


def test_from_spectral_equals_spectral_to_motion():
    S = random_volume(3)
    m = ModalMotion.from_spectral(S, T)
    t = np.array([0.0, 1.5, 77.25, 149.0])
    np.testing.assert_allclose(m.displacement(t), spectral_to_motion(S, T, times=t), atol=2e-5)
    np.testing.assert_allclose(m.displacement(np.arange(T)), spectral_to_motion(S, T), atol=2e-5)
    np.testing.assert_allclose(m.freqs_hz, np.arange(K) * 0.2)


def test_snapped_frequencies():
    f = snapped_frequencies(K, 90, T)
    m = f * 90
    np.testing.assert_allclose(m, np.round(m))
    assert m[0] == 0 and np.all(m[1:] >= 1)
    np.testing.assert_array_equal(m[:6], [0, 1, 1, 2, 2, 3])  # k * 0.6 rounded, never 0 for k >= 1
    np.testing.assert_allclose(snapped_frequencies(K, T, T), np.arange(K) / T)  # L = T: unchanged
    with pytest.raises(ValueError):
        snapped_frequencies(K, 1, T)


def test_snapped_loop_of_90_frames_closes_exactly():
    S = random_volume(4)
    m = snap_to_loop(S, 90, fps=30.0)
    assert isinstance(m, ModalMotion)
    assert np.abs(m.displacement([0.0], dtype=np.float64)).max() == 0.0  # starts undistorted
    assert loop_closure_error(m, 90) < 1e-9
    assert loop_velocity_error(m, 90) < 1e-9
    assert loop_closure_error(m, 180) < 1e-9
    np.testing.assert_allclose(m.velocity([0.0]), m.velocity([90.0]), atol=1e-5)
    np.testing.assert_allclose(m.freqs_hz[1], 30.0 / 90)
    # the motion still moves about as much as the original
    D = m.displacement(np.arange(90))
    orig = spectral_to_motion(S, T) - spectral_to_motion(S, T, times=[0.0])
    assert 0.3 < np.abs(D).mean() / np.abs(orig).mean() < 3.0


def test_snap_without_offset_keeps_original_start():
    S = random_volume(5)
    m = snap_to_loop(S, 150, zero_at_start=False)
    np.testing.assert_allclose(m.displacement([0.0, 33.0]), spectral_to_motion(S, T, times=[0.0, 33.0]), atol=2e-5)


def test_velocity_analytic_matches_sampled_coordinates():
    S = random_volume(6)
    m = ModalMotion.from_spectral(S, T)
    times = np.linspace(0, 20, 2001)
    sampled = ModalMotion(S, m.coordinates(times), times=times)
    t = np.array([3.0, 10.05])
    np.testing.assert_allclose(sampled.displacement(t), m.displacement(t), atol=1e-3)
    np.testing.assert_allclose(sampled.velocity(t), m.velocity(t), atol=1e-3)
    with pytest.raises(ValueError):
        sampled.coordinates([25.0])


def test_pixel_subset_and_bad_shapes():
    S = random_volume(7)
    m = ModalMotion.from_spectral(S, T)
    full = m.displacement([5.0])
    mask = np.zeros((4, 5), bool)
    mask[1, 2] = mask[3, 0] = True
    np.testing.assert_allclose(m.displacement([5.0], pixel_subset=mask)[0], full[0][:, mask])
    np.testing.assert_allclose(m.displacement([5.0], pixel_subset=np.array([[2, 1]]))[0, :, 0], full[0, :, 1, 2])
    with pytest.raises(ValueError):
        ModalMotion(np.zeros((3, 2, 2)), lambda t: t)
    with pytest.raises(ValueError):
        loop_closure_error(np.zeros((K, 3, 2, 2), np.complex64), 90)
