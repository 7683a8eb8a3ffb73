"""Modal dynamics: exact damped oscillators, stable exact integration, pokes and wind."""

from __future__ import annotations

import numpy as np
import pytest

from image_dynamics.motion.modal import (
    ALPHA,
    BETA,
    basis_normalization,
    damping,
    displacement_from_coords,
    force_response,
    free_response,
    modal_forces_from_wind,
    modal_frequencies_rad,
    poke_coordinates,
    poke_response,
)
from image_dynamics.motion.spectral import frequencies_hz, spectral_to_motion, time_basis

TIMES = np.linspace(0.0, 12.0, 241)


def hz(w):
    return w / (2 * np.pi)


def test_frequencies_and_damping():
    np.testing.assert_allclose(modal_frequencies_rad([0.0, 0.5, 3.0]), [0.0, np.pi, 6 * np.pi])
    assert damping(2.0) == pytest.approx(ALPHA + BETA * 4.0)
    assert (ALPHA, BETA) == (0.4, 0.08)
    with pytest.raises(ValueError):
        damping(1.0, alpha=-1.0)


def test_free_decay_underdamped_matches_analytic():
    w = 2 * np.pi * 1.0
    g = ALPHA + BETA * w * w
    x0, v0 = 1.3 + 0.2j, -0.7 + 0.5j
    wd = np.sqrt(w * w - g * g / 4)
    A, B = x0, (v0 + g * x0 / 2) / wd
    expected = np.exp(-g * TIMES / 2) * (A * np.cos(wd * TIMES) + B * np.sin(wd * TIMES))
    q, v = free_response([1.0], x0, v0, TIMES, return_velocity=True)
    np.testing.assert_allclose(q[:, 0], expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(v[0, 0], v0, atol=1e-12)


def test_free_decay_all_canonical_bins_underdamped():
    f = frequencies_hz()[1:].astype(np.float64)
    w = 2 * np.pi * f
    g = damping(w)
    assert np.all(g < 2 * w)  # the supplement's damping keeps 0.2..3 Hz underdamped
    wd = np.sqrt(w * w - g * g / 4)
    q = free_response(f, 1.0, 0.0, TIMES)
    expected = np.exp(-g * TIMES[:, None] / 2) * (np.cos(wd * TIMES[:, None]) + g / (2 * wd) * np.sin(wd * TIMES[:, None]))
    np.testing.assert_allclose(q.real, expected, atol=1e-9)


def test_free_decay_overdamped_and_critical_and_dc():
    x0, v0 = 0.8, 2.5
    # overdamped: w = 1, g = 5
    w, g = 1.0, 5.0
    l1, l2 = (-g + np.sqrt(g * g - 4 * w * w)) / 2, (-g - np.sqrt(g * g - 4 * w * w)) / 2
    c2 = (v0 - l1 * x0) / (l2 - l1)
    c1 = x0 - c2
    q = free_response([hz(w)], x0, v0, TIMES, alpha=g, beta=0.0)
    np.testing.assert_allclose(q[:, 0].real, c1 * np.exp(l1 * TIMES) + c2 * np.exp(l2 * TIMES), atol=1e-9)
    # critical: w = 2, g = 4
    q = free_response([hz(2.0)], x0, v0, TIMES, alpha=4.0, beta=0.0)
    np.testing.assert_allclose(q[:, 0].real, np.exp(-2 * TIMES) * (x0 + (v0 + 2 * x0) * TIMES), atol=1e-9)
    # nearly critical from both sides stays continuous
    qa = free_response([hz(2.0)], x0, v0, TIMES, alpha=4.0 * (1 + 1e-9), beta=0.0)
    qb = free_response([hz(2.0)], x0, v0, TIMES, alpha=4.0 * (1 - 1e-9), beta=0.0)
    np.testing.assert_allclose(qa, q, atol=1e-8)
    np.testing.assert_allclose(qb, q, atol=1e-8)
    # DC (w = 0): a free particle with drag
    q = free_response([0.0], x0, v0, TIMES, alpha=0.4, beta=0.0)
    np.testing.assert_allclose(q[:, 0].real, x0 + v0 * (1 - np.exp(-0.4 * TIMES)) / 0.4, atol=1e-9)


@pytest.mark.parametrize("dt", [1 / 30, 0.37, 10.0])
def test_zero_force_integration_equals_free_decay(dt):
    f = np.array([0.0, 0.2, 1.0, 3.0, hz(2.0)])
    alpha = 0.4
    N = 40
    q0 = np.array([1.0, 0.5j, 1 - 1j, 2.0, 0.3])
    v0 = np.array([0.3, 0.0, 1.0, -2.0, 1j])
    q = force_response(f, np.zeros((N, 5)), dt, alpha, BETA, q0, v0)
    ref = free_response(f, q0, v0, np.arange(N) * dt, alpha, BETA)
    np.testing.assert_allclose(q, ref, atol=1e-10)


def test_constant_force_exact_and_converges_to_static_deflection():
    f_hz = np.array([0.2, 1.0, 3.0])
    w = 2 * np.pi * f_hz
    g = damping(w)
    force = np.array([1.0, -2.0 + 1j, 5.0])
    dt, N = 1 / 30, 30 * 60
    q = force_response(f_hz, np.tile(force, (N, 1)), dt)
    t = np.arange(N)[:, None] * dt
    wd = np.sqrt(w * w - g * g / 4)
    step = 1 - np.exp(-g * t / 2) * (np.cos(wd * t) + g / (2 * wd) * np.sin(wd * t))
    np.testing.assert_allclose(q, force / w**2 * step, atol=1e-9)
    np.testing.assert_allclose(q[-1], force / w**2, rtol=1e-6)
    qz = force_response(f_hz, np.tile(force, (N, 1)), dt, hold="zero")
    np.testing.assert_allclose(qz, q, atol=1e-9)  # both holds are exact for a constant force


def test_linear_force_first_order_hold_is_exact_at_large_dt():
    w, g = 3.0, 0.7
    dt, N = 0.5, 30
    t = np.arange(N) * dt
    q = force_response([hz(w)], t[:, None], dt, alpha=g, beta=0.0)[:, 0]
    # particular t / w^2 - g / w^4 plus the free decay that makes q(0) = q'(0) = 0
    hom = free_response([hz(w)], g / w**4, -1 / w**2, t, alpha=g, beta=0.0)[:, 0]
    np.testing.assert_allclose(q.real, t / w**2 - g / w**4 + hom.real, atol=1e-10)


def test_sinusoidal_force_steady_state_amplitude_and_phase():
    w0 = 2 * np.pi * 0.8
    g = damping(w0)
    dt, N = 1 / 120, 120 * 30
    t = np.arange(N) * dt
    for Om in (2 * np.pi * 0.5, w0, 2 * np.pi * 2.0):
        q = force_response([hz(w0)], np.exp(1j * Om * t)[:, None], dt)[:, 0]
        H = q[-200:] / np.exp(1j * Om * t[-200:])  # steady state: q = H(Om) e^{i Om t}
        amp = 1 / np.sqrt((w0**2 - Om**2) ** 2 + (g * Om) ** 2)
        phase = -np.arctan2(g * Om, w0**2 - Om**2)
        np.testing.assert_allclose(np.abs(H), amp, rtol=1e-3)
        np.testing.assert_allclose(np.angle(H), phase, atol=2e-3)
        # a real force cos(Om t) gives the real response amp cos(Om t + phase)
        qr = force_response([hz(w0)], np.cos(Om * t)[:, None], dt)[-200:, 0]
        np.testing.assert_allclose(qr.real, amp * np.cos(Om * t[-200:] + phase), atol=2e-3 * amp)
        assert np.abs(qr.imag).max() == 0


def test_huge_dt_stable_where_explicit_euler_explodes():
    f_hz, dt, N, force = 3.0, 10.0, 20, 4.0
    w = 2 * np.pi * f_hz
    g = damping(w)
    q = force_response([f_hz], np.full((N, 1), force), dt, q0=1.0, v0=-3.0)
    assert np.all(np.isfinite(q))
    np.testing.assert_allclose(q[1:, 0].real, force / w**2, rtol=1e-9)
    # explicit Euler on the same problem
    x, v = 1.0, -3.0
    for _ in range(N):
        x, v = x + dt * v, v + dt * (force - g * v - w * w * x)
    assert abs(x) > 1e20


def random_bases(seed=0, K=6, H=5, W=7):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(K, 2, H, W)) + 1j * rng.normal(size=(K, 2, H, W))).astype(np.complex64)


def test_poke_where_basis_is_zero_does_not_excite_mode():
    S = random_bases()
    S[3, :, 2, 4] = 0
    q = poke_response(S, (4, 2), (1.0, 1.0), 5.0, TIMES[:50])
    assert np.all(q[:, 3] == 0)
    assert np.all(q[:, 0] == 0)  # DC skipped by default
    assert np.all(np.abs(q[0, [1, 2, 4, 5]]) > 0)
    assert np.any(poke_coordinates(S, (4, 2), (1.0, 1.0), 5.0, skip_dc=False)[0] != 0)


def test_poke_superposition():
    S = random_bases(1)
    qa = poke_response(S, (1, 3), (0.0, 2.0), 2.0, TIMES)
    qb = poke_response(S, (5.5, 0.25), (-1.0, 0.3), 7.0, TIMES)
    n = basis_normalization(S)
    q0 = poke_coordinates(S, (1, 3), (0.0, 2.0), 2.0, normalization=n) + poke_coordinates(
        S, (5.5, 0.25), (-1.0, 0.3), 7.0, normalization=n
    )
    np.testing.assert_allclose(qa + qb, free_response(frequencies_hz(6, 150), q0, 0.0, TIMES), atol=1e-12)
    np.testing.assert_allclose(poke_response(S, (1, 3), (0.0, 1.0), 4.0, TIMES), 2 * qa, atol=1e-12)


def test_poke_moves_the_most_mobile_pixel_by_strength():
    S = np.zeros((4, 2, 3, 3), np.complex64)
    S[2, 0, 1, 1] = 0.7 * np.exp(1j * 1.1)  # one mode, x only, at the centre pixel
    S[2, 0, 0, 0] = 0.1
    q0 = poke_coordinates(S, (1, 1), (1.0, 0.0), 3.0)
    D = displacement_from_coords(S, q0, dtype=np.float64)
    np.testing.assert_allclose(D[:, 1, 1], [3.0, 0.0], atol=1e-6)
    assert D[0, 0, 0] == pytest.approx(3.0 * 0.1 * 0.7 * np.cos(-1.1) / 0.49, rel=1e-5)


def test_wind_static_deflection_and_mask():
    K, H, W = 3, 4, 4
    b = 0.5 * np.exp(0.4j)
    S = np.zeros((K, 2, H, W), np.complex64)
    S[1, 0] = b  # mode 1 is a uniform horizontal translation
    N, dt, strength = 30 * 40, 1 / 30, 2.0
    forces = modal_forces_from_wind(S, np.tile([3.0, 0.0], (N, 1)), np.full(N, strength))
    assert forces.shape == (N, K) and np.all(forces[:, 0] == 0) and np.all(forces[:, 2] == 0)
    f = frequencies_hz(K, 150)
    q = force_response(f, forces, dt)
    D = displacement_from_coords(S, q[-1], dtype=np.float64)
    w = 2 * np.pi * f[1]
    np.testing.assert_allclose(D[0], strength / w**2, rtol=1e-5)  # spring under acceleration a: a / w^2
    np.testing.assert_allclose(D[1], 0.0, atol=1e-12)
    assert np.all(modal_forces_from_wind(S, [[1.0, 0.0]], [1.0], mask=np.zeros((H, W))) == 0)
    perp = modal_forces_from_wind(S, [[0.0, 1.0]], [1.0])
    assert np.all(perp == 0)  # wind across a mode that cannot move that way
    with pytest.raises(ValueError):
        modal_forces_from_wind(S, np.zeros((3, 2)), np.ones(4))


def test_displacement_from_coords_matches_spectral_convention():
    rng = np.random.default_rng(3)
    S = random_bases(3)
    S[0] = S[0].real
    t = np.array([0.0, 2.5, 99.0])
    q = time_basis(t, 6, 150)
    np.testing.assert_allclose(displacement_from_coords(S, q), spectral_to_motion(S, 150, times=t), atol=1e-5)
    px = rng.integers(0, 5, size=(4, 2))
    sub = displacement_from_coords(S, q, pixel_subset=px)
    np.testing.assert_allclose(sub, spectral_to_motion(S, 150, times=t)[:, :, px[:, 1], px[:, 0]], atol=1e-5)
    with pytest.raises(ValueError):
        displacement_from_coords(S, np.zeros((2, 5)))
