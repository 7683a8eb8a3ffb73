"""PC2 point-cache files (the format Blender's Mesh Cache modifier reads), bpy-free.

Layout (little-endian): 12-byte signature ``POINTCACHE2\\0``, int32 version (1), int32 number of
points, float32 start frame, float32 sample rate (frames between samples), int32 number of
samples; then for each sample, for each point, three float32 (x, y, z).
"""

from __future__ import annotations

import os
import struct

import numpy as np

__all__ = ["write_pc2", "read_pc2"]

_SIGNATURE = b"POINTCACHE2\0"
_HEADER = struct.Struct("<12siiffi")


def write_pc2(path: str | os.PathLike, positions: np.ndarray, start_frame: float, sample_rate: float = 1.0) -> None:
    """Write ``positions`` (samples, points, 3) atomically."""
    pos = np.ascontiguousarray(positions, dtype="<f4")
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise ValueError(f"positions must have shape (samples, points, 3), got {pos.shape}")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".partial"
    try:
        with open(tmp, "wb") as fh:
            fh.write(_HEADER.pack(_SIGNATURE, 1, pos.shape[1], float(start_frame), float(sample_rate), pos.shape[0]))
            fh.write(pos.tobytes())
        os.replace(tmp, path)
    except BaseException:
        # a full disk or a path that cannot be replaced must not leave a stray half file behind
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def read_pc2(path: str | os.PathLike) -> tuple[np.ndarray, float, float]:
    """(positions (samples, points, 3) float32, start frame, sample rate)."""
    with open(path, "rb") as fh:
        head = fh.read(_HEADER.size)
        sig, version, points, start, rate, samples = _HEADER.unpack(head)
        if sig != _SIGNATURE:
            raise ValueError(f"{os.fspath(path)} is not a PC2 file")
        data = np.frombuffer(fh.read(), dtype="<f4")
    return data.reshape(samples, points, 3).copy(), start, rate
