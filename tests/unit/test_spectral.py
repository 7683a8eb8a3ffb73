"""The canonical spectral convention (spectral.py), checked against its written definition."""

from __future__ import annotations

import numpy as np
import pytest

from image_dynamics.motion.spectral import (
    amplitude,
    bin_weights,
    frequencies_hz,
    mean_motion_magnitude,
    motion_to_spectral,
    spectral_to_motion,
    time_basis,
)

T = 150
K = 16


def band_limited_motion(rng, T=T, K=K, H=3, W=4):
    """D_t = sum_{k<K} a_k cos(2 pi k t / T + phi_k) per pixel and axis (plus a constant)."""
    t = np.arange(T)[:, None, None, None, None]
    k = np.arange(K)[None, :, None, None, None]
    a = rng.normal(size=(1, K, 2, H, W))
    phi = rng.uniform(0, 2 * np.pi, size=(1, K, 2, H, W))
    phi[:, 0] = 0.0  # a real DC term
    return (a * np.cos(2 * np.pi * k * t / T + phi)).sum(axis=1)


def test_frequencies_and_weights():
    f = frequencies_hz()
    assert f.shape == (16,) and f.dtype == np.float32
    np.testing.assert_allclose(f, np.arange(16) * 0.2, atol=1e-6)
    np.testing.assert_array_equal(bin_weights(4), [1, 2, 2, 2])


def test_round_trip_band_limited_exact():
    D = band_limited_motion(np.random.default_rng(0))
    S = motion_to_spectral(D, K)
    assert S.shape == (K, 2, 3, 4) and S.dtype == np.complex64
    back = spectral_to_motion(S, T)
    assert back.shape == D.shape and back.dtype == np.float32
    np.testing.assert_allclose(back, D, atol=1e-5)


def test_irfft_equals_modal_sum_integer_and_fractional_times():
    rng = np.random.default_rng(1)
    S = motion_to_spectral(band_limited_motion(rng), K)
    full = spectral_to_motion(S, T)
    ints = np.arange(T)
    np.testing.assert_allclose(spectral_to_motion(S, T, times=ints), full, atol=2e-5)
    # fractional times against the explicit modal sum written in the module docstring
    times = np.array([0.25, 7.5, 33.3, 149.9])
    explicit = np.zeros((len(times),) + S.shape[1:])
    for i, t in enumerate(times):
        for k in range(K):
            c = 1.0 if k == 0 else 2.0
            explicit[i] += np.real(c * S[k].astype(np.complex128) * np.exp(2j * np.pi * k * t / T))
    np.testing.assert_allclose(spectral_to_motion(S, T, times=times), explicit, atol=2e-5)
    q = time_basis(times, K, T)
    assert q.shape == (4, K)
    np.testing.assert_allclose(np.abs(q[:, 1:]), 2.0)


def test_periodic_over_T():
    S = motion_to_spectral(band_limited_motion(np.random.default_rng(2)), K)
    t = np.array([0.0, 3.7, 41.0])
    np.testing.assert_allclose(spectral_to_motion(S, T, times=t + T), spectral_to_motion(S, T, times=t), atol=2e-5)


def test_amplitude_and_mean_magnitude_of_pure_sinusoid():
    A, k0 = 3.0, 4
    t = np.arange(T)
    D = np.zeros((T, 2, 2, 2))
    D[:, 0] = (A * np.cos(2 * np.pi * k0 * t / T + 0.3))[:, None, None]
    S = motion_to_spectral(D, K)
    amp = amplitude(S)
    assert amp.shape == (K, 2, 2)
    np.testing.assert_allclose(amp[k0], A, rtol=1e-5)
    assert np.abs(np.delete(amp, k0, axis=0)).max() < 1e-5
    mm = mean_motion_magnitude(S, T)
    expected = np.mean(np.abs(A * np.cos(2 * np.pi * k0 * t / T + 0.3)))
    np.testing.assert_allclose(mm, expected, rtol=1e-5)
    assert abs(expected - 2 * A / np.pi) < 0.02 * A  # mean |cos| -> 2 / pi


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        motion_to_spectral(np.zeros((T, 3, 4, 4)))
    with pytest.raises(ValueError):
        motion_to_spectral(np.zeros((T, 4, 4)))
    with pytest.raises(ValueError):
        spectral_to_motion(np.zeros((K, 4, 4), np.complex64))
    with pytest.raises(ValueError):
        motion_to_spectral(np.zeros((20, 2, 2, 2)), num_freqs=16)  # K must be <= T // 2
    with pytest.raises(ValueError):
        spectral_to_motion(np.zeros((K, 2, 2, 2), np.complex64), num_frames=20)


def test_independent_naive_reader():
    """S computed with a plain double loop from S_k = (1/T) sum_t D_t exp(-2 pi i k t / T)."""
    rng = np.random.default_rng(3)
    Tn, Kn = 12, 5
    D = rng.normal(size=(Tn, 2, 2, 3))
    naive = np.zeros((Kn, 2, 2, 3), dtype=np.complex128)
    for k in range(Kn):
        for t in range(Tn):
            naive[k] += D[t] * np.exp(-2j * np.pi * k * t / Tn)
    naive /= Tn
    np.testing.assert_allclose(motion_to_spectral(D, Kn), naive, atol=1e-6)
    # and the reader's reconstruction with c_k, truncated to Kn bins, equals the module's
    recon = np.zeros_like(D)
    for t in range(Tn):
        for k in range(Kn):
            recon[t] += np.real((1 if k == 0 else 2) * naive[k] * np.exp(2j * np.pi * k * t / Tn))
    np.testing.assert_allclose(spectral_to_motion(naive.astype(np.complex64), Tn), recon, atol=1e-5)
