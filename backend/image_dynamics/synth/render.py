"""Layers, warping, compositing and camera effects of the synthetic scenes.

A scene is a back-to-front stack of ``Layer`` objects at frame 0. Each holds premultiplied RGBA and,
per pixel, the modal description (source indices ``idx`` (R, H, W), mode shapes ``u`` (R, 2, H, W))
of the topmost element drawn there. ``finalize`` extends that description to every pixel of the
layer (nearest drawn pixel), so the inverse warp is defined next to and beyond element edges.

Frame t: each moving layer is warped forward by its own displacement d_L(q, t): for every output
pixel x the renderer solves q = x - d_L(q, t) by fixed-point iterations (bilinear sampling of d_L;
converges because displacement gradients are kept well below 1) and samples the layer's
premultiplied RGBA at q. Layers are composited back to front with "over" (an emissive glow is
premultiplied colour with zero alpha, i.e. additive). Then ``Camera`` applies the per-clip colour
grade, a mild lens blur and per-frame sensor noise, identically to every frame.

Ground truth at pixel p of frame 0 is the modal description of the topmost layer whose alpha at p
is at least 0.5 (``visible_modal``); static layers carry source 0 (no motion).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .modal_field import MAX_SOURCES_PER_PIXEL

R = MAX_SOURCES_PER_PIXEL
GT_ALPHA = 0.5
FIXED_POINT_ITERATIONS = 4


class Layer:
    """One depth layer: premultiplied RGBA plus the per-pixel modal description."""

    def __init__(self, height: int, width: int, moving: bool = True, name: str = "", opaque: bool = False):
        self.height, self.width, self.moving, self.name, self.opaque = height, width, moving, name, opaque
        self.rgb = np.zeros((height, width, 3), np.float32)  # premultiplied
        self.alpha = np.zeros((height, width), np.float32)
        self.idx = np.zeros((R, height, width), np.uint16)
        self.u = np.zeros((R, 2, height, width), np.float32)
        self.owned = np.zeros((height, width), bool)
        self._final = False

    # -- drawing -------------------------------------------------------------------------------
    def fill(self, rgb: np.ndarray) -> None:
        """Cover the whole layer with an opaque image (H, W, 3) or colour; no motion."""
        self.rgb[:] = np.broadcast_to(np.asarray(rgb, np.float32), self.rgb.shape)
        self.alpha[:] = 1.0
        self.owned[:] = True

    def paint(self, y0: int, x0: int, cov: np.ndarray, rgb, modal=None, threshold: float = GT_ALPHA,
              emit=None) -> None:
        """Draw a shape "over" the layer inside the box at (y0, x0).

        cov (h, w) coverage; rgb straight (not premultiplied) colour (h, w, 3) or (3,); modal a
        sequence of at most R (source, ux, uy) with ux, uy scalars or (h, w) arrays (an empty
        sequence marks the shape static; None leaves the layer's motion untouched); ``emit``
        optional additive light (h, w, 3) drawn with the shape (flames, lit windows).
        """
        h, w = cov.shape
        sl = (slice(y0, y0 + h), slice(x0, x0 + w))
        c = cov[..., None]
        col = np.asarray(rgb, np.float32)
        self.rgb[sl] = col * c + self.rgb[sl] * (1.0 - c)
        self.alpha[sl] = cov + self.alpha[sl] * (1.0 - cov)
        if emit is not None:
            self.rgb[sl] += emit
        if modal is None:
            return
        peak = float(cov.max()) if cov.size else 0.0
        if peak <= 0.0:
            return
        mask = cov >= min(threshold, 0.6 * peak)
        if not mask.any():
            return
        if len(modal) > R:
            raise ValueError(f"at most {R} sources per pixel, got {len(modal)}")
        idx_v = self.idx[:, sl[0], sl[1]]
        u_v = self.u[:, :, sl[0], sl[1]]
        new_idx = np.zeros((R, 1, 1), np.uint16)
        new_u = np.zeros((R, 2, h, w), np.float32)
        for r, (src, ux, uy) in enumerate(modal):
            new_idx[r] = src
            new_u[r, 0] = ux
            new_u[r, 1] = uy
        np.copyto(idx_v, new_idx, where=mask)
        np.copyto(u_v, new_u, where=mask)
        self.owned[sl] |= mask

    def add_light(self, y0: int, x0: int, rgb: np.ndarray) -> None:
        """Additive light (premultiplied colour with zero alpha): glows and halos."""
        h, w = rgb.shape[:2]
        self.rgb[y0:y0 + h, x0:x0 + w] += rgb

    # -- motion --------------------------------------------------------------------------------
    def finalize(self) -> None:
        """Extend the modal description from drawn pixels to the whole layer (nearest pixel)."""
        if self._final:
            return
        self._final = True
        if not self.moving or not self.idx.any():
            self.moving = False
            return
        if self.owned.all() or not self.owned.any():
            return
        src = np.where(self.owned, 0, 255).astype(np.uint8)
        _, labels = cv2.distanceTransformWithLabels(src, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
        flat_owned = np.flatnonzero(self.owned.reshape(-1))
        lut = np.zeros(int(labels.max()) + 1, np.int64)
        lut[labels.reshape(-1)[flat_owned]] = flat_owned
        nearest = lut[labels.reshape(-1)]
        self.idx = self.idx.reshape(R, -1)[:, nearest].reshape(self.idx.shape)
        self.u = self.u.reshape(R, 2, -1)[:, :, nearest].reshape(self.u.shape)

    def displacement_hwc(self, a_t: np.ndarray) -> np.ndarray:
        """The layer's own displacement field at coordinates a_t, (H, W, 2) float32."""
        d = np.zeros((2, self.height, self.width), np.float32)
        for r in range(R):
            ir = self.idx[r]
            if r > 0 and not ir.any():
                continue
            d += self.u[r] * a_t[ir]
        return np.ascontiguousarray(d.transpose(1, 2, 0))

    def premultiplied(self) -> np.ndarray:
        return np.concatenate([self.rgb, self.alpha[..., None]], axis=2)


def warp_layer(layer: Layer, a_t: np.ndarray, base_grid: tuple[np.ndarray, np.ndarray],
               rgba: np.ndarray | None = None, iterations: int = FIXED_POINT_ITERATIONS) -> np.ndarray:
    """The layer's premultiplied RGBA (H, W, 4) at the time with modal coordinates a_t."""
    rgba = layer.premultiplied() if rgba is None else rgba
    if not layer.moving:
        return rgba
    gx, gy = base_grid
    d = layer.displacement_hwc(a_t)
    mx, my = gx - d[..., 0], gy - d[..., 1]
    for _ in range(iterations - 1):
        dq = cv2.remap(d, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mx, my = gx - dq[..., 0], gy - dq[..., 1]
    border = cv2.BORDER_REPLICATE if layer.opaque else cv2.BORDER_CONSTANT
    return cv2.remap(rgba, mx, my, cv2.INTER_LINEAR, borderMode=border, borderValue=0)


def composite(rgbas) -> np.ndarray:
    """Back-to-front "over" of premultiplied RGBA images; returns RGB (H, W, 3) float32."""
    out = None
    for im in rgbas:
        if out is None:
            out = im[..., :3].copy()
        else:
            out *= 1.0 - im[..., 3:4]
            out += im[..., :3]
    return out


def visible_modal(layers) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame-0 ground truth: (idx, u, layer index) of the topmost layer with alpha >= 0.5."""
    H, W = layers[0].height, layers[0].width
    idx = np.zeros((R, H, W), np.uint16)
    u = np.zeros((R, 2, H, W), np.float32)
    which = np.zeros((H, W), np.int16)
    done = np.zeros((H, W), bool)
    for li in range(len(layers) - 1, -1, -1):
        L = layers[li]
        take = (L.alpha >= GT_ALPHA) & ~done
        if not take.any():
            continue
        which[take] = li
        done |= take
        if L.moving:
            idx[:, take] = L.idx[:, take]
            u[:, :, take] = L.u[:, :, take]
    return idx, u, which


@dataclass
class Camera:
    """Per-clip look: colour grade, lens blur and sensor noise (applied the same to every frame)."""

    seed: int = 0
    exposure: float = 1.0
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    saturation: float = 1.0
    contrast: float = 1.0
    gamma: float = 1.0
    vignette: float = 0.0
    blur_sigma: float = 0.0
    noise_sigma: float = 1.0  # in 8-bit units
    _vig: np.ndarray | None = field(default=None, repr=False)

    def grade(self, rgb: np.ndarray) -> np.ndarray:
        x = rgb * (np.float32(self.exposure) * np.asarray(self.tint, np.float32))
        if self.saturation != 1.0:
            lum = x @ np.array([0.299, 0.587, 0.114], np.float32)
            x = lum[..., None] + np.float32(self.saturation) * (x - lum[..., None])
        x = np.clip(x, 0.0, None)
        if self.contrast != 1.0:
            x = 0.5 + np.float32(self.contrast) * (x - 0.5)
        x = np.clip(x, 0.0, 1.0)
        if self.gamma != 1.0:
            x = x ** np.float32(self.gamma)
        if self.vignette > 0:
            if self._vig is None or self._vig.shape != x.shape[:2]:
                H, W = x.shape[:2]
                yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
                r2 = ((xx - W / 2) / (W / 2)) ** 2 + ((yy - H / 2) / (H / 2)) ** 2
                self._vig = (1.0 - self.vignette * 0.5 * r2).astype(np.float32)
            x = x * self._vig[..., None]
        return x

    def finish(self, rgb: np.ndarray, frame: int, effects: bool = True) -> np.ndarray:
        """Grade, blur, add noise and quantise one composited frame to uint8 (H, W, 3)."""
        x = self.grade(rgb) * 255.0
        if effects and self.blur_sigma > 0.05:
            x = cv2.GaussianBlur(x, (0, 0), self.blur_sigma)
        if effects and self.noise_sigma > 0:
            rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 7919, frame])
            x = x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(self.noise_sigma)
        return np.clip(x + 0.5, 0, 255).astype(np.uint8)


__all__ = ["Camera", "Layer", "composite", "visible_modal", "warp_layer"]
