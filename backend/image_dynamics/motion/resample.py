"""Resize spectral volumes (and their images) to another resolution.

A spectral volume holds displacements in *pixels* of its own grid, so resizing it is two things:
resampling the fields spatially, and scaling the vectors with the grid - the x components by
new_width / width, the y components by new_height / height (the Fourier transform over time is
linear, so scaling the complex coefficients scales the motion they describe). Real and imaginary
parts are resampled separately (linear, so that is exact for the complex field).

Interpolation (OpenCV, float32, pixel-centre aligned, i.e. ``align_corners=False`` semantics):

* shrinking an axis: area averaging (``INTER_AREA``), which low-passes as it decimates, so thin
  moving structures average into the coarse pixel instead of aliasing;
* enlarging an axis: bilinear (``INTER_LINEAR``), smooth and free of overshoot (bicubic rings,
  which would invent motion at the edge of a moving region);
* one axis shrinking while the other grows: two separable passes, width first, then height,
  each with the rule above.

Both kernels keep a constant field constant, so a uniform translation stays a uniform
translation (scaled by the ratio).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["resample_volume", "resample_image", "resample_spectral_volume"]

_MAX_CHANNELS = 512  # cv2.resize handles at most CV_CN_MAX channels at once ...
_MAX_CHANNELS_AREA = 4  # ... and INTER_AREA at a non-integer ratio at most 4


def _resize_hwc(a: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an (H, W, C) float32 array with the module's rules (any C)."""
    H, W = a.shape[:2]
    if (W, H) == (width, height):
        return a.copy()
    if (width < W) != (height < H) and width != W and height != H:  # mixed: separable passes
        return _resize_hwc(_resize_hwc(a, width, H), width, height)
    flag = cv2.INTER_AREA if (width < W or height < H) else cv2.INTER_LINEAR
    step = _MAX_CHANNELS_AREA if flag == cv2.INTER_AREA else _MAX_CHANNELS
    chunks = []
    for c0 in range(0, a.shape[2], step):
        part = np.ascontiguousarray(a[:, :, c0 : c0 + step])
        out = cv2.resize(part, (width, height), interpolation=flag)
        if out.ndim == 2:
            out = out[:, :, None]
        chunks.append(out)
    return np.concatenate(chunks, axis=2) if len(chunks) > 1 else chunks[0]


def _check_size(width: int, height: int) -> tuple[int, int]:
    w, h = int(width), int(height)
    if w != width or h != height or w < 1 or h < 1:
        raise ValueError(f"target size must be positive integers, got {width} x {height}")
    return w, h


def resample_volume(S, width: int, height: int) -> np.ndarray:
    """Spectral volume (K, 2, H, W) complex -> (K, 2, height, width) complex64, vectors rescaled.

    One frequency at a time, into the preallocated result: the only full-size temporaries are one
    frequency's four float32 planes (and one float64 plane while scaling), so resampling a small
    volume up to a large photo costs the result plus a few planes, not several copies of it.
    """
    S = np.asarray(S)
    if S.ndim != 4 or S.shape[1] != 2:
        raise ValueError(f"spectral volume must have shape (K, 2, H, W), got {S.shape}")
    width, height = _check_size(width, height)
    K, _, H, W = S.shape
    out = np.empty((K, 2, height, width), np.complex64)
    ratios = (width / W, height / H)  # x vectors scale with the width, y vectors with the height
    for k in range(K):
        planes = np.empty((H, W, 4), np.float32)  # x.re, y.re, x.im, y.im
        for axis in (0, 1):
            planes[:, :, axis] = S[k, axis].real
            planes[:, :, 2 + axis] = S[k, axis].imag
        r = _resize_hwc(planes, width, height)
        for axis in (0, 1):
            # scaled in float64, then rounded once to float32 (as a float64 volume would be)
            out[k, axis].real = r[:, :, axis].astype(np.float64) * ratios[axis]
            out[k, axis].imag = r[:, :, 2 + axis].astype(np.float64) * ratios[axis]
    return out


def resample_image(image, width: int, height: int) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) image with the same rules; dtype kept (uint8 rounded)."""
    img = np.asarray(image)
    if img.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got {img.shape}")
    width, height = _check_size(width, height)
    hwc = img[:, :, None] if img.ndim == 2 else img
    out = _resize_hwc(np.ascontiguousarray(hwc.astype(np.float32)), width, height)
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    out = out.astype(img.dtype)
    return out[:, :, 0] if img.ndim == 2 else out


def resample_spectral_volume(volume, width: int, height: int):
    """A ``SpectralVolume`` resized (S and its image), other fields kept; meta notes the source size."""
    from .volume_file import SpectralVolume

    meta = dict(volume.meta)
    meta.setdefault("resampled_from", [volume.width, volume.height])
    return SpectralVolume(
        S=resample_volume(volume.S, width, height),
        fps=volume.fps,
        num_frames=volume.num_frames,
        image=None if volume.image is None else resample_image(volume.image, width, height),
        source=volume.source,
        meta=meta,
    )
