"""Wind, gusts and oscillator physics: where every synthetic source's spectrum comes from.

All spectra live on the canonical bins f_k = k * fps / T (0.2 Hz apart, k = 0..15) and only bins
1..15 are filled here (the DC bin is set later so that a(0) = 0), so every signal is periodic over
the T = 150-frame window and band-limited exactly like a real spectral volume.

- ``Wind``: one scene's wind pressure fluctuation. A base level modulated by a few gusts (Gaussian
  bursts in time, wrapped around the periodic window) and turbulence with a von Karman-like
  spectrum; a gust front travels across the image at ``front_speed`` px/s, so a point at x sees the
  force delayed by x / v (phase lag exp(-2 pi i f_k x / v)). Each element also gets its own
  turbulence on top.
- ``oscillator_response``: the damped single-degree-of-freedom transfer function, normalised to 1
  at 0 Hz: H(f) = 1 / (1 - (f/fn)^2 + 2 i zeta f/fn).
- Natural-frequency rules: cantilevers (stems, blades, reeds, trunks) f = 0.56 c r / L^2 (first
  bending mode of a uniform rod of radius r and length L, c = sqrt(E/rho)), lowered by a tip mass
  (flower heads, foliage); pendulums f = sqrt(g / L) / (2 pi). Lengths in metres from the scene's
  pixels-per-metre, so longer and thinner sways slower whatever the framing. Clamped to the band
  the spectral volume can hold.
"""

from __future__ import annotations

import numpy as np

from ..motion.spectral import FPS, NUM_FRAMES, NUM_FREQS, frequencies_hz

G = 9.81
F_MIN, F_MAX = 0.3, 3.0


def bins_hz(num_freqs: int = NUM_FREQS) -> np.ndarray:
    return frequencies_hz(num_freqs, NUM_FRAMES, FPS).astype(np.float64)


def cantilever_frequency(length_m, radius_m, wave_speed: float = 150.0, tip_mass_ratio=0.0,
                         fmin: float = F_MIN, fmax: float = F_MAX):
    """First bending frequency (Hz) of a clamped rod: 0.56 * c * r / L^2 / sqrt(1 + 4 mu).

    ``wave_speed`` c = sqrt(E / rho) in m/s (grass ~100-200, green stems ~150-300, wood ~400-700);
    ``tip_mass_ratio`` mu = tip mass / rod mass (a flower head, a foliage crown).
    """
    L = np.maximum(np.asarray(length_m, dtype=np.float64), 1e-3)
    f = 0.5596 * wave_speed * np.asarray(radius_m, dtype=np.float64) / L**2
    f = f / np.sqrt(1.0 + 4.0 * np.asarray(tip_mass_ratio, dtype=np.float64))
    return np.clip(f, fmin, fmax)


def pendulum_frequency(length_m, fmin: float = 0.2, fmax: float = F_MAX):
    """Small-angle pendulum frequency (Hz): sqrt(g / L) / (2 pi)."""
    L = np.maximum(np.asarray(length_m, dtype=np.float64), 1e-3)
    return np.clip(np.sqrt(G / L) / (2 * np.pi), fmin, fmax)


def oscillator_response(fn, zeta, num_freqs: int = NUM_FREQS) -> np.ndarray:
    """H(f_k) for oscillators with natural frequency fn (Hz) and damping ratio zeta.

    Broadcasts: fn and zeta of shape (...) give (..., K) complex128; H(0) = 1, |H(fn)| = 1/(2 zeta).
    """
    fn = np.asarray(fn, dtype=np.float64)[..., None]
    zeta = np.asarray(zeta, dtype=np.float64)[..., None]
    r = bins_hz(num_freqs) / fn
    return 1.0 / (1.0 - r**2 + 2j * zeta * r)


def turbulence_spectrum(f0: float = 0.6, num_freqs: int = NUM_FREQS) -> np.ndarray:
    """Amplitude (sqrt of power) of a von Karman-like spectrum on bins 1..K-1 (bin 0 is zero)."""
    f = bins_hz(num_freqs)
    amp = (1.0 + (f / f0) ** 2) ** (-5.0 / 12.0)
    amp[0] = 0.0
    return amp


def random_spectrum(rng: np.random.Generator, amp: np.ndarray) -> np.ndarray:
    """Complex Gaussian bins with per-bin standard deviation ``amp`` (a band-limited random signal)."""
    z = rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape)
    return z * amp / np.sqrt(2.0)


def time_to_bins(signal: np.ndarray, num_freqs: int = NUM_FREQS) -> np.ndarray:
    """Canonical bins (k = 0..K-1) of a periodic time signal sampled at the T frames (last axis)."""
    T = signal.shape[-1]
    return np.fft.rfft(signal, axis=-1)[..., :num_freqs] / T


def bins_to_time(spec: np.ndarray, num_frames: int = NUM_FRAMES) -> np.ndarray:
    """Inverse of ``time_to_bins`` (real signal over the T frames, last axis)."""
    full = np.zeros(spec.shape[:-1] + (num_frames // 2 + 1,), dtype=np.complex128)
    full[..., : spec.shape[-1]] = spec
    return np.fft.irfft(full * num_frames, n=num_frames, axis=-1)


def narrowband(rng: np.random.Generator, f_center: float, bandwidth: float, num_freqs: int = NUM_FREQS) -> np.ndarray:
    """Random narrow-band spectrum around f_center (Hz), unit-ish rms (flutter, flicker)."""
    f = bins_hz(num_freqs)
    amp = np.exp(-0.5 * ((f - f_center) / max(bandwidth, 0.05)) ** 2)
    amp[0] = 0.0
    amp /= np.sqrt((amp**2).sum() + 1e-12)
    return random_spectrum(rng, amp)


class Wind:
    """One scene's wind: ``force(x)`` gives the relative pressure-fluctuation spectrum at column x.

    Spectra are relative to the mean pressure (dimensionless): an element with mean static
    deflection delta responds with delta * force(x) * H(f). ``envelope`` is the normalised wind
    speed over the T frames (mean 1), used to modulate flutter and flicker with the gusts.
    """

    def __init__(self, rng: np.random.Generator, turbulence: float = 0.25, gustiness: float = 0.5,
                 front_speed: float = 400.0, direction: float = 1.0, num_freqs: int = NUM_FREQS):
        self.num_freqs = num_freqs
        self.turbulence = float(turbulence)
        self.front_speed = float(front_speed)
        self.direction = float(np.sign(direction) or 1.0)
        T = NUM_FRAMES
        t = np.arange(T) / FPS
        period = T / FPS
        speed = np.ones(T)
        self.gusts = []
        for _ in range(int(rng.integers(0, 4))):
            tc = rng.uniform(0, period)
            width = rng.uniform(0.4, 1.4)
            height = gustiness * rng.uniform(0.3, 1.0)
            dt = (t - tc + period / 2) % period - period / 2  # wrap: the window is periodic
            speed += height * np.exp(-0.5 * (dt / width) ** 2)
            self.gusts.append((tc, width, height))
        turb = bins_to_time(random_spectrum(rng, turbulence_spectrum(rng.uniform(0.4, 1.2), num_freqs)))
        turb *= self.turbulence / (turb.std() + 1e-9)
        speed = np.maximum(speed * (1.0 + turb), 0.05)
        self.envelope = speed / speed.mean()
        pressure = self.envelope**2
        self.base = time_to_bins(pressure / pressure.mean(), num_freqs)
        self.base[0] = 0.0
        self._f = bins_hz(num_freqs)
        self._rng_turb_amp = turbulence_spectrum(0.8, num_freqs)

    def force(self, x) -> np.ndarray:
        """Common force spectrum at column(s) x (px): (..., K) complex128, lagged by the front."""
        x = np.asarray(x, dtype=np.float64)[..., None]
        lag = np.exp(-2j * np.pi * self._f * (self.direction * x) / self.front_speed)
        return self.base * lag

    def element_force(self, rng: np.random.Generator, x, local: float = 0.3) -> np.ndarray:
        """Common force plus independent local turbulence (relative level ``local``)."""
        x = np.asarray(x, dtype=np.float64)
        common = self.force(x)
        scale = np.sqrt((np.abs(self.base) ** 2).sum() + 1e-12)
        own = random_spectrum(rng, np.broadcast_to(self._rng_turb_amp, common.shape))
        own *= local * scale / np.sqrt((self._rng_turb_amp**2).sum())
        return common + own

    def modulated(self, spec: np.ndarray, x: float = 0.0) -> np.ndarray:
        """A narrow-band spectrum (flutter) multiplied in time by the gust envelope at column x."""
        sig = bins_to_time(np.asarray(spec))
        shift = (self.direction * x / self.front_speed) * FPS
        env = np.interp((np.arange(NUM_FRAMES) - shift) % NUM_FRAMES, np.arange(NUM_FRAMES + 1),
                        np.append(self.envelope, self.envelope[0]))
        out = time_to_bins(sig * env, self.num_freqs)
        out[..., 0] = 0.0
        return out


def quadrature(spec: np.ndarray) -> np.ndarray:
    """The 90-degree-lagged partner of a spectrum (Hilbert pair): a travelling wave's second mode."""
    return -1j * np.asarray(spec)


__all__ = [
    "F_MAX",
    "F_MIN",
    "Wind",
    "bins_hz",
    "bins_to_time",
    "cantilever_frequency",
    "narrowband",
    "oscillator_response",
    "pendulum_frequency",
    "quadrature",
    "random_spectrum",
    "time_to_bins",
    "turbulence_spectrum",
]
