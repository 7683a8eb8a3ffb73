"""Motion textures <-> spectral volumes, in the project's one canonical convention.

A *motion texture* ``D`` has shape (T, 2, H, W): the (x, y) displacement in pixels, at frame t, of
the scene point that sits at pixel p in frame 0 (so ``D[0]`` is zero for real motion).

A *spectral volume* ``S`` has shape (K, 2, H, W), complex64, the first K temporal DFT terms of D:

    S_k(p) = (1/T) * sum_t D_t(p) * exp(-2 pi i k t / T),       k = 0 .. K-1
    D_t(p) = Re[ sum_k c_k S_k(p) * exp(2 pi i k t / T) ],    c_0 = 1, c_k = 2 (k >= 1)

The c_k = 2 folds the conjugate negative-frequency bins of a real signal into the positive ones,
so the round trip is exact for motion whose spectrum lies in bins 0 .. K-1 (and K < T/2). Every
kept frequency f_k = k * fps / T is a multiple of 1/T, so the reconstruction is periodic over T.
"""

from __future__ import annotations

import numpy as np

NUM_FREQS = 16  # K: the paper keeps 16 terms, DC included (0 .. 3.0 Hz at 0.2 Hz spacing)
NUM_FRAMES = 150  # T: a 5 s window ...
FPS = 30.0  # ... at 30 frames per second


def frequencies_hz(num_freqs: int = NUM_FREQS, num_frames: int = NUM_FRAMES, fps: float = FPS) -> np.ndarray:
    """The frequency in Hz of each kept bin: f_k = k * fps / T (float32, shape (K,))."""
    return (np.arange(num_freqs, dtype=np.float64) * fps / num_frames).astype(np.float32)


def bin_weights(num_freqs: int) -> np.ndarray:
    """c_k of the reconstruction: 1 for the DC bin, 2 for the others (float64, shape (K,))."""
    c = np.full(num_freqs, 2.0)
    c[0] = 1.0
    return c


def check_num_freqs(num_freqs: int, num_frames: int) -> None:
    if not 1 <= num_freqs <= num_frames // 2:
        # Bin T/2 (Nyquist) has no conjugate partner, so c_k = 2 would double it: keep K < T/2.
        raise ValueError(f"num_freqs must be in 1..{num_frames // 2} for {num_frames} frames, got {num_freqs}")


def motion_to_spectral(motion: np.ndarray, num_freqs: int = NUM_FREQS) -> np.ndarray:
    """Spectral volume (K, 2, H, W) complex64 of a motion texture (T, 2, H, W).

    Uses the real FFT over time; the 1/T normalisation matches the convention above.
    """
    motion = np.asarray(motion)
    if motion.ndim != 4 or motion.shape[1] != 2:
        raise ValueError(f"motion texture must have shape (T, 2, H, W), got {motion.shape}")
    num_frames = motion.shape[0]
    check_num_freqs(num_freqs, num_frames)
    spectrum = np.fft.rfft(motion.astype(np.float64, copy=False), axis=0)[:num_freqs] / num_frames
    return spectrum.astype(np.complex64)


def time_basis(times: np.ndarray, num_freqs: int = NUM_FREQS, num_frames: int = NUM_FRAMES) -> np.ndarray:
    """The modal coordinates q_k(t) = c_k exp(2 pi i k t / T) at (possibly fractional) frames.

    Shape (len(times), K), complex128. ``D_t = Re(sum_k S_k q_k(t))``: this is what the Blender side
    keyframes, so sub-frame times are allowed.
    """
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    k = np.arange(num_freqs, dtype=np.float64)
    return bin_weights(num_freqs)[None, :] * np.exp(2j * np.pi * np.outer(t, k) / num_frames)


def spectral_to_motion(
    spectral: np.ndarray,
    num_frames: int = NUM_FRAMES,
    times: np.ndarray | None = None,
) -> np.ndarray:
    """Motion texture from a spectral volume.

    With ``times=None`` returns all T frames (T, 2, H, W) float32 through the inverse real FFT;
    otherwise evaluates the modal sum at the given (fractional) frame times.
    """
    spectral = np.asarray(spectral)
    if spectral.ndim != 4 or spectral.shape[1] != 2:
        raise ValueError(f"spectral volume must have shape (K, 2, H, W), got {spectral.shape}")
    num_freqs = spectral.shape[0]
    check_num_freqs(num_freqs, num_frames)
    if times is None:
        full = np.zeros((num_frames // 2 + 1,) + spectral.shape[1:], dtype=np.complex128)
        full[:num_freqs] = spectral
        # irfft of X = T * S doubles every bin except DC (and Nyquist, which we never fill).
        return np.fft.irfft(full * num_frames, n=num_frames, axis=0).astype(np.float32)
    q = time_basis(times, num_freqs, num_frames)  # (N, K)
    flat = spectral.reshape(num_freqs, -1).astype(np.complex128)
    out = np.real(q @ flat)
    return out.reshape((q.shape[0],) + spectral.shape[1:]).astype(np.float32)


def amplitude(spectral: np.ndarray) -> np.ndarray:
    """Per-pixel, per-frequency motion amplitude in pixels, shape (K, H, W).

    |c_k S_k| over both axes: the peak excursion a pure mode k contributes (phase-invariant).
    """
    s = np.asarray(spectral)
    c = bin_weights(s.shape[0]).reshape(-1, 1, 1)
    return (c * np.sqrt(np.abs(s[:, 0]) ** 2 + np.abs(s[:, 1]) ** 2)).astype(np.float32)


def mean_motion_magnitude(spectral: np.ndarray, num_frames: int = NUM_FRAMES) -> np.ndarray:
    """Mean over the T frames of |D_t(p)| in pixels, shape (H, W).

    The quantity the paper's filters and softmax-splatting weights use.
    """
    motion = spectral_to_motion(spectral, num_frames)
    return np.sqrt(motion[:, 0] ** 2 + motion[:, 1] ** 2).mean(axis=0)
