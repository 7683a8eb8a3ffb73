"""Image-space modal dynamics: pokes and wind acting on a spectral volume (paper sec. 4).

Following Davis et al. 2015 ("Image-Space Modal Bases for Plausible Manipulation of Objects in
Video"), each kept frequency bin k of a spectral volume ``S`` (K, 2, H, W) is treated as one
*mode*: ``S_k`` is its complex image-space shape (the modal basis) and a complex *modal
coordinate* ``q_k(t)`` says how much of it is present at time t, with amplitude and phase:

    D(t, p) = Re[ sum_k S_k(p) q_k(t) ]                                   (pixels)

This is the same identity as ``spectral.py`` with ``q_k(t) = c_k exp(2 pi i f_k t)`` (c_0 = 1,
c_k = 2): the predicted motion itself has coordinates of modulus 2 for k >= 1. Every function
below produces coordinates on that same scale, so ``displacement_from_coords`` works for both.

Each mode is a damped oscillator of unit mass (time in seconds):

    q_k'' + g_k q_k' + w_k^2 q_k = f_k(t),   w_k = 2 pi f_k (rad/s),   g_k = alpha + beta w_k^2

(Rayleigh damping). Defaults are the supplement's alpha = 0.4, beta = 0.08; the official demo
used 0.8 / 0.05 (``DEMO_ALPHA``, ``DEMO_BETA``). The ODE is real and linear, so a complex q is
just two real solutions at once (its real and imaginary parts), which is what carries the phase.

Choices (ours; the paper is silent):

* **DC is skipped by default** (as the demo does): the k = 0 "mode" has w = 0, i.e. no restoring
  force, so a poke or wind would move it permanently. ``skip_dc=True`` keeps its coordinate at 0.
* **Poke = pull and release.** A poke at pixel p with direction d (unit vector) and ``strength``
  in pixels sets the initial coordinates ``q_k(0) = strength * <S_k(p), d> / N`` with zero
  initial velocity, where ``<S_k(p), d> = conj(S_kx(p)) d_x + conj(S_ky(p)) d_y`` (the modal basis
  conjugate-dotted with the direction, as in Davis et al.: a complex number giving amplitude and
  phase) and ``N = max_p sum_k |S_k(p)|^2`` (``basis_normalization``; one constant per volume, so
  the response stays linear in the poke and superposition holds). With that N a poke of strength
  s moves the most mobile pixel by at most s pixels; static regions (S ~ 0) barely respond. A
  per-pixel normalization was rejected: it would make a poke on a nearly static wall explode.
* **Wind** is a spatially uniform force over time, ``strength(t)`` in pixels / s^2 (an
  image-space acceleration) along the unit direction ``dir(t)``, projected onto each mode as
  ``f_k(t) = strength(t) * mean_p <S_k(p), dir(t)> / N`` (mean over the mask; same N as pokes).
  For a single mode that is exactly a spring under acceleration a: static deflection a / w^2.
  Modes whose phases cancel across the image (incoherent flicker) get little force, coherent
  sway gets a lot.
* **Integration is exact**: ``force_response`` advances each mode with the closed-form 2x2 matrix
  exponential of the oscillator and the exact integral of a piecewise-linear force (first-order
  hold; ``hold="zero"`` for piecewise-constant). No step size restriction: stable for any dt,
  exact for constant and linear forces (the demo's clamped explicit Euler is neither).
"""

from __future__ import annotations

import numpy as np

from .spectral import frequencies_hz

ALPHA = 0.4  # supplement's Rayleigh damping, mass term (1/s)
BETA = 0.08  # supplement's Rayleigh damping, stiffness term (s)
DEMO_ALPHA = 0.8  # official web demo
DEMO_BETA = 0.05

__all__ = [
    "ALPHA",
    "BETA",
    "DEMO_ALPHA",
    "DEMO_BETA",
    "modal_frequencies_rad",
    "damping",
    "free_response",
    "force_response",
    "transition_coefficients",
    "basis_normalization",
    "poke_coordinates",
    "poke_response",
    "modal_forces_from_wind",
    "displacement_from_coords",
]


def modal_frequencies_rad(freqs_hz) -> np.ndarray:
    """Angular frequencies w_k = 2 pi f_k in rad/s (float64)."""
    return 2.0 * np.pi * np.asarray(freqs_hz, dtype=np.float64)


def damping(omega, alpha: float = ALPHA, beta: float = BETA) -> np.ndarray:
    """Rayleigh damping g = alpha + beta * w^2 (1/s) for angular frequencies ``omega`` (rad/s)."""
    if alpha < 0 or beta < 0:
        raise ValueError(f"damping coefficients must be >= 0, got alpha={alpha}, beta={beta}")
    omega = np.asarray(omega, dtype=np.float64)
    return alpha + beta * omega**2


# --------------------------------------------------------------------------------------------
# Closed-form kernels of x'' + g x' + w2 x = f. With a = g/2 and z = w2 - a^2:
#   C(t)  = e^{-at} cos(sqrt(z) t)            (cosh for z < 0, 1 for z = 0)
#   Sn(t) = e^{-at} sin(sqrt(z) t) / sqrt(z)  (sinh / sqrt(-z) for z < 0, t for z = 0)
# The free solution is x = x0 (C + a Sn) + v0 Sn, i.e. the transition matrix (= expm(A t),
# A = [[0, 1], [-w2, -g]]) is [[C + a Sn, Sn], [-w2 Sn, C - a Sn]]. Sn is the impulse response;
# I = int_0^t Sn and J = int_0^t I give the exact response to piecewise-linear forces.
# Each quantity is evaluated in the branch where it has no cancellation (series near the
# critical point / for short times, decay-rate form when clearly overdamped).
# --------------------------------------------------------------------------------------------


def _kernels(w2: np.ndarray, g: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C, Sn) as defined above, broadcast over w2, g, t (float64)."""
    w2, g, t = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (w2, g, t)))
    a = 0.5 * g
    z = w2 - a * a
    x = z * t * t
    decay = np.exp(-a * t)
    cosc = np.empty_like(x)
    sinc = np.empty_like(x)

    small = np.abs(x) < 1.0
    if small.any():  # power series in x = z t^2: cos(sqrt(x)) and sin(sqrt(x)) / sqrt(x)
        xs = x[small]
        tc = np.ones_like(xs)
        ts = np.ones_like(xs)
        sc = np.zeros_like(xs)
        ss = np.zeros_like(xs)
        for n in range(12):
            sc += tc
            ss += ts
            tc = tc * (-xs) / ((2 * n + 1) * (2 * n + 2))
            ts = ts * (-xs) / ((2 * n + 2) * (2 * n + 3))
        cosc[small] = sc
        sinc[small] = t[small] * ss
    C = np.empty_like(x)
    Sn = np.empty_like(x)
    C[small] = decay[small] * cosc[small]
    Sn[small] = decay[small] * sinc[small]

    under = ~small & (z > 0)
    if under.any():
        wd = np.sqrt(z[under])
        tt = t[under]
        C[under] = decay[under] * np.cos(wd * tt)
        Sn[under] = decay[under] * np.sin(wd * tt) / wd

    over = ~small & (z < 0)
    if over.any():  # decay rates l1 <= l2 of the two real exponentials; never overflows
        r = np.sqrt(-z[over])
        aa = a[over]
        tt = t[over]
        l1 = w2[over] / (aa + r)  # = a - r without cancellation
        l2 = aa + r
        e1 = np.exp(-l1 * tt)
        e2 = np.exp(-l2 * tt)
        C[over] = 0.5 * (e1 + e2)
        Sn[over] = (e1 - e2) / (2.0 * r)
    return C, Sn


def _e1(x: np.ndarray) -> np.ndarray:
    """(1 - e^{-x}) / x for x >= 0 (1 at 0)."""
    out = np.ones_like(x)
    nz = x > 0
    out[nz] = -np.expm1(-x[nz]) / x[nz]
    return out


def _e2(x: np.ndarray) -> np.ndarray:
    """(x - 1 + e^{-x}) / x^2 for x >= 0 (1/2 at 0)."""
    out = np.empty_like(x)
    small = x < 0.1
    xs = x[small]
    term = np.full_like(xs, 0.5)
    acc = np.zeros_like(xs)
    for n in range(12):  # sum_n (-x)^n / (n + 2)!
        acc += term
        term = term * (-xs) / (n + 3)
    out[small] = acc
    xl = x[~small]
    out[~small] = (xl + np.expm1(-xl)) / (xl * xl)
    return out


def _integrals(w2: np.ndarray, g: np.ndarray, t: np.ndarray, C: np.ndarray, Sn: np.ndarray):
    """I = int_0^t Sn and J = int_0^t I (same broadcast shape as C)."""
    w2, g, t = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (w2, g, t)))
    a = 0.5 * g
    z = w2 - a * a
    I = np.empty(C.shape)
    J = np.empty(C.shape)

    series = (w2 * t * t < 0.25) & (g * t < 1.0)
    if series.any():
        # Taylor series of the impulse response: e_n = Sn^(n)(0) t^n, e_0 = 0, e_1 = t,
        # e_{n+2} = -(g t) e_{n+1} - (w2 t^2) e_n; I = sum e_n t / (n+1)!, J = sum e_n t^2 / (n+2)!
        gt = (g * t)[series]
        wt2 = (w2 * t * t)[series]
        ts = t[series]
        e_prev = np.zeros_like(gt)
        e_cur = np.ones_like(gt)  # e_1 / t
        fi = 0.5  # 1 / (n+1)! at n = 1
        fj = 1.0 / 6.0  # 1 / (n+2)! at n = 1
        si = np.zeros_like(gt)
        sj = np.zeros_like(gt)
        for n in range(1, 40):
            si += e_cur * fi
            sj += e_cur * fj
            e_prev, e_cur = e_cur, -gt * e_cur - wt2 * e_prev
            fi /= n + 2
            fj /= n + 3
        I[series] = si * ts * ts
        J[series] = sj * ts * ts * ts

    over = ~series & (z < -0.01 * a * a)  # clearly overdamped (r > 0.1 a): decay-rate form
    if over.any():
        r = np.sqrt(-z[over])
        aa = a[over]
        to = t[over]
        l1 = w2[over] / (aa + r)
        l2 = aa + r
        I[over] = to * (_e1(l1 * to) - _e1(l2 * to)) / (l2 - l1)
        J[over] = to * to * (_e2(l1 * to) - _e2(l2 * to)) / (l2 - l1)

    rest = ~series & ~over  # here w2 t^2 is not small: the static-deflection form is accurate
    if rest.any():
        w2r = w2[rest]
        Ir = (1.0 - C[rest] - a[rest] * Sn[rest]) / w2r
        I[rest] = Ir
        J[rest] = (t[rest] - Sn[rest] - g[rest] * Ir) / w2r
    return I, J


def _mode_params(freqs_hz, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    w = modal_frequencies_rad(freqs_hz).reshape(-1)
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("modal frequencies must be finite and >= 0")
    return w * w, damping(w, alpha, beta)


def transition_coefficients(freqs_hz, dt: float, alpha: float = ALPHA, beta: float = BETA) -> dict:
    """The exact one-step update of every mode over ``dt`` seconds, as arrays of shape (K,).

    With state (q, v) and a force f varying linearly from f0 to f1 over the step:
        q1 = phi_qq q0 + phi_qv v0 + gq0 f0 + gq1 (f1 - f0) / dt
        v1 = phi_vq q0 + phi_vv v0 + gv0 f0 + gv1 (f1 - f0) / dt
    (``gq1``/``gv1`` drop out for a zero-order hold). Blender-side code can reuse these.
    """
    if not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    w2, g = _mode_params(freqs_hz, alpha, beta)
    t = np.full_like(w2, float(dt))
    C, Sn = _kernels(w2, g, t)
    I, J = _integrals(w2, g, t, C, Sn)
    a = 0.5 * g
    return {
        "phi_qq": C + a * Sn,
        "phi_qv": Sn,
        "phi_vq": -w2 * Sn,
        "phi_vv": C - a * Sn,
        "gq0": I,
        "gv0": Sn,
        "gq1": J,
        "gv1": I,
    }


def free_response(
    freqs_hz,
    q0,
    v0,
    times_s,
    alpha: float = ALPHA,
    beta: float = BETA,
    return_velocity: bool = False,
):
    """Exact free decay of every mode: q_k(t) for the given times (seconds), shape (N, K) complex.

    Under-, critically and over-damped modes (and w = 0) all use the closed-form solution.
    ``q0``/``v0`` are (K,) (complex allowed) or scalars. Negative times are rejected.
    """
    w2, g = _mode_params(freqs_hz, alpha, beta)
    K = w2.shape[0]
    q0 = np.broadcast_to(np.asarray(q0, dtype=np.complex128), (K,))
    v0 = np.broadcast_to(np.asarray(v0, dtype=np.complex128), (K,))
    t = np.asarray(times_s, dtype=np.float64).reshape(-1)
    if np.any(t < 0):
        raise ValueError("free_response times must be >= 0 (seconds since release)")
    C, Sn = _kernels(w2[None, :], g[None, :], t[:, None])
    a = 0.5 * g[None, :]
    q = q0[None, :] * (C + a * Sn) + v0[None, :] * Sn
    if not return_velocity:
        return q
    v = -w2[None, :] * Sn * q0[None, :] + (C - a * Sn) * v0[None, :]
    return q, v


def force_response(
    freqs_hz,
    forces,
    dt: float,
    alpha: float = ALPHA,
    beta: float = BETA,
    q0=0.0,
    v0=0.0,
    hold: str = "linear",
    return_velocity: bool = False,
):
    """Integrate every mode under a force time series, exactly: q (N, K) complex128.

    ``forces`` (N, K), real or complex, are samples f_n = f(n dt) (n = 0 .. N-1, seconds); the
    force between samples is linear (``hold="linear"``, first-order hold) or constant
    (``hold="zero"``). Row n of the result is the state at t = n dt, row 0 being ``q0``.
    Each step applies the closed-form matrix exponential (``transition_coefficients``), so the
    scheme is unconditionally stable and has no error for forces that really are piecewise
    linear (constant) - only the sampling of f is approximated.
    """
    if hold not in ("linear", "zero"):
        raise ValueError(f"hold must be 'linear' or 'zero', got {hold!r}")
    f = np.asarray(forces)
    freqs = np.asarray(freqs_hz, dtype=np.float64).reshape(-1)
    K = freqs.shape[0]
    if f.ndim != 2 or f.shape[1] != K:
        raise ValueError(f"forces must have shape (N, {K}), got {f.shape}")
    f = f.astype(np.complex128)
    co = transition_coefficients(freqs, dt, alpha, beta)
    N = f.shape[0]
    q = np.empty((N, K), dtype=np.complex128)
    v = np.empty((N, K), dtype=np.complex128)
    if N == 0:
        return (q, v) if return_velocity else q
    q[0] = np.broadcast_to(np.asarray(q0, dtype=np.complex128), (K,))
    v[0] = np.broadcast_to(np.asarray(v0, dtype=np.complex128), (K,))
    linear = hold == "linear"
    for n in range(N - 1):
        qn, vn, fn = q[n], v[n], f[n]
        q[n + 1] = co["phi_qq"] * qn + co["phi_qv"] * vn + co["gq0"] * fn
        v[n + 1] = co["phi_vq"] * qn + co["phi_vv"] * vn + co["gv0"] * fn
        if linear:
            slope = (f[n + 1] - fn) / dt
            q[n + 1] += co["gq1"] * slope
            v[n + 1] += co["gv1"] * slope
    return (q, v) if return_velocity else q


# --------------------------------------------------------------------------------------------
# Projections of pokes and wind onto the modal bases
# --------------------------------------------------------------------------------------------


def _check_bases(S) -> np.ndarray:
    S = np.asarray(S)
    if S.ndim != 4 or S.shape[1] != 2:
        raise ValueError(f"spectral volume must have shape (K, 2, H, W), got {S.shape}")
    return S


def _mode_mask(K: int, skip_dc: bool) -> np.ndarray:
    m = np.ones(K, dtype=bool)
    if skip_dc:
        m[0] = False
    return m


def basis_normalization(S, skip_dc: bool = True) -> float:
    """N = max over pixels of sum_k |S_k(p)|^2 (both axes; DC left out with ``skip_dc``), px^2.

    One constant per volume; 1.0 when the volume has no motion (nothing to excite anyway).
    """
    S = _check_bases(S)
    used = S[_mode_mask(S.shape[0], skip_dc)]
    if used.size == 0:
        return 1.0
    energy = (np.abs(used.astype(np.complex128)) ** 2).sum(axis=(0, 1))
    n = float(energy.max())
    return n if n > 0 else 1.0


def _unit(d: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(d, axis=-1, keepdims=True)
    return np.divide(d, norm, out=np.zeros_like(d), where=norm > 0)


def _sample_bilinear(S: np.ndarray, x: float, y: float) -> np.ndarray:
    """S at a (sub)pixel position (x right, y down, pixel centres at integers), clamped: (K, 2)."""
    H, W = S.shape[2:]
    x = min(max(float(x), 0.0), W - 1.0)
    y = min(max(float(y), 0.0), H - 1.0)
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    x1, y1 = min(x0 + 1, W - 1), min(y0 + 1, H - 1)
    fx, fy = x - x0, y - y0
    s = S.astype(np.complex128)
    return (
        (1 - fx) * (1 - fy) * s[:, :, y0, x0]
        + fx * (1 - fy) * s[:, :, y0, x1]
        + (1 - fx) * fy * s[:, :, y1, x0]
        + fx * fy * s[:, :, y1, x1]
    )


def poke_coordinates(
    S,
    pixel_xy,
    direction_xy,
    strength: float,
    skip_dc: bool = True,
    normalization: float | None = None,
) -> np.ndarray:
    """Initial modal coordinates (K,) complex of a poke: strength * <S_k(p), d> / N (see module doc).

    ``pixel_xy`` is (x, y) in pixels (sub-pixel positions are bilinearly sampled), ``direction_xy``
    is normalised to unit length, ``strength`` is in pixels, ``normalization`` defaults to
    ``basis_normalization(S, skip_dc)``.
    """
    S = _check_bases(S)
    d = _unit(np.asarray(direction_xy, dtype=np.float64).reshape(2))
    sp = _sample_bilinear(S, pixel_xy[0], pixel_xy[1])  # (K, 2)
    n = basis_normalization(S, skip_dc) if normalization is None else float(normalization)
    q0 = float(strength) * (np.conj(sp) @ d) / n
    q0[~_mode_mask(S.shape[0], skip_dc)] = 0.0
    return q0


def poke_response(
    S,
    pixel_xy,
    direction_xy,
    strength: float,
    times_s,
    alpha: float = ALPHA,
    beta: float = BETA,
    *,
    freqs_hz=None,
    skip_dc: bool = True,
    normalization: float | None = None,
) -> np.ndarray:
    """Modal coordinates q_k(t) (N, K) complex after a poke released at t = 0 (pull and release).

    q_k(0) = ``poke_coordinates(...)``, q_k'(0) = 0, then exact free decay (``free_response``).
    ``freqs_hz`` defaults to the canonical f_k = k fps / T (30 fps, 150 frames).
    """
    S = _check_bases(S)
    if freqs_hz is None:
        freqs_hz = frequencies_hz(S.shape[0])
    q0 = poke_coordinates(S, pixel_xy, direction_xy, strength, skip_dc, normalization)
    return free_response(freqs_hz, q0, 0.0, times_s, alpha, beta)


def modal_forces_from_wind(
    S,
    direction_xy,
    strength,
    mask=None,
    skip_dc: bool = True,
    normalization: float | None = None,
) -> np.ndarray:
    """Modal forces f_k(t) (N, K) complex of a spatially uniform wind over time.

    ``direction_xy`` (N, 2) is normalised per step to unit length, ``strength`` (N,) is an
    image-space acceleration in px/s^2, ``mask`` (H, W) bool or non-negative weights selects
    where the wind acts (default everywhere). f_k(t) = strength(t) * mean_p <S_k(p), dir(t)> / N.
    """
    S = _check_bases(S)
    K, _, H, W = S.shape
    d = np.asarray(direction_xy, dtype=np.float64)
    if d.ndim == 1:
        d = d.reshape(1, 2)
    if d.ndim != 2 or d.shape[1] != 2:
        raise ValueError(f"direction_xy must have shape (N, 2), got {d.shape}")
    d = _unit(d)
    s = np.asarray(strength, dtype=np.float64).reshape(-1)
    if s.shape[0] == 1 and d.shape[0] > 1:
        s = np.repeat(s, d.shape[0])
    if d.shape[0] == 1 and s.shape[0] > 1:
        d = np.repeat(d, s.shape[0], axis=0)
    if s.shape[0] != d.shape[0]:
        raise ValueError(f"strength has {s.shape[0]} samples but direction_xy has {d.shape[0]}")
    if mask is None:
        weights = np.ones((H, W))
    else:
        weights = np.asarray(mask, dtype=np.float64)
        if weights.shape != (H, W) or np.any(weights < 0):
            raise ValueError(f"mask must be (H, W) = {(H, W)} with values >= 0, got {weights.shape}")
    total = weights.sum()
    if total <= 0:
        return np.zeros((d.shape[0], K), dtype=np.complex128)
    mean_basis = np.einsum("kcHW,HW->kc", S.astype(np.complex128), weights) / total  # (K, 2)
    n = basis_normalization(S, skip_dc) if normalization is None else float(normalization)
    f = s[:, None] * (d @ np.conj(mean_basis).T) / n  # (N, K)
    f[:, ~_mode_mask(K, skip_dc)] = 0.0
    return f


def displacement_from_coords(S, q, pixel_subset=None, dtype=np.float32) -> np.ndarray:
    """D(t, p) = Re(sum_k S_k(p) q_k(t)) in pixels.

    ``q`` is (N, K) (or (K,) for one time). The c_k weights of ``spectral.py`` live in q, not in
    S: ``q = spectral.time_basis(t)`` reproduces ``spectral_to_motion``. Returns (N, 2, H, W), or
    (N, 2, P) when ``pixel_subset`` is an (H, W) bool mask (pixels in row-major order) or a (P, 2)
    integer array of (x, y) pixel positions; the leading N is dropped for 1-D ``q``.
    """
    S = _check_bases(S)
    K, _, H, W = S.shape
    q = np.asarray(q)
    single = q.ndim == 1
    q2 = q.reshape(1, -1) if single else q
    if q2.ndim != 2 or q2.shape[1] != K:
        raise ValueError(f"modal coordinates must have shape (N, {K}), got {q.shape}")
    if pixel_subset is None:
        bases = S.reshape(K, 2 * H * W)
        tail: tuple[int, ...] = (2, H, W)
    else:
        sub = np.asarray(pixel_subset)
        if sub.dtype == bool:
            if sub.shape != (H, W):
                raise ValueError(f"pixel mask must have shape {(H, W)}, got {sub.shape}")
            picked = S[:, :, sub]  # (K, 2, P)
        else:
            if sub.ndim != 2 or sub.shape[1] != 2:
                raise ValueError(f"pixel_subset must be an (H, W) mask or (P, 2) (x, y) array, got {sub.shape}")
            xs, ys = sub[:, 0].astype(np.intp), sub[:, 1].astype(np.intp)
            if np.any((xs < 0) | (xs >= W) | (ys < 0) | (ys >= H)):
                raise ValueError("pixel_subset has positions outside the image")
            picked = S[:, :, ys, xs]
        tail = picked.shape[1:]
        bases = picked.reshape(K, -1)
    b = bases.astype(np.complex128)
    out = q2.real.astype(np.float64) @ b.real - q2.imag.astype(np.float64) @ b.imag
    out = out.reshape((q2.shape[0],) + tail).astype(dtype, copy=False)
    return out[0] if single else out
