"""The compact, exact description of a synthetic scene's motion: modal sources and mode shapes.

A scene has M motion *sources* m = 1..M (index 0 means "no source"); each has a band-limited
modal coordinate with spectrum A[m] (complex, K = 16 bins, the canonical convention of
``motion.spectral``)::

    a_m(t) = Re[ sum_k c_k A[m, k] exp(2 pi i k t / T) ],   c_0 = 1, c_k = 2

with the DC term A[m, 0] = -2 sum_{k>=1} Re A[m, k] (real), so that a_m(0) = 0. Every pixel p
carries at most R = 4 (source index, mode-shape vector) pairs; its displacement is

    D_t(p) = sum_r u[r, :, p] * a_{idx[r, p]}(t)

and therefore its spectral volume is exactly ``S_k(p) = sum_r u[r, :, p] * A[idx[r, p], k]``.
Storing (idx uint16 (R, H, W), u float (R, 2, H, W), A complex64 (M+1, K)) instead of S
(K, 2, H, W) complex64 is 5x smaller before compression and recomputes S exactly.
"""

from __future__ import annotations

import numpy as np

from ..motion.spectral import NUM_FRAMES, NUM_FREQS, bin_weights, time_basis

MAX_SOURCES_PER_PIXEL = 4  # R


def zero_dc(A: np.ndarray) -> np.ndarray:
    """Return A with the DC bin set so that every a_m(0) = 0 (and source 0 stays all zero)."""
    A = np.array(A, dtype=np.complex128)
    A[..., 0] = -2.0 * np.real(A[..., 1:]).sum(axis=-1)
    if A.ndim == 2 and A.shape[0] > 0:
        A[0] = 0.0
    return A.astype(np.complex64)


def coordinates(A: np.ndarray, times: np.ndarray | None = None, num_frames: int = NUM_FRAMES) -> np.ndarray:
    """Modal coordinates a_m(t) (len(times), M+1) float64; all T frames when ``times`` is None."""
    A = np.asarray(A)
    if times is None:
        times = np.arange(num_frames)
    q = time_basis(np.asarray(times, dtype=np.float64), A.shape[-1], num_frames)  # (N, K)
    return np.real(q @ A.astype(np.complex128).T)


def volume_from_modal(idx: np.ndarray, u: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Exact spectral volume S (K, 2, H, W) complex64 from a per-pixel modal description.

    idx: (R, H, W) integer source indices (0 = none); u: (R, 2, H, W) real mode shapes (any
    float dtype); A: (M+1, K) complex spectra with A[0] = 0.
    """
    idx = np.asarray(idx)
    u = np.asarray(u)
    A = np.asarray(A, dtype=np.complex64)
    R, H, W = idx.shape
    if u.shape != (R, 2, H, W):
        raise ValueError(f"u must have shape {(R, 2, H, W)}, got {u.shape}")
    K = A.shape[1]
    AT = np.ascontiguousarray(A.T)  # (K, M+1)
    S = np.zeros((K, 2, H * W), dtype=np.complex64)
    flat_idx = idx.reshape(R, -1)
    flat_u = u.reshape(R, 2, -1).astype(np.float32, copy=False)
    for r in range(R):
        ir = flat_idx[r]
        used = np.flatnonzero(ir)
        if used.size == 0:
            continue
        if used.size == ir.size:
            g = AT[:, ir]  # (K, P)
            S[:, 0] += g * flat_u[r, 0]
            S[:, 1] += g * flat_u[r, 1]
        else:
            g = AT[:, ir[used]]
            S[:, 0, used] += g * flat_u[r, 0, used]
            S[:, 1, used] += g * flat_u[r, 1, used]
    return S.reshape(K, 2, H, W)


def displacement(idx: np.ndarray, u: np.ndarray, a_t: np.ndarray) -> np.ndarray:
    """Displacement field (2, H, W) float32 for one set of coordinates a_t (M+1,)."""
    a_t = np.asarray(a_t, dtype=np.float32)
    d = np.zeros(u.shape[1:], dtype=np.float32)
    for r in range(idx.shape[0]):
        ar = a_t[idx[r]]
        d += u[r] * ar
    return d


def displacements(idx: np.ndarray, u: np.ndarray, A: np.ndarray, times: np.ndarray | None = None,
                  num_frames: int = NUM_FRAMES) -> np.ndarray:
    """Motion texture D (len(times), 2, H, W) float32 at (possibly fractional) frame times."""
    a = coordinates(A, times, num_frames).astype(np.float32)
    out = np.empty((a.shape[0],) + tuple(u.shape[1:]), dtype=np.float32)
    for i in range(a.shape[0]):
        out[i] = displacement(idx, u, a[i])
    return out


def pad_sources(A: np.ndarray, num_sources: int) -> np.ndarray:
    """Zero-pad A (M+1, K) to (num_sources+1, K) for stacking scenes with different M."""
    A = np.asarray(A, dtype=np.complex64)
    out = np.zeros((num_sources + 1, A.shape[1]), dtype=np.complex64)
    out[: A.shape[0]] = A
    return out


class SourceBank:
    """The motion sources of one scene while it is being built.

    Elements ``add`` an unnormalised spectrum (bins 1..K-1; physics decides its shape and relative
    size) with a cap on its peak coordinate (no folding: cap * max|grad u| stays below ~0.3) and
    get the source index to put in their pixels' modal description. ``finalize`` fixes the DC bins
    (a(0) = 0), scales the whole scene so that the 90th percentile of the main sources' peak
    excursions equals the scene's wind level in pixels, and clamps each source to its cap.
    """

    def __init__(self, num_freqs: int = NUM_FREQS) -> None:
        self.num_freqs = num_freqs
        self._spectra: list[np.ndarray] = [np.zeros(num_freqs, np.complex128)]
        self._caps: list[float] = [np.inf]
        self._main: list[bool] = [False]
        self.kinds: list[str] = ["none"]
        self.A: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._spectra) - 1

    def add(self, spectrum: np.ndarray, cap: float = np.inf, kind: str = "", main: bool = True) -> int:
        spec = np.asarray(spectrum, np.complex128).reshape(-1)[: self.num_freqs]
        if not np.all(np.isfinite(spec)):
            raise ValueError("source spectrum must be finite")
        if len(self._spectra) >= np.iinfo(np.uint16).max:
            raise ValueError("too many sources for uint16 indices")
        self._spectra.append(spec)
        self._caps.append(float(cap))
        self._main.append(bool(main))
        self.kinds.append(kind)
        return len(self._spectra) - 1

    def finalize(self, level_px: float, num_frames: int = NUM_FRAMES) -> np.ndarray:
        """The scene's A (M+1, K) complex64 with every a_m(0) = 0 and every |a_m| within its cap."""
        A = np.asarray(zero_dc(np.stack(self._spectra)), np.complex128)
        peaks = np.abs(coordinates(A, None, num_frames)).max(axis=0)
        main = np.array(self._main) & (peaks > 1e-9)
        ref = float(np.percentile(peaks[main], 90)) if main.any() else float(peaks.max() or 1.0)
        scale = level_px / max(ref, 1e-9)
        caps = np.array(self._caps)
        final = peaks * scale
        factor = np.where(final > caps, caps / np.maximum(final, 1e-12), 1.0) * scale
        A = A * factor[:, None]
        A[0] = 0.0
        self.A = A.astype(np.complex64)
        return self.A


__all__ = [
    "SourceBank",
    "MAX_SOURCES_PER_PIXEL",
    "NUM_FREQS",
    "bin_weights",
    "coordinates",
    "displacement",
    "displacements",
    "pad_sources",
    "volume_from_modal",
    "zero_dc",
]
