"""Modal coordinates q_k(t) per *scene* frame for the three motion sources (bpy-free).

The mesh carries the modal bases S_k (``grid.vertex_bases``); the Geometry Nodes modifier sums
``Re(S_k q_k(t))``. This module produces the q_k to keyframe, as thin wrappers around the vendored
motion math (``loops.snapped_frequencies``, ``modal.poke_coordinates`` / ``free_response`` /
``modal_forces_from_wind`` / ``force_response``): nothing here re-derives the physics.

Time. The volume's own clock is *motion frames* tau at ``vol_fps`` (30 fps, T = 150 per period).
A scene frame f maps to tau = (f - start) * speed * vol_fps / scene_fps: motion plays in real time
whatever the scene's frame rate, ``speed`` times faster (slow motion below 1).

Everything returned is a ``Coords``: per scene frame, q (N, K) complex, its derivative per scene
frame ``dq`` (for the keyframes' Bezier handles: cubic Hermite interpolation, so sub-frames follow
the true curve to 4th order), the rate ``rate`` = dq/dt per scene *second* (what the ``velocity``
attribute needs: Cycles reads velocity in units per second) and ``drate`` = d(rate)/d(frame).
Sources add (the ODE is linear): pokes superpose with each other, with wind and with a loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._math import loops, modal, spectral

__all__ = [
    "TimeMap",
    "Coords",
    "loop_coords",
    "loop_motion_frames",
    "poke_coords",
    "wind_coords",
    "wind_noise",
    "zero_coords",
    "sum_coords",
]


@dataclass(frozen=True)
class TimeMap:
    start_frame: float
    scene_fps: float
    vol_fps: float = spectral.FPS
    speed: float = 1.0

    def __post_init__(self) -> None:
        if not (self.scene_fps > 0 and self.vol_fps > 0):
            raise ValueError("frame rates must be positive")
        if not self.speed > 0:
            raise ValueError(f"speed must be positive, got {self.speed}")

    @property
    def tau_per_frame(self) -> float:
        """Motion frames per scene frame."""
        return self.speed * self.vol_fps / self.scene_fps

    @property
    def seconds_per_frame(self) -> float:
        """Motion seconds per scene frame."""
        return self.speed / self.scene_fps

    def tau(self, frames) -> np.ndarray:
        return (np.asarray(frames, dtype=np.float64) - self.start_frame) * self.tau_per_frame


@dataclass
class Coords:
    frames: np.ndarray  # (N,) scene frames
    q: np.ndarray  # (N, K) complex128
    dq: np.ndarray  # (N, K) dq / d(scene frame)
    rate: np.ndarray  # (N, K) dq / d(scene second)
    drate: np.ndarray  # (N, K) d(rate) / d(scene frame)
    cyclic: bool = False  # the keys span one period: repeat them

    @property
    def num_modes(self) -> int:
        return self.q.shape[1]


def zero_coords(frames, num_modes: int) -> Coords:
    f = np.asarray(frames, dtype=np.float64)
    z = np.zeros((f.shape[0], num_modes), dtype=np.complex128)
    return Coords(f, z, z.copy(), z.copy(), z.copy())


def sum_coords(parts: list[Coords]) -> Coords:
    """Sum of coordinate sets sampled at the same frames (the sources superpose)."""
    if not parts:
        raise ValueError("nothing to sum")
    base = parts[0]
    for p in parts[1:]:
        if p.frames.shape != base.frames.shape or not np.allclose(p.frames, base.frames):
            raise ValueError("coordinate sets must share their frames to be summed")
    return Coords(
        base.frames.copy(),
        sum(p.q for p in parts),
        sum(p.dq for p in parts),
        sum(p.rate for p in parts),
        sum(p.drate for p in parts),
        cyclic=len(parts) == 1 and base.cyclic,
    )


def _from_motion_time(frames, tm: TimeMap, q, dq_dtau, d2q_dtau2, cyclic=False) -> Coords:
    a = tm.tau_per_frame
    dq = dq_dtau * a
    rate = dq * tm.scene_fps
    drate = d2q_dtau2 * (a * a) * tm.scene_fps
    return Coords(np.asarray(frames, dtype=np.float64), q, dq, rate, drate, cyclic)


def loop_motion_frames(loop_frames: float, tm: TimeMap) -> float:
    """A loop of ``loop_frames`` scene frames in motion frames; raises ``ValueError`` with the fix
    (in the panel's words) when it is shorter than the 2 motion frames a loop needs."""
    L = float(loop_frames) * tm.tau_per_frame
    if L >= 2.0 - 1e-9:  # exactly 2 set in the panel may come out a rounding error short
        return max(L, 2.0)
    raise ValueError(f"Loop Length at this Speed is shorter than 2 frames of the motion ({loop_frames:g} "
                     f"frames at Speed {tm.speed:g} and {tm.scene_fps:g} fps are {L:.2f} motion frames): "
                     "raise Loop Length or Speed")


def loop_coords(
    num_modes: int,
    frames,
    tm: TimeMap,
    loop_frames: float | None,
    num_frames: int = spectral.NUM_FRAMES,
    zero_at_start: bool = True,
    amount: float = 1.0,
) -> Coords:
    """The predicted motion itself, re-timed to loop every ``loop_frames`` *scene* frames.

    q_k = amount * c_k (exp(2 pi i f_k tau) - [zero_at_start]) with f_k the snapped frequencies
    (``loops.snapped_frequencies`` for L = loop_frames in motion frames). ``loop_frames=None``
    keeps the canonical f_k = k / T: then with ``zero_at_start=False`` and speed 1 at 30 fps the
    motion equals ``spectral.spectral_to_motion`` exactly.
    """
    spectral.check_num_freqs(num_modes, num_frames)
    if loop_frames is None:
        f = np.arange(num_modes, dtype=np.float64) / num_frames
    else:
        f = loops.snapped_frequencies(num_modes, loop_motion_frames(loop_frames, tm), num_frames)
    w = float(amount) * spectral.bin_weights(num_modes)
    tau = tm.tau(frames)
    e = np.exp(2j * np.pi * np.outer(tau, f))
    q = w[None, :] * (e - (1.0 if zero_at_start else 0.0))
    iw = 2j * np.pi * f[None, :]
    dq = w[None, :] * iw * e
    d2q = w[None, :] * iw * iw * e
    return _from_motion_time(frames, tm, q, dq, d2q, cyclic=loop_frames is not None)


def _accel(freqs_hz, q, v, force, alpha, beta):
    w = modal.modal_frequencies_rad(freqs_hz)[None, :]
    g = modal.damping(w, alpha, beta)
    return force - g * v - (w * w) * q


def poke_coords(
    S: np.ndarray,
    freqs_hz,
    frames,
    tm: TimeMap,
    poke_frame: float,
    pixel_xy,
    direction_xy,
    strength: float,
    alpha: float = modal.ALPHA,
    beta: float = modal.BETA,
    normalization: float | None = None,
) -> Coords:
    """A poke (pull and release, ``modal.poke_coordinates``) at scene frame ``poke_frame``: zero
    before it, the exact damped free response (``modal.free_response``) after it."""
    S = np.asarray(S)
    K = S.shape[0]
    freqs_hz = np.asarray(freqs_hz, dtype=np.float64).reshape(K)
    q0 = modal.poke_coordinates(S, pixel_xy, direction_xy, strength, normalization=normalization)
    frames = np.asarray(frames, dtype=np.float64)
    t = (frames - float(poke_frame)) * tm.seconds_per_frame  # motion seconds since the release
    after = t >= 0
    q = np.zeros((frames.shape[0], K), dtype=np.complex128)
    v = np.zeros_like(q)
    if after.any():
        qa, va = modal.free_response(freqs_hz, q0, 0.0, t[after], alpha, beta, return_velocity=True)
        q[after] = qa
        v[after] = va
    a = _accel(freqs_hz, q, v, 0.0, alpha, beta)
    a[~after] = 0.0
    return _from_seconds(frames, tm, q, v, a)


def _from_seconds(frames, tm: TimeMap, q, v, a) -> Coords:
    """q and its motion-time derivatives (per motion second) -> scene-frame Coords."""
    spf = tm.seconds_per_frame
    dq = v * spf
    rate = v * tm.speed
    drate = a * tm.speed * spf
    return Coords(np.asarray(frames, dtype=np.float64), q, dq, rate, drate)


def wind_noise(num: int, amount: float, seed: int = 0, dt: float = 1.0 / 30.0) -> np.ndarray:
    """(num,) float64 smooth gust factor around 1: 1 + amount * (a few slow random sinusoids).

    Deterministic for a seed; ``dt`` seconds per sample. Mean 1, stays within 1 +- amount.
    """
    if amount <= 0 or num == 0:
        return np.ones(num)
    rng = np.random.default_rng(int(seed))
    freqs = rng.uniform(0.15, 1.2, size=4)  # Hz: gusts, not flutter
    phases = rng.uniform(0.0, 2 * np.pi, size=4)
    t = np.arange(num) * dt
    wave = np.sin(2 * np.pi * np.outer(t, freqs) + phases).sum(axis=1) / 4.0
    return 1.0 + float(amount) * wave


def wind_coords(
    S: np.ndarray,
    freqs_hz,
    frames,
    tm: TimeMap,
    directions_xy,
    strengths,
    alpha: float = modal.ALPHA,
    beta: float = modal.BETA,
    mask=None,
    normalization: float | None = None,
) -> Coords:
    """Wind sampled at consecutive integer scene ``frames`` (one sample each): ``directions_xy``
    (N, 2) in image space (x right, y down), ``strengths`` (N,) image-space acceleration in
    px / s^2. Forces from ``modal.modal_forces_from_wind``, response from the exact integrator
    ``modal.force_response`` (first-order hold), starting at rest at the first frame."""
    S = np.asarray(S)
    K = S.shape[0]
    freqs_hz = np.asarray(freqs_hz, dtype=np.float64).reshape(K)
    frames = np.asarray(frames, dtype=np.float64)
    if frames.shape[0] > 1 and not np.allclose(np.diff(frames), 1.0):
        raise ValueError("wind is sampled once per scene frame: frames must be consecutive")
    forces = modal.modal_forces_from_wind(S, directions_xy, strengths, mask=mask, normalization=normalization)
    if forces.shape[0] != frames.shape[0]:
        raise ValueError(f"{forces.shape[0]} wind samples for {frames.shape[0]} frames")
    q, v = modal.force_response(freqs_hz, forces, tm.seconds_per_frame, alpha, beta, return_velocity=True)
    a = _accel(freqs_hz, q, v, forces, alpha, beta)
    return _from_seconds(frames, tm, q, v, a)
