"""Static scenery that never moves: sky, distant hills and tree lines, ground, buildings, rocks,
fences, interiors, beams; plus slowly rippling water. Painted with numpy into full-frame plates or
into static layers (``Layer.paint`` with an empty modal description = source 0)."""

from __future__ import annotations

import cv2
import numpy as np

from . import shapes, textures
from .elements import FOLD, SceneContext
from .render import Layer
from .wind import narrowband, quadrature

SKIES = {
    #          zenith               horizon               cloud
    "day": ((0.30, 0.52, 0.85), (0.72, 0.84, 0.95), (0.97, 0.97, 0.98)),
    "golden": ((0.35, 0.45, 0.70), (1.00, 0.78, 0.50), (1.00, 0.85, 0.70)),
    "overcast": ((0.62, 0.65, 0.70), (0.80, 0.82, 0.84), (0.88, 0.89, 0.90)),
    "dusk": ((0.10, 0.12, 0.30), (0.85, 0.45, 0.35), (0.55, 0.35, 0.40)),
    "night": ((0.02, 0.03, 0.08), (0.10, 0.10, 0.18), (0.15, 0.15, 0.2)),
}


def _aa_below(profile: np.ndarray, H: int) -> np.ndarray:
    """Coverage (H, W) of the region below a curve y = profile(x)."""
    yy = np.arange(H, dtype=np.float32)[:, None]
    return np.clip(yy - profile[None, :] + 0.5, 0.0, 1.0)


def rect(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour) -> None:
    """Anti-aliased axis-aligned rectangle painted over ``img`` (only its box is touched)."""
    H, W = img.shape[:2]
    box = shapes.clip_box(x0 - 1, y0 - 1, x1 + 1, y1 + 1, H, W)
    if box is None:
        return
    by0, bx0, by1, bx1 = box
    xs = np.arange(bx0, bx1, dtype=np.float32)
    ys = np.arange(by0, by1, dtype=np.float32)
    cx = np.clip(np.minimum(xs - x0 + 0.5, x1 - xs + 0.5), 0, 1)
    cy = np.clip(np.minimum(ys - y0 + 0.5, y1 - ys + 0.5), 0, 1)
    cov = cy[:, None] * cx[None, :]
    _blend(img[by0:by1, bx0:bx1], cov, colour)


def _blend(img: np.ndarray, cov: np.ndarray, colour) -> None:
    c = cov[..., None]
    img *= 1.0 - c
    img += np.asarray(colour, np.float32) * c


def sky(ctx: SceneContext, horizon: float, tod: str) -> np.ndarray:
    """A sky plate (H, W, 3): gradient and value-noise clouds, or the real photo sky."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    if tod in ("day", "golden") and rng.random() < 0.3:
        img = textures.sky_plate(rng, H, W)
        if tod == "golden":
            img = img * np.array([1.1, 0.9, 0.7], np.float32)
        return img.astype(np.float32)
    zen, hor, cloud = (np.array(c, np.float32) for c in SKIES[tod])
    zen = textures.jitter(rng, zen, 0.06)
    t = np.clip(np.arange(H, dtype=np.float32) / max(horizon, 1.0), 0, 1)[:, None, None] ** 0.8
    img = zen * (1 - t) + hor * t
    img = np.broadcast_to(img, (H, W, 3)).copy()
    cover = rng.uniform(-0.2, 1.2)
    if cover > 0.0:
        n = textures.value_noise(rng, H, W, rng.uniform(20, 60), 4, 0.55, stretch=(1.0, rng.uniform(1.5, 4.0)))
        c = np.clip((n - (1.2 - cover)) * rng.uniform(0.6, 1.5), 0, 1)[..., None]
        shade = 1.0 - 0.25 * np.clip(n[..., None] - 1.0, 0, 1)
        img = img * (1 - c) + cloud * shade * c
    if tod in ("golden", "dusk") and rng.random() < 0.7:
        sx, sy = rng.uniform(0, W), horizon * rng.uniform(0.5, 1.0)
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        g = np.exp(-(((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * (W * 0.15) ** 2)))[..., None]
        img = img + g * np.array([0.6, 0.4, 0.15], np.float32)
    return img.astype(np.float32)


def hills(ctx: SceneContext, img: np.ndarray, horizon: float, haze_col, n: int) -> None:
    """Distant ridges (and wooded ridges), hazier the farther they are."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    xs = np.arange(W, dtype=np.float32)
    haze_col = np.asarray(haze_col, np.float32)
    for i in range(n):
        depth = (i + 1) / (n + 1)
        amp = H * rng.uniform(0.04, 0.15) * (1 - 0.5 * depth)
        prof = horizon - amp * (0.6 + textures.value_noise(rng, 1, W, rng.uniform(25, 90), 3)[0] * 0.6)
        prof += (depth - 0.5) * H * 0.05
        wooded = rng.random() < 0.45
        if wooded:
            prof -= np.abs(textures.value_noise(rng, 1, W, rng.uniform(2, 5), 2)[0]) * H * 0.02
        base = textures.leaf_colour(rng, ctx.season) * (0.55 if wooded else 0.8)
        if rng.random() < 0.3:
            base = textures.hsv(rng.uniform(0.05, 0.12), 0.3, 0.45)
        mix = (1 - depth) * 0.75
        col = base * (1 - mix) + haze_col * mix
        cov = _aa_below(prof, H)
        tex = 1.0 + 0.12 * textures.value_noise(rng, H, W, 3.0 if wooded else 10.0, 2)[..., None] * (1 - mix)
        c = cov[..., None]
        img *= 1.0 - c
        img += col * tex * c


def ground(ctx: SceneContext, img: np.ndarray, y_top: float, kind: str) -> np.ndarray:
    """Ground from y_top to the bottom: lawn, meadow, dry field, soil or sand; returns its colour."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    cols = {"lawn": textures.photo_colour(rng, "green")[0] * 0.7,
            "dry": textures.photo_colour(rng, "dry")[0] * 0.75,
            "soil": textures.hsv(rng.uniform(0.05, 0.1), rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.4)),
            "sand": textures.hsv(rng.uniform(0.1, 0.13), rng.uniform(0.2, 0.4), rng.uniform(0.6, 0.8))}
    col = np.asarray(cols[kind], np.float32)
    yy = np.arange(H, dtype=np.float32)[:, None]
    prof = np.full(W, y_top, np.float32) + textures.value_noise(rng, 1, W, 40, 2)[0] * 1.5
    cov = _aa_below(prof, H)
    depth = np.clip((yy - y_top) / max(H - y_top, 1), 0, 1)
    tex = 1.0 + 0.18 * textures.detail_texture(rng, H, W, rng.uniform(0.4, 1.2)) * (0.3 + 0.7 * depth)
    patches = 1.0 + 0.2 * textures.value_noise(rng, H, W, 25, 2, stretch=(0.5, 2.0))
    shade = (0.85 + 0.3 * depth) if rng.random() < 0.5 else (1.1 - 0.3 * depth)
    g = col * (tex * patches * shade)[..., None]
    c = cov[..., None]
    img *= 1.0 - c
    img += g * c
    return col


def buildings(ctx: SceneContext, img: np.ndarray, ground_y: float, n: int, scale: float) -> None:
    """Houses / walls along the ground line: walls, windows, roofs (static)."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    x = rng.uniform(-40, W * 0.3)
    for _ in range(n):
        w = rng.uniform(40, 110) * scale
        h = rng.uniform(25, 70) * scale
        x0, x1, y1 = x, x + w, ground_y + rng.uniform(0, 4)
        y0 = y1 - h
        wall = textures.jitter(rng, rng.choice([textures.hsv(0.08, 0.25, 0.8), textures.hsv(0.05, 0.45, 0.55),
                                                textures.hsv(0.1, 0.1, 0.9), textures.hsv(0.55, 0.15, 0.7),
                                                textures.hsv(0.12, 0.35, 0.75)]), 0.06)
        side = ctx.shade(-1.0, 0.0)
        rect(img, x0, y0, x1, y1, wall * side * 0.95)
        # windows
        ww, wh = rng.uniform(5, 10) * scale, rng.uniform(6, 12) * scale
        nx, ny = max(1, int(w / (ww * 2.2))), max(1, int(h / (wh * 2.2)))
        lit_p = 0.5 if ctx.sun < 0.2 else 0.05
        for i in range(nx):
            for j in range(ny):
                cx = x0 + (i + 0.5) * w / nx
                cy = y0 + (j + 0.5) * h / ny
                glass = (np.array([1.0, 0.8, 0.45], np.float32) if rng.random() < lit_p
                         else textures.hsv(0.58, 0.25, rng.uniform(0.15, 0.45)))
                rect(img, cx - ww / 2, cy - wh / 2, cx + ww / 2, cy + wh / 2, glass)
        # roof
        roof = textures.hsv(rng.choice([0.02, 0.05, 0.6, 0.08]), rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.45))
        rh = rng.uniform(0.2, 0.6) * h if rng.random() < 0.75 else 2.0 * scale
        pts = np.array([[x0 - 3, y0], [x1 + 3, y0], [(x0 + x1) / 2 + rng.normal(0, 5), y0 - rh]]) * 16
        m = np.zeros((H, W), np.float32)
        cv2.fillPoly(m, [pts.astype(np.int32)], 1.0, cv2.LINE_AA, 4)
        _blend(img, m, roof)
        x = x1 + rng.uniform(-10, 60) * scale


def rocks(ctx: SceneContext, layer: Layer, n: int, y_range, size_range) -> None:
    """Static boulders and stones (occluders in front of moving layers)."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    for _ in range(n):
        cx, cy = rng.uniform(-10, W + 10), rng.uniform(*y_range)
        rx = rng.uniform(*size_range)
        ry = rx * rng.uniform(0.45, 0.8)
        r = shapes.radial(cx, cy, rx, ry, H, W, pad=rx * 0.2 + 2)
        if r is None:
            continue
        sl = (slice(r.y0, r.y0 + r.shape[0]), slice(r.x0, r.x0 + r.shape[1]))
        nz = textures.value_noise(rng, r.shape[0], r.shape[1], max(2.0, rx / 2), 2)
        sd = (r["rho"] - 1.0 - 0.12 * nz) * rx
        sd = np.maximum(sd, (r["dy"] - 0.55) * ry)  # flat bottom, sunk in the ground
        cov = shapes.coverage(sd)
        base = textures.jitter(rng, textures.hsv(rng.uniform(0.05, 0.12), rng.uniform(0.05, 0.25), rng.uniform(0.35, 0.65)), 0.08)
        lx, ly = ctx.light
        lit = 1.0 + 0.6 * ctx.sun * (r["dx"] * lx + r["dy"] * ly) * 0.7 - 0.2 * np.clip(r["dy"], 0, 1)
        tex = 1.0 + 0.15 * textures.detail_texture(rng, r.shape[0], r.shape[1], 1.5) + 0.1 * nz
        moss = np.clip(ctx.leafnoise[sl] - 0.5, 0, 1)[..., None] * (rng.random() < 0.4)
        col = base * (lit * tex)[..., None]
        col = col * (1 - moss) + textures.photo_colour(rng, "green")[0] * 0.6 * moss
        layer.paint(r.y0, r.x0, cov, col, [])
    ctx.note("rocks")


def fence(ctx: SceneContext, layer: Layer, y_base: float, height: float) -> None:
    """A wooden fence: posts and two rails (static)."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    wood = textures.jitter(rng, textures.hsv(rng.uniform(0.05, 0.1), rng.uniform(0.2, 0.5), rng.uniform(0.3, 0.7)), 0.05)
    if rng.random() < 0.3:
        wood = textures.hsv(0.1, 0.05, 0.9)
    gap = rng.uniform(18, 40) * height / 30
    for k, frac in enumerate((0.3, 0.75)):
        y = y_base - height * frac
        r = shapes.band(-2, W + 2, lambda q, y=y: y + 0 * q, lambda q, y=y: y + height * 0.09 + 0 * q, H, W)
        if r is not None:
            layer.paint(r.y0, r.x0, r.cov, wood * (0.85 + 0.2 * (1 - r["v"]))[..., None], [])
    x = rng.uniform(0, gap)
    while x < W + gap:
        w = height * 0.08
        r = shapes.band(x - w, x + w, lambda q: y_base - height + 0 * q, lambda q: y_base + 0 * q, H, W)
        if r is not None:
            layer.paint(r.y0, r.x0, r.cov, wood * (0.8 + 0.3 * np.sin(np.pi * r["s"]))[..., None], [])
        x += gap
    ctx.note("fence")


def interior(ctx: SceneContext, table_y: float, warm: float) -> np.ndarray:
    """A dim room: plaster or wood-panel wall, optional window and shelf, a wooden table top."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    wall_col = textures.jitter(rng, textures.hsv(rng.uniform(0.03, 0.15), rng.uniform(0.1, 0.5), rng.uniform(0.2, 0.55)), 0.08)
    tex = 1.0 + 0.05 * textures.value_noise(rng, H, W, 1.5, 2) + 0.08 * textures.value_noise(rng, H, W, 30, 3)
    img = np.broadcast_to(wall_col, (H, W, 3)) * tex[..., None]
    if rng.random() < 0.4:  # wood panels
        xs = np.arange(W, dtype=np.float32)
        pw = rng.uniform(12, 30)
        seams = 1.0 - 0.4 * np.exp(-((xs % pw) ** 2) / 1.0)
        img = img * seams[None, :, None]
    img = img.astype(np.float32).copy()
    if rng.random() < 0.4:  # window with dim night or day light
        wx, wy = rng.uniform(10, W - 70), rng.uniform(5, table_y * 0.4)
        ww, wh = rng.uniform(40, 70), rng.uniform(30, table_y * 0.6)
        m = np.zeros((H, W), np.float32)
        cv2.rectangle(m, (int(wx * 16), int(wy * 16)), (int((wx + ww) * 16), int((wy + wh) * 16)), 1.0, -1, cv2.LINE_AA, 4)
        glass = textures.hsv(0.6, 0.5, rng.uniform(0.05, 0.4))
        _blend(img, m, glass)
        m2 = np.zeros((H, W), np.float32)
        cv2.rectangle(m2, (int((wx + ww / 2 - 1) * 16), int(wy * 16)), (int((wx + ww / 2 + 1) * 16), int((wy + wh) * 16)), 1.0, -1, cv2.LINE_AA, 4)
        cv2.rectangle(m2, (int(wx * 16), int((wy + wh / 2 - 1) * 16)), (int((wx + ww) * 16), int((wy + wh / 2 + 1) * 16)), 1.0, -1, cv2.LINE_AA, 4)
        _blend(img, m2, wall_col * 0.6)
    if rng.random() < 0.5:  # shelf with books
        sy = rng.uniform(table_y * 0.2, table_y * 0.6)
        sx0, sx1 = rng.uniform(0, W / 2), rng.uniform(W / 2, W)
        x = sx0
        while x < sx1:
            bw, bh = rng.uniform(2, 6), rng.uniform(8, 16)
            rect(img, x, sy - bh, x + bw, sy, textures.flower_colour(rng) * 0.5)
            x += bw + rng.uniform(0.3, 3)
        m = np.zeros((H, W), np.float32)
        cv2.rectangle(m, (int(sx0 * 16), int(sy * 16)), (int(sx1 * 16), int((sy + 2.5) * 16)), 1.0, -1, cv2.LINE_AA, 4)
        _blend(img, m, textures.hsv(0.07, 0.5, 0.3))
    # table
    wood = textures.hsv(rng.uniform(0.04, 0.1), rng.uniform(0.4, 0.7), rng.uniform(0.2, 0.5))
    grain = 1.0 + 0.12 * textures.value_noise(rng, H, W, 6, 2, stretch=(0.3, 6.0))
    yy = np.arange(H, dtype=np.float32)[:, None]
    cov = np.clip(yy - table_y + 0.5, 0, 1)
    _blend(img, np.broadcast_to(cov, (H, W)).astype(np.float32), 0)
    img += (wood * grain[..., None]) * cov[..., None]
    return img * np.float32(warm)


def light_pool(img: np.ndarray, x: float, y: float, radius: float, colour, strength: float) -> None:
    """Static warm illumination around a light source (candles, lanterns) on the backdrop."""
    H, W = img.shape[:2]
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    g = np.exp(-(((xx - x) ** 2 + (yy - y) ** 2) / (2 * radius**2)))[..., None]
    img *= 1.0 + strength * g * np.asarray(colour, np.float32)


def water(ctx: SceneContext, layer: Layer, y_top: float, above: np.ndarray) -> None:
    """A water surface below y_top: the blurred mirror image of ``above`` with ripple streaks; the
    texture drifts with a gentle travelling ripple (two quadrature sources, < ~1 px)."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    yt = int(np.floor(y_top))
    h = H - yt
    if h <= 0:
        return
    src = above[max(0, 2 * yt - H): yt][::-1]
    if src.shape[0] < h:
        src = np.concatenate([src, np.repeat(src[-1:], h - src.shape[0], 0)], 0)
    refl = cv2.GaussianBlur(np.ascontiguousarray(src[:h]), (0, 0), 1.5 + rng.uniform(0, 2))
    streak = textures.value_noise(rng, h, W, rng.uniform(2, 5), 2, stretch=(1.0, rng.uniform(6, 14)))
    tint = textures.jitter(rng, np.array([0.55, 0.7, 0.75], np.float32), 0.1)
    col = refl * tint * rng.uniform(0.55, 0.85) * (1.0 + 0.18 * streak[..., None])
    if ctx.sun > 0.6:
        col += np.clip(streak - 1.8, 0, 1)[..., None] * 0.5
    lam = rng.uniform(8, 20)
    rip = ctx.wind.modulated(narrowband(rng, rng.uniform(0.8, 2.0), 0.8), W / 2)
    cap = FOLD * lam / (2 * np.pi) / 1.3
    s1 = ctx.bank.add(rip * 0.2 * lam, cap, "water", main=False)
    s2 = ctx.bank.add(quadrature(rip) * 0.2 * lam, cap, "water", main=False)
    yy = np.arange(yt, H, dtype=np.float32)[:, None]
    xx = np.arange(W, dtype=np.float32)[None, :]
    ph = 2 * np.pi * (yy / lam * 2.0 + xx / (lam * 5))
    depth = np.broadcast_to(0.3 + 0.7 * (yy - yt) / h, (h, W))
    cov = np.broadcast_to(np.clip(yy - y_top + 0.5, 0, 1), (h, W)).astype(np.float32)
    layer.paint(yt, 0, cov, col, [(s1, depth * 0.3 * np.cos(ph), depth * np.sin(ph)),
                                  (s2, -depth * 0.3 * np.sin(ph), depth * np.cos(ph))])
    layer.opaque = True
    ctx.note("water")


def beam(ctx: SceneContext, layer: Layer, y: float, thickness: float) -> None:
    """A wooden beam (or pergola bar) across the top: lanterns hang from it (static)."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    wood = textures.hsv(rng.uniform(0.05, 0.1), rng.uniform(0.3, 0.6), rng.uniform(0.15, 0.35))
    r = shapes.band(-2, W + 2, lambda q: y + 0 * q, lambda q: y + thickness + 0 * q, H, W)
    if r is not None:
        grain = 1.0 + 0.1 * textures.value_noise(rng, r.shape[0], r.shape[1], 3, 2, stretch=(0.3, 8.0))
        layer.paint(r.y0, r.x0, r.cov, wood * ((0.8 + 0.3 * (1 - r["v"])) * grain)[..., None], [])


__all__ = ["beam", "buildings", "fence", "ground", "hills", "interior", "light_pool", "rocks", "sky", "water"]
