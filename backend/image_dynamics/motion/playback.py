"""Which displacement each frame of a rendered clip shows: clip timing -> modal coordinates.

A clip has ``frames`` frames at ``fps``. Its frame n shows the volume's motion at motion time

    tau_n = n * speed * vol_fps / fps        (motion frames; the volume's clock is vol_fps, T frames)

so the motion plays in real time at any output frame rate, ``speed`` times faster (slow motion
below 1) - the same time map as the Blender side (``addon/core/coords.TimeMap``). ``magnify``
scales the displacement (motion magnification above 1, minification below).

Two timings:

* plain (``loop=False``): the canonical reconstruction, q_k = c_k exp(2 pi i k tau / T), i.e.
  exactly ``spectral.spectral_to_motion(S, T, times=tau)``.
* seamless loop (``loop=True``): the whole clip is one loop of L = frames * speed * vol_fps / fps
  motion frames. The frequencies are snapped to multiples of 1 / L (``loops.snap_to_loop``) and the
  motion starts at rest (D = 0 at frame 0, the photo undistorted), so the frame after the last
  (n = frames) equals frame 0 exactly: played on repeat there is no seam. The price is that each
  frequency moves to the nearest multiple of 1 / L (see ``loops.py``).

Coordinates are (N, K) complex; ``displacements`` turns a slice of them into pixel fields so a long
clip can be rendered a few frames at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .loops import snap_to_loop
from .modal import displacement_from_coords
from .spectral import FPS, NUM_FRAMES, check_num_freqs, time_basis

__all__ = ["ClipTiming", "frame_times", "clip_coordinates", "displacements", "MAX_FRAMES"]

MAX_FRAMES = 100_000


@dataclass(frozen=True)
class ClipTiming:
    frames: int
    fps: float = FPS
    speed: float = 1.0
    magnify: float = 1.0
    loop: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.frames, (int, np.integer)) and 1 <= self.frames <= MAX_FRAMES):
            raise ValueError(f"frames must be an integer from 1 to {MAX_FRAMES}, got {self.frames!r}")
        for name in ("fps", "speed"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not np.isfinite(self.magnify):
            raise ValueError(f"magnify must be a finite number, got {self.magnify!r}")

    def tau_per_frame(self, vol_fps: float = FPS) -> float:
        """Motion frames per clip frame."""
        return self.speed * float(vol_fps) / self.fps

    def loop_length(self, vol_fps: float = FPS) -> float:
        """L in motion frames: the clip's length, which a seamless loop closes over."""
        return self.frames * self.tau_per_frame(vol_fps)


def frame_times(timing: ClipTiming, vol_fps: float = FPS, count: int | None = None) -> np.ndarray:
    """tau_n (motion frames) for n = 0 .. count - 1 (default: the clip's frames)."""
    n = timing.frames if count is None else int(count)
    return np.arange(n, dtype=np.float64) * timing.tau_per_frame(vol_fps)


def clip_coordinates(num_modes: int, timing: ClipTiming, vol_fps: float = FPS, num_frames: int = NUM_FRAMES,
                     count: int | None = None) -> np.ndarray:
    """Modal coordinates (count, K) complex128 of clip frames 0 .. count - 1 (default: all frames;
    ``count = frames + 1`` also gives the frame after the last, to check a loop's seam)."""
    check_num_freqs(num_modes, num_frames)
    tau = frame_times(timing, vol_fps, count)
    if not timing.loop:
        return time_basis(tau, num_modes, num_frames)
    L = timing.loop_length(vol_fps)
    if L < 2:
        raise ValueError(f"a loop must last at least 2 motion frames; this clip lasts {L:.3g}")
    # snap_to_loop only needs the number of bases for the coordinates: a 1 x 1 stand-in keeps it cheap
    motion = snap_to_loop(np.zeros((num_modes, 2, 1, 1), np.complex64), L, vol_fps, num_frames, zero_at_start=True)
    return motion.coordinates(tau)


def displacements(S: np.ndarray, coords: np.ndarray, magnify: float = 1.0) -> np.ndarray:
    """(N, 2, H, W) float32 pixels: magnify * Re(sum_k S_k q_k) for each row of ``coords``."""
    D = displacement_from_coords(S, np.asarray(coords))
    if magnify != 1.0:
        D *= np.float32(magnify)
    return D
