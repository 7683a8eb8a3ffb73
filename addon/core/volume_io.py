"""Spectral volumes in and out of the add-on (bpy-free).

Files: the canonical ``.npz`` through the vendored ``volume_file`` (one implementation for the
whole project), plus ``check`` for what the add-on needs of a volume (``load`` applies it). In the
.blend: a volume is kept as plain ID properties (``pack`` / ``unpack``): ``S`` as a flat float32
array (real and imaginary parts interleaved, the memory layout of complex64) plus its shape,
fps, frame count, source and meta JSON, so a saved .blend carries its motion without side files.
"""

from __future__ import annotations

import json

import numpy as np

from ._math import volume_file

__all__ = ["SpectralVolume", "VolumeFileError", "check", "load", "save", "pack", "unpack", "PROP_PREFIX"]

SpectralVolume = volume_file.SpectralVolume
VolumeFileError = volume_file.VolumeFileError
save = volume_file.save_volume


def check(volume, what: str = "the spectral volume") -> None:
    """Raise ``VolumeFileError`` for a volume no motion can be made of (``volume_file.check_volume``;
    a ``SpectralVolume`` is checked when made, this re-checks one whose fields were changed since)."""
    volume_file.check_volume(volume, what)


def load(path):
    """``volume_file.load_volume`` plus ``check``: a volume file the add-on can animate."""
    volume = volume_file.load_volume(path)
    check(volume, f"{path}")
    return volume

PROP_PREFIX = "_image_dynamics_"  # a leading underscore keeps Blender's UI from listing them


def pack(volume) -> dict:
    """Plain values to store as ID properties (keys without the prefix)."""
    S = np.ascontiguousarray(volume.S, dtype=np.complex64)
    return {
        "S": S.view(np.float32).reshape(-1),
        "S_shape": [int(v) for v in S.shape],
        "fps": float(volume.fps),
        "num_frames": int(volume.num_frames),
        "source": str(volume.source or ""),
        "meta_json": json.dumps(volume.meta or {}, sort_keys=True),
    }


def unpack(props: dict, image=None):
    """The ``SpectralVolume`` back from ``pack``'s values (arrays may be any buffer)."""
    shape = tuple(int(v) for v in props["S_shape"])
    flat = np.frombuffer(props["S"], dtype=np.float32) if not isinstance(props["S"], np.ndarray) \
        else np.asarray(props["S"], dtype=np.float32)
    S = flat.view(np.complex64).reshape(shape).copy()
    meta = json.loads(props.get("meta_json") or "{}")
    return SpectralVolume(S=S, fps=float(props["fps"]), num_frames=int(props["num_frames"]), image=image,
                          source=str(props.get("source") or ""), meta=meta)
