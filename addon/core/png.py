"""Write uint8 RGB frames as PNG files with the standard library alone (bpy-free).

The rendered frames arrive as exact 8-bit sRGB values; writing them through a Blender image would
pass them through Blender's colour management and float buffers. A PNG is a signature plus three
chunks (IHDR, IDAT with zlib-compressed scanlines, IEND), so it is written directly.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

__all__ = ["encode_png", "write_png"]


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(rgb: np.ndarray, level: int = 6) -> bytes:
    """(H, W, 3) uint8, row 0 at the top -> PNG bytes (8-bit RGB, no filter)."""
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8, got {a.shape}")
    h, w, _ = a.shape
    rows = np.concatenate([np.zeros((h, 1), np.uint8), a.reshape(h, w * 3)], axis=1)  # filter byte 0 per row
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
            + _chunk(b"IEND", b""))


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(encode_png(rgb))
