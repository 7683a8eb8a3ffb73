"""Pixels between Blender and the protocol (bpy-free).

Blender keeps an image as a flat float RGBA buffer starting at the *bottom* row; the protocol
wants (H, W, 3) uint8 sRGB-encoded, row 0 at the *top*. Byte images hold sRGB-encoded values
already; float images (EXR, HDR) hold scene-linear values and get the sRGB transfer curve.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "blender_to_rgb8",
    "rgb8_to_blender",
    "linear_to_srgb",
    "downscale_rgb8",
    "resize_rgb8",
    "output_size",
]


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(np.float32)


def blender_to_rgb8(pixels, width: int, height: int, channels: int = 4, is_float: bool = False) -> np.ndarray:
    """Flat Blender pixel buffer -> (H, W, 3) uint8, row 0 at the top."""
    a = np.asarray(pixels, dtype=np.float32).reshape(height, width, channels)
    if channels >= 3:
        rgb = a[:, :, :3]
    else:
        rgb = np.repeat(a[:, :, :1], 3, axis=2)
    if is_float:
        rgb = linear_to_srgb(rgb)
    return (np.clip(rgb[::-1], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def rgb8_to_blender(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 top-first -> flat float32 RGBA bottom-first (for ``Image.pixels``)."""
    img = np.asarray(image)
    h, w = img.shape[:2]
    out = np.ones((h, w, 4), dtype=np.float32)
    out[:, :, :3] = img[::-1, :, :3].astype(np.float32) / 255.0
    return out.reshape(-1)


def downscale_rgb8(image: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink by an integer factor (block mean) until the longer side is <= ``max_side``."""
    img = np.asarray(image)
    h, w = img.shape[:2]
    f = int(math.ceil(max(h, w) / float(max_side)))
    if f <= 1:
        return img
    hh, ww = (h // f) * f, (w // f) * f
    blocks = img[:hh, :ww].astype(np.float32).reshape(hh // f, f, ww // f, f, -1)
    return (blocks.mean(axis=(1, 3)) + 0.5).astype(np.uint8)


def resize_rgb8(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of (H, W, 3) uint8 to (height, width, 3) (pixel-centre aligned)."""
    img = np.asarray(image, dtype=np.float32)
    h, w = img.shape[:2]
    ys = np.clip((np.arange(height) + 0.5) * h / height - 0.5, 0, h - 1)
    xs = np.clip((np.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bot = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return (top * (1 - fy) + bot * fy + 0.5).clip(0, 255).astype(np.uint8)


def output_size(photo_width: int, photo_height: int, model_resolution, scale: float = 1.0,
                multiple: int = 8, min_side: int = 8) -> tuple[int, int]:
    """(width, height) of the motion to ask for: the photo's aspect ratio, about the model's
    own pixel count times ``scale**2``, sides rounded to ``multiple``."""
    mw, mh = (int(v) for v in model_resolution)
    area = mw * mh * float(scale) ** 2
    aspect = photo_width / float(photo_height)
    w = math.sqrt(area * aspect)
    h = w / aspect

    def snap(v: float) -> int:
        return max(min_side, int(round(v / multiple)) * multiple)

    return snap(w), snap(h)
