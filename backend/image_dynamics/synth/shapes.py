"""Anti-aliased signed-distance rasterisation, evaluated only inside each shape's bounding box.

Pixel (row i, column j) is the point (x=j, y=i) (the cv2.remap convention used by the renderer).
Coverage is a 1-pixel box filter of the signed distance: cov = clip(0.5 - sd, 0, 1), with thin
shapes (radius < 0.5 px) kept at their true area instead of vanishing.

Every primitive returns ``Raster`` objects: the box origin (y0, x0), the coverage (h, w) and the
shape's own coordinates there (arc fraction along a stroke, side across it, ellipse-local
coordinates...), which elements use for shading and for mode shapes. Strokes are batched: many
blades are evaluated in a few padded numpy passes, grouped by box size.
"""

from __future__ import annotations

import numpy as np


class Raster:
    """A shape's pixels inside its box: ``cov`` (h, w) float32 plus named coordinate fields."""

    __slots__ = ("y0", "x0", "cov", "fields")

    def __init__(self, y0: int, x0: int, cov: np.ndarray, **fields: np.ndarray) -> None:
        self.y0, self.x0, self.cov, self.fields = int(y0), int(x0), cov, fields

    @property
    def shape(self) -> tuple[int, int]:
        return self.cov.shape

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (yy, xx) of the box, float32 (h, 1) and (1, w)."""
        h, w = self.cov.shape
        return (np.arange(h, dtype=np.float32)[:, None] + self.y0,
                np.arange(w, dtype=np.float32)[None, :] + self.x0)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.fields[name]


def clip_box(x0: float, y0: float, x1: float, y1: float, height: int, width: int):
    """Integer box [y0, y1) x [x0, x1) clipped to the canvas, or None when empty."""
    ix0, iy0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    ix1, iy1 = min(width, int(np.ceil(x1)) + 1), min(height, int(np.ceil(y1)) + 1)
    if ix1 <= ix0 or iy1 <= iy0:
        return None
    return iy0, ix0, iy1, ix1


def coverage(sd: np.ndarray) -> np.ndarray:
    return np.clip(0.5 - sd, 0.0, 1.0).astype(np.float32, copy=False)


def bezier_points(ctrl: np.ndarray, n: int) -> np.ndarray:
    """Points (B, n+1, 2) on quadratic Bezier curves ctrl (B, 3, 2)."""
    t = np.linspace(0.0, 1.0, n + 1)[None, :, None]
    p0, p1, p2 = ctrl[:, 0:1], ctrl[:, 1:2], ctrl[:, 2:3]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def tapered_strokes(ctrl: np.ndarray, radius: np.ndarray, height: int, width: int,
                    nseg: int | None = None, chunk: int = 48) -> list[Raster | None]:
    """Tapered quadratic-Bezier strokes (blades, stems, reeds, branches), batched.

    ctrl: (B, 3, 2) control points (x, y), base first; radius: (B, 2) half-widths at base and tip.
    Returns per stroke a Raster with fields ``s`` (arc fraction 0 at the base, 1 at the tip) and
    ``v`` (signed side across the stroke, -1..1), or None when it is off the canvas.
    """
    ctrl = np.asarray(ctrl, dtype=np.float64)
    radius = np.asarray(radius, dtype=np.float64)
    B = ctrl.shape[0]
    out: list[Raster | None] = [None] * B
    if B == 0:
        return out
    rmax = radius.max(axis=1) + 1.5
    lo = ctrl.min(axis=1) - rmax[:, None]
    hi = ctrl.max(axis=1) + rmax[:, None]
    boxes = []
    for b in range(B):
        boxes.append(clip_box(lo[b, 0], lo[b, 1], hi[b, 0], hi[b, 1], height, width))
    valid = [b for b in range(B) if boxes[b] is not None]
    chord = np.linalg.norm(ctrl[:, 2] - ctrl[:, 0], axis=1) + np.linalg.norm(ctrl[:, 1] - ctrl[:, 0], axis=1)
    area = np.array([(boxes[b][2] - boxes[b][0]) * (boxes[b][3] - boxes[b][1]) if boxes[b] else 0 for b in range(B)])
    order = sorted(valid, key=lambda b: area[b])
    for c0 in range(0, len(order), chunk):
        ids = np.array(order[c0:c0 + chunk])
        bx = np.array([boxes[b] for b in ids])  # (b, 4): y0, x0, y1, x1
        hh = int((bx[:, 2] - bx[:, 0]).max())
        ww = int((bx[:, 3] - bx[:, 1]).max())
        n = nseg or int(np.clip(chord[ids].max() / 7.0, 2, 10))
        pts = bezier_points(ctrl[ids], n).astype(np.float32)  # (b, n+1, 2)
        seg = np.linalg.norm(np.diff(pts, axis=1), axis=2)
        cum = np.concatenate([np.zeros((len(ids), 1), np.float32), np.cumsum(seg, axis=1)], axis=1)
        cum /= np.maximum(cum[:, -1:], 1e-6)
        r0 = radius[ids, 0].astype(np.float32)[:, None, None]
        r1 = radius[ids, 1].astype(np.float32)[:, None, None]
        yy = (np.arange(hh, dtype=np.float32)[None, :, None] + bx[:, 0, None, None]).astype(np.float32)
        xx = (np.arange(ww, dtype=np.float32)[None, None, :] + bx[:, 1, None, None]).astype(np.float32)
        shape = (len(ids), hh, ww)
        best = np.full(shape, np.inf, np.float32)
        best_j = np.zeros(shape, np.int32)
        ax_all, ay_all = pts[:, :-1, 0], pts[:, :-1, 1]
        ex_all, ey_all = pts[:, 1:, 0] - ax_all, pts[:, 1:, 1] - ay_all
        il2_all = 1.0 / (ex_all * ex_all + ey_all * ey_all + 1e-6)
        s0_all, ds_all = cum[:, :-1], np.diff(cum, axis=1)
        ra_all = r0[:, :, 0] + (r1 - r0)[:, :, 0] * s0_all  # radius at segment start
        dr_all = (r1 - r0)[:, :, 0] * ds_all

        def seg_sd(j):
            ax, ay = ax_all[:, j, None, None], ay_all[:, j, None, None]
            ex, ey = ex_all[:, j, None, None], ey_all[:, j, None, None]
            px = xx - ax
            py = yy - ay
            h = np.clip((px * ex + py * ey) * il2_all[:, j, None, None], 0.0, 1.0)
            dx = px - h * ex
            dy = py - h * ey
            d = np.sqrt(dx * dx + dy * dy)
            r = ra_all[:, j, None, None] + h * dr_all[:, j, None, None]
            return d, r, h, px, py

        for j in range(n):
            d, r, _, _, _ = seg_sd(j)
            sd = d - r
            better = sd < best
            np.copyto(best, sd, where=better)
            np.copyto(best_j, j, where=better)
        # recompute the winning segment's geometry per pixel (gather its parameters)
        bidx = np.arange(len(ids))[:, None, None]
        ax, ay = ax_all[bidx, best_j], ay_all[bidx, best_j]
        ex, ey = ex_all[bidx, best_j], ey_all[bidx, best_j]
        px, py = xx - ax, yy - ay
        h = np.clip((px * ex + py * ey) * il2_all[bidx, best_j], 0.0, 1.0)
        dx, dy = px - h * ex, py - h * ey
        best_d = np.sqrt(dx * dx + dy * dy)
        best_r = ra_all[bidx, best_j] + h * dr_all[bidx, best_j]
        best_s = s0_all[bidx, best_j] + h * ds_all[bidx, best_j]
        best_side = np.sign(ex * py - ey * px)
        reff = np.maximum(best_r, 0.5)
        cov = np.clip(0.5 + reff - best_d, 0.0, 1.0) * np.minimum(1.0, best_r / 0.5)
        v = best_side * np.minimum(best_d / np.maximum(best_r, 1e-3), 1.0)
        for i, b in enumerate(ids):
            y0, x0, y1, x1 = boxes[b]
            h_, w_ = y1 - y0, x1 - x0
            out[b] = Raster(y0, x0, cov[i, :h_, :w_].astype(np.float32),
                            s=best_s[i, :h_, :w_], v=v[i, :h_, :w_])
    return out


def ellipse(cx: float, cy: float, ax: float, ay: float, theta: float, height: int, width: int,
            pad: float = 1.5) -> Raster | None:
    """A rotated ellipse; fields ``lx``, ``ly`` (local coordinates divided by the semi-axes) and ``rho``."""
    ax, ay = max(float(ax), 0.3), max(float(ay), 0.3)
    rr = max(ax, ay) + pad
    box = clip_box(cx - rr, cy - rr, cx + rr, cy + rr, height, width)
    if box is None:
        return None
    y0, x0, y1, x1 = box
    yy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    xx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    lx = (c * xx + s * yy) / np.float32(ax)
    ly = (-s * xx + c * yy) / np.float32(ay)
    rho = np.sqrt(lx * lx + ly * ly)
    grad = np.sqrt((lx / ax) ** 2 + (ly / ay) ** 2) / np.maximum(rho, 1e-4)
    sd = (rho - 1.0) / np.maximum(grad, 1e-4)
    cov = coverage(sd)
    if min(ax, ay) < 0.5:
        cov = cov * np.float32(min(ax, ay) / 0.5)
    return Raster(y0, x0, cov, lx=lx, ly=ly, rho=rho)


def radial(cx: float, cy: float, rx: float, ry: float, height: int, width: int, pad: float = 2.0) -> Raster | None:
    """The box around an axis-aligned ellipse with fields ``dx``, ``dy`` (offsets / radii) and ``rho``.

    ``cov`` is the plain ellipse; elements build irregular blobs (foliage, rocks) from ``rho`` and
    noise with ``blob_coverage``.
    """
    box = clip_box(cx - rx - pad, cy - ry - pad, cx + rx + pad, cy + ry + pad, height, width)
    if box is None:
        return None
    y0, x0, y1, x1 = box
    dy = (np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)) / np.float32(ry)
    dx = (np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)) / np.float32(rx)
    rho = np.sqrt(dx * dx + dy * dy)
    return Raster(y0, x0, coverage((rho - 1.0) * min(rx, ry)), dx=np.broadcast_to(dx, rho.shape),
                  dy=np.broadcast_to(dy, rho.shape), rho=rho)


def blob_coverage(rho: np.ndarray, noise: np.ndarray, radius_px: float, roughness: float) -> np.ndarray:
    """Coverage of an irregular blob: the ellipse edge pushed in and out by ``noise`` (unit std)."""
    sd = (rho - 1.0 - roughness * noise) * radius_px
    return coverage(sd)


def band(x0: float, x1: float, top, bottom, height: int, width: int) -> Raster | None:
    """The region between two curves y = top(x) and y = bottom(x) for x in [x0, x1].

    ``top`` and ``bottom`` are callables of x (float32 array). Fields ``s`` (0..1 along x) and
    ``v`` (0 at the top edge, 1 at the bottom edge). For cloth, flags and water strips.
    """
    xs = np.arange(max(0, int(np.floor(x0)) - 1), min(width, int(np.ceil(x1)) + 2), dtype=np.float32)
    if xs.size == 0:
        return None
    t, b = np.asarray(top(xs), np.float32), np.asarray(bottom(xs), np.float32)
    box = clip_box(xs[0], float(np.min(t)) - 1.5, xs[-1], float(np.max(b)) + 1.5, height, width)
    if box is None:
        return None
    y0, _, y1, _ = box
    yy = np.arange(y0, y1, dtype=np.float32)[:, None]
    sd = np.maximum.reduce([t[None, :] - yy, yy - b[None, :],
                            np.float32(x0) - xs[None, :] + 0 * yy, xs[None, :] - np.float32(x1) + 0 * yy])
    cov = coverage(sd)
    s = np.broadcast_to((xs[None, :] - np.float32(x0)) / np.float32(max(x1 - x0, 1e-3)), cov.shape)
    v = (yy - t[None, :]) / np.maximum(b - t, 1e-3)[None, :]
    return Raster(y0, int(xs[0]), cov, s=np.clip(s, 0, 1), v=np.clip(v, 0, 1))


__all__ = ["Raster", "band", "bezier_points", "blob_coverage", "clip_box", "coverage", "ellipse",
           "radial", "tapered_strokes"]
