"""Seamless loops: how well a spectral volume loops over L frames, and re-timing it so it does.

Every kept bin of a spectral volume has frequency k / T cycles per frame, so its reconstruction
(``spectral.spectral_to_motion``) is periodic over exactly T frames: a T-frame loop closes by
construction and measuring it says nothing. A loop of any other length L closes only if every
frequency is a multiple of 1 / L. ``loop_closure_error`` and ``loop_velocity_error`` measure the
jump in position and in velocity at the seam of an L-frame loop; ``snap_to_loop`` re-times the
volume so an L-frame loop closes exactly.

Motion is carried around as a ``ModalMotion``: modal bases ``S_k`` (K, 2, H, W) complex plus modal
coordinates ``q_k(t)`` (a function of time in frames, or samples of it):

    D(t, p) = Re[ sum_k S_k(p) q_k(t) ]

The canonical reconstruction is the special case q_k(t) = c_k exp(2 pi i k t / T)
(``ModalMotion.from_spectral``), a snapped loop uses other frequencies, and modal dynamics
(``modal.py``) produce sampled coordinates. Bases + coordinates are exactly what the Blender side
keyframes, so every producer of motion hands over this one object.

Choices (ours):

* ``snap_to_loop`` replaces f_k = k / T (cycles per frame) by the nearest *non-zero* multiple of
  1 / L, m_k / L with m_k = max(1, round(k L / T)) (ties round up); a swaying mode must not
  freeze. The DC bin stays at 0. For L < T several bins can land on the same frequency (their
  bases simply add); for L < T / 2 the lowest bins are sped up noticeably - prefer L near T or
  above.
* By default the snapped motion starts at rest position: the coordinates are
  q_k(t) = c_k (exp(2 pi i f_k t) - 1), i.e. the t = 0 value is subtracted, so D(0) = 0 exactly
  (a cinemagraph's first frame shows the photo undistorted) and the DC bin drops out. The
  subtraction lives in the coordinates, not in an extra per-pixel offset field, so Blender still
  needs only bases + coordinates.
* The closure error is the mean over pixels of the Euclidean distance |D(L) - D(0)| in pixels;
  the velocity error the mean of |D'(L) - D'(0)| in pixels per frame, D' from the modal sum
  analytically (no finite differences).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .modal import displacement_from_coords
from .spectral import FPS, NUM_FRAMES, check_num_freqs, bin_weights, spectral_to_motion

__all__ = [
    "ModalMotion",
    "snapped_frequencies",
    "snap_to_loop",
    "loop_closure_error",
    "loop_velocity_error",
]

CoordFn = Callable[[np.ndarray], np.ndarray]


class ModalMotion:
    """Motion as modal bases (K, 2, H, W) complex and modal coordinates q(t) (N, K) complex.

    ``coords`` is either a callable mapping times in frames (N,) to (N, K) complex coordinates,
    or an array (N, K) of samples at ``times`` (frames; default 0 .. N-1), linearly interpolated
    between samples (times outside the sampled range raise). ``coord_rates`` optionally gives
    dq/dt (per frame) analytically; without it ``velocity`` uses a central difference.
    ``freqs_cpf`` (cycles per frame, per bin) is kept when the motion is a sum of sinusoids.
    """

    def __init__(
        self,
        bases,
        coords: CoordFn | np.ndarray,
        *,
        times=None,
        coord_rates: CoordFn | None = None,
        freqs_cpf=None,
        fps: float = FPS,
    ) -> None:
        bases = np.asarray(bases)
        if bases.ndim != 4 or bases.shape[1] != 2:
            raise ValueError(f"modal bases must have shape (K, 2, H, W), got {bases.shape}")
        self.bases = bases.astype(np.complex64, copy=False)
        K = bases.shape[0]
        self.fps = float(fps)
        self.freqs_cpf = None if freqs_cpf is None else np.asarray(freqs_cpf, dtype=np.float64).reshape(K)
        self._rates = coord_rates
        if callable(coords):
            self._fn: CoordFn | None = coords
            self.samples = None
            self.sample_times = None
        else:
            c = np.asarray(coords, dtype=np.complex128)
            if c.ndim != 2 or c.shape[1] != K or c.shape[0] < 1:
                raise ValueError(f"sampled coordinates must have shape (N, {K}), got {c.shape}")
            st = np.arange(c.shape[0], dtype=np.float64) if times is None else np.asarray(times, dtype=np.float64)
            if st.shape != (c.shape[0],) or np.any(np.diff(st) <= 0):
                raise ValueError("sample times must be strictly increasing, one per coordinate row")
            self._fn = None
            self.samples = c
            self.sample_times = st

    # -- constructors --------------------------------------------------------------------
    @classmethod
    def periodic(
        cls,
        bases,
        freqs_cpf,
        weights=None,
        zero_at_start: bool = False,
        fps: float = FPS,
    ) -> "ModalMotion":
        """Sum of sinusoids: q_k(t) = w_k exp(2 pi i f_k t) (minus its t = 0 value if ``zero_at_start``).

        ``weights`` default to the c_k of ``spectral.py`` (1 for bin 0, 2 for the others).
        """
        bases = np.asarray(bases)
        K = bases.shape[0]
        f = np.asarray(freqs_cpf, dtype=np.float64).reshape(K)
        w = bin_weights(K) if weights is None else np.asarray(weights, dtype=np.float64).reshape(K)
        offset = 1.0 if zero_at_start else 0.0

        def coords(t: np.ndarray) -> np.ndarray:
            t = np.asarray(t, dtype=np.float64).reshape(-1)
            return w[None, :] * (np.exp(2j * np.pi * np.outer(t, f)) - offset)

        def rates(t: np.ndarray) -> np.ndarray:
            t = np.asarray(t, dtype=np.float64).reshape(-1)
            return w[None, :] * (2j * np.pi * f[None, :]) * np.exp(2j * np.pi * np.outer(t, f))

        return cls(bases, coords, coord_rates=rates, freqs_cpf=f, fps=fps)

    @classmethod
    def from_spectral(
        cls, S, num_frames: int = NUM_FRAMES, fps: float = FPS, zero_at_start: bool = False
    ) -> "ModalMotion":
        """The canonical (un-snapped) reconstruction: equals ``spectral_to_motion(S, num_frames, t)``."""
        S = np.asarray(S)
        if S.ndim != 4 or S.shape[1] != 2:
            raise ValueError(f"spectral volume must have shape (K, 2, H, W), got {S.shape}")
        check_num_freqs(S.shape[0], num_frames)
        freqs = np.arange(S.shape[0], dtype=np.float64) / num_frames
        return cls.periodic(S, freqs, zero_at_start=zero_at_start, fps=fps)

    # -- evaluation ----------------------------------------------------------------------
    @property
    def num_modes(self) -> int:
        return self.bases.shape[0]

    @property
    def freqs_hz(self) -> np.ndarray | None:
        return None if self.freqs_cpf is None else self.freqs_cpf * self.fps

    def coordinates(self, times) -> np.ndarray:
        """q(t) (N, K) complex128 at times in frames (fractional allowed)."""
        t = np.asarray(times, dtype=np.float64).reshape(-1)
        if self._fn is not None:
            q = np.asarray(self._fn(t), dtype=np.complex128)
            if q.shape != (t.shape[0], self.num_modes):
                raise ValueError(f"coordinate function returned {q.shape}, expected {(t.shape[0], self.num_modes)}")
            return q
        st = self.sample_times
        if np.any(t < st[0] - 1e-9) or np.any(t > st[-1] + 1e-9):
            raise ValueError(f"times outside the sampled range [{st[0]}, {st[-1]}]")
        s = self.samples
        out = np.empty((t.shape[0], self.num_modes), dtype=np.complex128)
        for k in range(self.num_modes):
            out[:, k] = np.interp(t, st, s[:, k].real) + 1j * np.interp(t, st, s[:, k].imag)
        return out

    def coordinate_rates(self, times, step: float = 1e-3) -> np.ndarray:
        """dq/dt (N, K) per frame: analytic when known, else a central difference of ``step`` frames."""
        t = np.asarray(times, dtype=np.float64).reshape(-1)
        if self._rates is not None:
            return np.asarray(self._rates(t), dtype=np.complex128)
        if self.sample_times is not None:  # keep the stencil inside the sampled range
            lo = np.maximum(t - step, self.sample_times[0])
            hi = np.minimum(t + step, self.sample_times[-1])
        else:
            lo, hi = t - step, t + step
        return (self.coordinates(hi) - self.coordinates(lo)) / (hi - lo)[:, None]

    def displacement(self, times, pixel_subset=None, dtype=np.float32) -> np.ndarray:
        """D(t) (N, 2, H, W) pixels at times in frames (see ``modal.displacement_from_coords``)."""
        return displacement_from_coords(self.bases, self.coordinates(times), pixel_subset, dtype)

    def velocity(self, times, pixel_subset=None, dtype=np.float32) -> np.ndarray:
        """dD/dt (N, 2, H, W) in pixels per frame."""
        return displacement_from_coords(self.bases, self.coordinate_rates(times), pixel_subset, dtype)


def snapped_frequencies(num_freqs: int, loop_frames: float, num_frames: int = NUM_FRAMES) -> np.ndarray:
    """Per-bin frequencies in cycles per frame after snapping to an L-frame loop (see module doc).

    Bin k (k / T) goes to m / L with m = max(1, round(k L / T)); bin 0 stays 0.
    """
    L = float(loop_frames)
    if not L >= 2:
        raise ValueError(f"loop_frames must be >= 2, got {loop_frames}")
    k = np.arange(num_freqs, dtype=np.float64)
    m = np.maximum(1.0, np.floor(k * L / num_frames + 0.5))  # nearest, ties up
    m[0] = 0.0
    return m / L


def snap_to_loop(
    S,
    loop_frames: float,
    fps: float = FPS,
    num_frames: int = NUM_FRAMES,
    zero_at_start: bool = True,
) -> ModalMotion:
    """Re-time a spectral volume so a loop of ``loop_frames`` frames closes exactly.

    Returns a ``ModalMotion`` with the same bases, the snapped frequencies (cycles per frame; the
    Hz value is ``freqs_cpf * fps``) and c_k weights; with ``zero_at_start`` D(0) = 0 exactly.
    Frequency ratios f_k / (fps / L) do not depend on fps; ``fps`` is kept for ``freqs_hz``.
    """
    S = np.asarray(S)
    if S.ndim != 4 or S.shape[1] != 2:
        raise ValueError(f"spectral volume must have shape (K, 2, H, W), got {S.shape}")
    check_num_freqs(S.shape[0], num_frames)
    freqs = snapped_frequencies(S.shape[0], loop_frames, num_frames)
    return ModalMotion.periodic(S, freqs, zero_at_start=zero_at_start, fps=fps)


def _seam(motion, loop_frames: float, num_frames: int, velocity: bool) -> float:
    L = float(loop_frames)
    if isinstance(motion, ModalMotion):
        fn = motion.velocity if velocity else motion.displacement
        ends = fn([0.0, L], dtype=np.float64)
    else:
        S = np.asarray(motion)
        if S.ndim != 4 or S.shape[1] != 2:
            raise ValueError(f"spectral volume must have shape (K, 2, H, W), got {S.shape}")
        if velocity:
            ends = ModalMotion.from_spectral(S, num_frames).velocity([0.0, L], dtype=np.float64)
        else:
            ends = spectral_to_motion(S, num_frames, times=np.array([0.0, L])).astype(np.float64)
    jump = ends[1] - ends[0]  # (2, H, W)
    return float(np.sqrt(jump[0] ** 2 + jump[1] ** 2).mean())


def loop_closure_error(motion, loop_frames: float, num_frames: int = NUM_FRAMES) -> float:
    """Mean over pixels of |D(L) - D(0)| in pixels for a loop of L = ``loop_frames`` frames.

    ``motion`` is a spectral volume (K, 2, H, W) (evaluated with ``spectral_to_motion`` over
    ``num_frames``) or a ``ModalMotion`` (``num_frames`` unused).
    """
    return _seam(motion, loop_frames, num_frames, velocity=False)


def loop_velocity_error(motion, loop_frames: float, num_frames: int = NUM_FRAMES) -> float:
    """Mean over pixels of |D'(L) - D'(0)| in pixels per frame, D' analytic from the modal sum."""
    return _seam(motion, loop_frames, num_frames, velocity=True)
