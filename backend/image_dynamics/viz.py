"""Pictures people look at: motion heat maps, trajectory plots and side-by-side comparisons.

Drawn with OpenCV only (no plotting library), RGB uint8 in and out.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from .motion.spectral import spectral_to_motion
from .motion.volume_file import atomic_file

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def magnitude_heatmap(magnitude: np.ndarray, vmax: float) -> np.ndarray:
    """Colour map (inferno) of a per-pixel magnitude in pixels, saturating at ``vmax``."""
    scaled = np.clip(np.asarray(magnitude, dtype=np.float32) / max(vmax, 1e-6), 0.0, 1.0)
    bgr = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def labelled(image: np.ndarray, text: str, scale: int = 2) -> np.ndarray:
    """Upscale ``image`` by ``scale`` (nearest) and put a caption bar above it."""
    big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    bar = np.full((22, big.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (4, 16), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, big], axis=0)


def trajectory_plot(curves: dict[str, tuple[np.ndarray, tuple[int, int, int]]], size=(512, 160), title="") -> np.ndarray:
    """Line plot of 1-D time series sharing one y-axis; ``curves`` maps label -> (values, rgb)."""
    w, h = size
    pad_l, pad_r, pad_t, pad_b = 44, 8, 22, 18
    canvas = np.full((h, w, 3), 255, np.uint8)
    values = np.concatenate([np.asarray(v, np.float64) for v, _ in curves.values()])
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-6:
        lo, hi = lo - 1.0, hi + 1.0
    span = hi - lo

    def to_px(i: np.ndarray, v: np.ndarray, n: int) -> np.ndarray:
        x = pad_l + i / max(n - 1, 1) * (w - pad_l - pad_r)
        y = pad_t + (1.0 - (v - lo) / span) * (h - pad_t - pad_b)
        return np.stack([x, y], axis=1).round().astype(np.int32)

    cv2.rectangle(canvas, (pad_l, pad_t), (w - pad_r, h - pad_b), (200, 200, 200), 1)
    for frac in (0.0, 0.5, 1.0):
        val = lo + frac * span
        y = int(round(pad_t + (1 - frac) * (h - pad_t - pad_b)))
        cv2.putText(canvas, f"{val:+.1f}", (2, y + 4), _FONT, 0.33, (90, 90, 90), 1, cv2.LINE_AA)
    x_text = pad_l + 4
    for label, (vals, rgb) in curves.items():
        vals = np.asarray(vals, np.float64)
        pts = to_px(np.arange(len(vals)), vals, len(vals))
        cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, rgb, 1, cv2.LINE_AA)
        cv2.putText(canvas, label, (x_text, 14), _FONT, 0.38, rgb, 1, cv2.LINE_AA)
        x_text += 9 * len(label) + 12
    if title:
        cv2.putText(canvas, title, (w - 8 - 7 * len(title), 14), _FONT, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "frame", (w - 44, h - 4), _FONT, 0.33, (90, 90, 90), 1, cv2.LINE_AA)
    return canvas


def comparison_figure(image: np.ndarray, S_true: np.ndarray, S_est: np.ndarray, title: str = "") -> np.ndarray:
    """Photo | true mean motion | extracted mean motion | per-pixel error, plus x(t) of the pixel
    that moves most, true against extracted. Heat maps share one colour scale (pixels)."""
    D_true = spectral_to_motion(S_true)
    D_est = spectral_to_motion(S_est)
    mag_true = np.linalg.norm(D_true, axis=1).mean(axis=0)
    mag_est = np.linalg.norm(D_est, axis=1).mean(axis=0)
    err = np.linalg.norm(D_true - D_est, axis=1).mean(axis=0)
    vmax = max(float(np.percentile(mag_true, 99.5)), 0.5)
    tiles = [
        labelled(image, title or "frame 0"),
        labelled(magnitude_heatmap(mag_true, vmax), f"true mean |D| (0-{vmax:.1f} px)"),
        labelled(magnitude_heatmap(mag_est, vmax), "extracted mean |D|"),
        labelled(magnitude_heatmap(err, vmax), f"error (mean {err[mag_true > 0.05].mean() if (mag_true > 0.05).any() else 0:.2f} px moving)"),
    ]
    row = np.concatenate(tiles, axis=1)
    y, x = np.unravel_index(np.argmax(mag_true), mag_true.shape)
    plot = trajectory_plot(
        {
            "true x": (D_true[:, 0, y, x], (30, 90, 200)),
            "extracted x": (D_est[:, 0, y, x], (220, 60, 30)),
            "true y": (D_true[:, 1, y, x], (120, 170, 240)),
            "extracted y": (D_est[:, 1, y, x], (250, 160, 120)),
        },
        size=(row.shape[1], 170),
        title=f"trajectory at pixel ({x}, {y}), px",
    )
    return np.concatenate([row, plot], axis=0)


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an RGB uint8 picture as a PNG file, atomically: encoded in memory, written to a
    unique temp file in the same folder, then renamed, so a crash never leaves half a picture.
    Raises ``OSError`` when it cannot be written (the folder must exist)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    with atomic_file(os.path.abspath(os.fspath(path)), ".partial.png") as fh:
        fh.write(encoded.tobytes())
