"""Moving scene elements. Each draws itself into a ``Layer`` with its per-pixel modal description
(source index + mode shape, at most R = 4 per pixel) and registers its sources' spectra.

Mode shapes follow simple structural mechanics: a clamped stem, blade or reed bends as
u(s) = s^p * dir (s = arc fraction from the anchored base, p 1.5..2, dir perpendicular to the stem
with a little out-of-plane/vertical part), so tips move most and bases not at all; trees stack
trunk sway (a smooth field over the whole tree), branch bending and leaf-clump flutter (a smooth
random vector field); hanging things (lanterns, cloth) rotate about their suspension point like
pendulums; flags and ripples carry a travelling wave as two modes in quadrature. Natural
frequencies come from size and stiffness (``wind.cantilever_frequency`` / ``pendulum_frequency``)
and every source's spectrum is its force spectrum times its oscillator's transfer function.
Each source has a cap that keeps the displacement gradient small (layers never fold).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from . import shapes, textures
from .modal_field import SourceBank
from .render import Layer
from .wind import (Wind, cantilever_frequency, narrowband, oscillator_response, pendulum_frequency,
                   quadrature, random_spectrum, turbulence_spectrum)

FOLD = 0.3  # cap on |grad u| * |a|


@dataclass
class SceneContext:
    """Everything elements share while one scene is built."""

    rng: np.random.Generator
    height: int
    width: int
    ppm: float  # pixels per metre at the elements' depth
    wind: Wind
    bank: SourceBank = field(default_factory=SourceBank)
    light: tuple[float, float] = (-0.6, -0.8)  # direction towards the light, image plane
    sun: float = 0.5  # 0 overcast .. 1 hard sun
    season: float = 0.0
    flutter: np.ndarray | None = None  # (2, H, W) smooth unit vector noise
    leafnoise: np.ndarray | None = None  # (H, W) fine noise
    lobenoise: np.ndarray | None = None  # (H, W) coarse noise (foliage outlines)
    parts: list = field(default_factory=list)

    def __post_init__(self) -> None:
        r = self.rng
        if self.flutter is None:
            self.flutter = np.stack([textures.value_noise(r, self.height, self.width, 6.0, 2),
                                     textures.value_noise(r, self.height, self.width, 6.0, 2)])
        if self.leafnoise is None:
            self.leafnoise = textures.value_noise(r, self.height, self.width, 2.0, 2, 0.6)
        if self.lobenoise is None:
            self.lobenoise = textures.value_noise(r, self.height, self.width, 7.0, 2, 0.5)

    def note(self, text: str) -> None:
        self.parts.append(text)

    # -- sources -------------------------------------------------------------------------------
    def sway(self, x, fn, zeta, deflection, cap, kind: str, local: float = 0.35, main: bool = True):
        """Wind-driven oscillators at columns x: register and return their source indices."""
        x = np.atleast_1d(np.asarray(x, np.float64))
        fn = np.broadcast_to(np.asarray(fn, np.float64), x.shape)
        zeta = np.broadcast_to(np.asarray(zeta, np.float64), x.shape)
        F = self.wind.element_force(self.rng, x, local)
        spec = np.broadcast_to(np.asarray(deflection, np.float64), x.shape)[:, None] * F * oscillator_response(fn, zeta)
        caps = np.broadcast_to(np.asarray(cap, np.float64), x.shape)
        return np.array([self.bank.add(spec[i], caps[i], kind, main) for i in range(len(x))], np.int64)

    def flutter_source(self, x, f_center, size, cap, kind: str, bandwidth: float = 0.5, gusty: bool = True):
        """A narrow-band flutter (leaves, flags, flames) modulated by the wind's gusts."""
        spec = narrowband(self.rng, f_center, bandwidth) * size
        if gusty:
            spec = self.wind.modulated(spec, x)
        return self.bank.add(spec, cap, kind, main=False)

    def shade(self, nx, ny):
        """Lambert-ish factor for a surface facing (nx, ny) in the image plane."""
        lx, ly = self.light
        return 1.0 + self.sun * 0.45 * (nx * lx + ny * ly)


def _perp(ax, ay):
    return -ay, ax


def _curve_ctrl(x, y, length, angle, bend):
    """Control points (B, 3, 2) of stems from (x, y) with base angle (from vertical) and extra bend."""
    dx0, dy0 = np.sin(angle), -np.cos(angle)
    dx1, dy1 = np.sin(angle + bend), -np.cos(angle + bend)
    p0 = np.stack([x, y], -1)
    p1 = p0 + 0.5 * length[:, None] * np.stack([dx0, dy0], -1)
    p2 = p1 + 0.55 * length[:, None] * np.stack([dx1, dy1], -1)
    return np.stack([p0, p1, p2], 1)


def _mode_dir(rng, angle, vertical: float = 0.15):
    """Unit mode directions: perpendicular to a stem at ``angle`` plus a little vertical motion."""
    px, py = np.cos(angle), np.sin(angle)
    py = py + rng.normal(0, vertical, np.shape(angle))
    n = np.hypot(px, py)
    return px / n, py / n


# ----------------------------------------------------------------------------------------------
def grass(ctx: SceneContext, layer: Layer, x, y, length, width, colour, lean: float = 0.0, curl: float = 0.35,
          share: int = 2, radius_m: float = 0.0015, wave_speed: float = 130.0, flex: float = 1.0,
          kind: str = "grass") -> int:
    """Tapered blades rooted at (x, y); colour (B, 3). Returns the number drawn.

    Every ``share`` neighbouring blades share one source (their natural frequencies are close);
    the mode shape is (s)^p times a direction perpendicular to the blade.
    """
    rng, H, W = ctx.rng, ctx.height, ctx.width
    x, y, length, width = (np.asarray(a, np.float64) for a in (x, y, length, width))
    B = len(x)
    if B == 0:
        return 0
    angle = lean + rng.normal(0, 0.22, B)
    bend = rng.normal(0.0, curl, B) + 0.8 * np.sign(angle) * np.abs(rng.normal(0, curl * 0.5, B))
    ctrl = _curve_ctrl(x, y, length, angle, bend)
    rasters = shapes.tapered_strokes(ctrl, np.stack([width / 2, np.minimum(width / 2, 0.25)], 1), H, W)
    # sources: neighbouring blades (by x) share
    order_x = np.argsort(x, kind="stable")
    group = np.empty(B, np.int64)
    group[order_x] = np.arange(B) // max(1, share)
    G = int(group.max()) + 1
    gL = np.bincount(group, length, G) / np.maximum(np.bincount(group, None, G), 1)
    gx = np.bincount(group, x, G) / np.maximum(np.bincount(group, None, G), 1)
    rad = radius_m * rng.uniform(0.7, 1.4, G)
    fn = cantilever_frequency(gL / ctx.ppm, rad, wave_speed * rng.uniform(0.8, 1.25, G))
    p = rng.uniform(1.5, 2.0, G)
    cap = np.minimum(FOLD * gL / p, 0.4 * gL)
    src = ctx.sway(gx, fn, rng.uniform(0.08, 0.3, G), flex * gL, cap, kind)
    mdx, mdy = _mode_dir(rng, angle + 0.5 * bend)
    lit = ctx.shade(np.cos(angle), np.sin(angle))
    draw = np.argsort(y + rng.uniform(0, 0.5, B), kind="stable")  # far (higher) first
    colour = np.asarray(colour, np.float32)
    for b in draw:
        r = rasters[b]
        if r is None:
            continue
        s, v = r["s"], r["v"]
        g = group[b]
        base = colour[b] * np.float32(0.85 + 0.3 * rng.random())
        tone = (0.5 + 0.5 * s**0.6) * (1.0 + 0.18 * v * np.float32(lit[b] - 1.0) * 4.0) + 0.1 * (1 - np.abs(v)) * s
        rgb = base[None, None, :] * tone[..., None]
        us = s ** np.float32(p[g])
        layer.paint(r.y0, r.x0, r.cov, rgb, [(src[g], us * np.float32(mdx[b]), us * np.float32(mdy[b]))])
    return B


def grass_field(ctx: SceneContext, layer: Layer, y_top: float, y_bottom: float, density: float,
                len_range: tuple[float, float], width_range: tuple[float, float], colour_kind: str = "green",
                lean: float = 0.0, share: int = 2, x_range: tuple[float, float] | None = None,
                perspective: bool = True, dry: float = 0.0) -> int:
    """A band of grass: blade count ~ density * area, longer and wider towards the bottom."""
    rng = ctx.rng
    x0, x1 = x_range or (-8.0, ctx.width + 8.0)
    n = int(density * (x1 - x0) * max(y_bottom - y_top, 1.0) / 100.0)
    n = int(np.clip(n, 0, 900))
    if n == 0:
        return 0
    y = rng.uniform(y_top, y_bottom, n)
    x = rng.uniform(x0, x1, n)
    depth = (y - y_top) / max(y_bottom - y_top, 1.0) if perspective else np.full(n, 0.5)
    scale = 0.55 + 0.9 * depth
    length = rng.uniform(*len_range, n) * scale
    width = rng.uniform(*width_range, n) * (0.6 + 0.6 * depth)
    cols = textures.photo_colour(rng, "green", n)
    if dry > 0:
        d = rng.random(n) < dry
        cols[d] = textures.photo_colour(rng, "dry", int(d.sum()))
    if colour_kind == "dry":
        cols = textures.photo_colour(rng, "dry", n) * 0.9
    cols = textures.jitter(rng, cols, 0.12) * rng.uniform(0.75, 1.1)
    return grass(ctx, layer, x, y, length, width, cols, lean=lean, share=share)


# ----------------------------------------------------------------------------------------------
def _petal_head(ctx, layer, cx, cy, radius, colour, modal_for, kind):
    """Procedural flower heads: daisy-like rings, cups, clusters; modal_for(raster) -> modal list."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    if kind == "daisy":
        r = shapes.radial(cx, cy, radius, radius * rng.uniform(0.55, 1.0), H, W)
        if r is None:
            return
        n = int(rng.integers(5, 15))
        th = np.arctan2(r["dy"], r["dx"]) + rng.uniform(0, 6.3)
        edge = 0.55 + 0.45 * np.abs(np.cos(n * th / 2)) ** 0.6
        cov = shapes.coverage((r["rho"] - edge) * radius)
        shade = (0.75 + 0.25 * np.abs(np.cos(n * th / 2))) * (1.0 - 0.25 * r["rho"])
        layer.paint(r.y0, r.x0, cov, colour[None, None] * shade[..., None], modal_for(r))
        c = shapes.ellipse(cx, cy, radius * 0.3, radius * 0.3 * rng.uniform(0.6, 1.0), 0.0, H, W)
        if c is not None:
            cc = textures.hsv(rng.uniform(0.08, 0.14), 0.9, rng.uniform(0.4, 0.9))
            layer.paint(c.y0, c.x0, c.cov, cc * (1.1 - 0.3 * c["rho"][..., None]), modal_for(c))
    elif kind == "cup":
        e = shapes.ellipse(cx, cy, radius * 0.7, radius, rng.normal(0, 0.2), H, W)
        if e is None:
            return
        tone = 0.7 + 0.3 * np.cos(e["lx"] * 4.0) ** 2 - 0.2 * e["ly"]
        layer.paint(e.y0, e.x0, e.cov, colour[None, None] * tone[..., None], modal_for(e))
    else:  # cluster of small florets
        for _ in range(int(rng.integers(4, 9))):
            ox, oy = rng.normal(0, radius * 0.5, 2)
            e = shapes.ellipse(cx + ox, cy + oy, radius * 0.35, radius * 0.35, 0.0, H, W)
            if e is not None:
                col = textures.jitter(rng, colour, 0.1)
                layer.paint(e.y0, e.x0, e.cov, col * (1.1 - 0.35 * e["rho"][..., None]), modal_for(e))


def flowers(ctx: SceneContext, layer: Layer, x, y, length, head_radius, colours=None, lean: float = 0.0,
            kinds=("daisy", "cup", "cluster", "dahlia", "dandelion"), leaves: bool = True) -> int:
    """Flowers on stems rooted at (x, y). Stem sway (two orthogonal sources: elliptical orbits) plus
    a head flutter (rotation about the head's centre); leaves flutter about their attachment."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    x, y, length, head_radius = (np.atleast_1d(np.asarray(a, np.float64)) for a in (x, y, length, head_radius))
    B = len(x)
    angle = lean + rng.normal(0, 0.15, B)
    bend = rng.normal(0, 0.25, B)
    ctrl = _curve_ctrl(x, y, length, angle, bend)
    sw = np.maximum(0.45, 0.018 * length + rng.uniform(0, 0.3, B))
    stems = shapes.tapered_strokes(ctrl, np.stack([sw, sw * 0.7], 1), H, W)
    tipmass = rng.uniform(0.3, 2.0, B) * (head_radius / np.maximum(length, 1)) * 8
    fn = cantilever_frequency(length / ctx.ppm, rng.uniform(0.0012, 0.003, B), rng.uniform(150, 260, B), tipmass)
    p = rng.uniform(1.5, 2.0, B)
    cap = np.minimum(FOLD * length / p, 0.35 * length)
    s1 = ctx.sway(x, fn, rng.uniform(0.06, 0.25, B), length, cap, "flower_stem")
    s2 = ctx.sway(x, fn * rng.uniform(0.85, 1.15, B), rng.uniform(0.06, 0.25, B), 0.5 * length, cap, "flower_stem_z")
    d1x, d1y = _mode_dir(rng, angle + bend * 0.5, 0.1)
    d2x, d2y = rng.normal(0, 0.3, B), rng.choice([-1.0, 1.0], B) * rng.uniform(0.3, 0.8, B)
    n2 = np.hypot(d2x, d2y)
    d2x, d2y = d2x / n2, d2y / n2
    stem_col = textures.jitter(rng, textures.photo_colour(rng, "green", B) * 0.8, 0.1)
    if colours is None:
        colours = [textures.flower_colour(rng) for _ in range(B)]
    kinds = list(kinds)
    order = np.argsort(y, kind="stable")
    for b in order:
        r = stems[b]
        tip = ctrl[b, 2]
        if r is not None:
            us = r["s"] ** np.float32(p[b])
            tone = 0.8 + 0.25 * r["v"] * (ctx.sun)
            layer.paint(r.y0, r.x0, r.cov, stem_col[b][None, None] * tone[..., None],
                        [(s1[b], us * d1x[b], us * d1y[b]), (s2[b], us * d2x[b], us * d2y[b])])
        if leaves and length[b] > 12:
            for _ in range(int(rng.integers(0, 3))):
                t = rng.uniform(0.1, 0.5)
                px, py = (1 - t) ** 2 * ctrl[b, 0] + 2 * (1 - t) * t * ctrl[b, 1] + t**2 * ctrl[b, 2]
                side = rng.choice([-1, 1])
                ll = length[b] * rng.uniform(0.15, 0.3)
                la = angle[b] + side * rng.uniform(0.6, 1.2)
                lc = (px + 0.5 * ll * np.sin(la), py - 0.5 * ll * np.cos(la))
                e = shapes.ellipse(lc[0], lc[1], max(0.8, ll * 0.18), ll * 0.5, la, H, W)
                if e is None:
                    continue
                us = np.float32(t ** p[b])
                fl = ctx.flutter_source(px, rng.uniform(1.5, 2.8), 0.3 * ll, FOLD * ll, "leaf")
                yy, xx = e.grid()
                rx, ry = (xx - px) / ll, (yy - py) / ll
                tone = 0.85 + 0.2 * e["lx"]
                layer.paint(e.y0, e.x0, e.cov, stem_col[b][None, None] * 1.1 * tone[..., None],
                            [(s1[b], us * d1x[b], us * d1y[b]), (s2[b], us * d2x[b], us * d2y[b]), (fl, -ry, rx)])
        hr = head_radius[b]
        hs = ctx.flutter_source(tip[0], min(3.0, fn[b] * rng.uniform(1.5, 3.0)), 0.3 * hr, FOLD * hr, "flower_head")

        def modal_for(rr, b=b, hs=hs, hr=hr, tip=tip):
            yy, xx = rr.grid()
            rx = np.broadcast_to((xx - tip[0]) / hr, rr.shape)
            ry = np.broadcast_to((yy - tip[1]) / hr, rr.shape)
            return [(s1[b], d1x[b], d1y[b]), (s2[b], d2x[b], d2y[b]), (hs, -ry * 0.5, rx * 0.5)]

        kind = kinds[int(rng.integers(len(kinds)))]
        if kind in ("dahlia", "dandelion"):
            size = int(round(2 * hr * (1.3 if kind == "dandelion" else 1.0)))
            if size >= 4:
                rgb, alpha = textures.sprite(rng, kind, size)
                if kind == "dahlia":
                    rgb = textures.recolour(rgb, rng.uniform(-0.5, 0.5) if rng.random() < 0.6 else 0.0)
                y0, x0 = int(round(tip[1] - size / 2)), int(round(tip[0] - size / 2))
                ys, xs = slice(max(0, -y0), min(size, H - y0)), slice(max(0, -x0), min(size, W - x0))
                if ys.stop > ys.start and xs.stop > xs.start:
                    rr = shapes.Raster(y0 + ys.start, x0 + xs.start, alpha[ys, xs])
                    layer.paint(rr.y0, rr.x0, rr.cov, rgb[ys, xs] * ctx.shade(0.0, -0.5), modal_for(rr))
                continue
        _petal_head(ctx, layer, tip[0], tip[1], hr, np.asarray(colours[b], np.float32) * ctx.shade(0, -0.5),
                    modal_for, kind if kind in ("daisy", "cup", "cluster") else "daisy")
    return B


# ----------------------------------------------------------------------------------------------
def reeds(ctx: SceneContext, layer: Layer, x, y, length, lean: float = 0.0, heads: float = 0.6) -> int:
    """Tall reeds and rushes: long thin stems (slow, large sway), some with cattail or plume heads."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    x, y, length = (np.atleast_1d(np.asarray(a, np.float64)) for a in (x, y, length))
    B = len(x)
    angle = lean + rng.normal(0, 0.08, B)
    bend = rng.normal(0.0, 0.12, B) + 0.4 * lean
    ctrl = _curve_ctrl(x, y, length, angle, bend)
    w = np.maximum(0.55, length * rng.uniform(0.008, 0.018, B))
    rasters = shapes.tapered_strokes(ctrl, np.stack([w, w * 0.4], 1), H, W)
    fn = cantilever_frequency(length / ctx.ppm, rng.uniform(0.002, 0.004, B), rng.uniform(250, 450, B))
    p = rng.uniform(1.6, 2.0, B)
    cap = np.minimum(FOLD * length / p, 0.2 * length)
    src = ctx.sway(x, fn, rng.uniform(0.05, 0.2, B), length, cap, "reed", local=0.25)
    dx, dy = _mode_dir(rng, angle + 0.5 * bend, 0.1)
    base = textures.photo_colour(rng, "dry" if rng.random() < 0.5 else "green", B)
    cols = textures.jitter(rng, base * rng.uniform(0.55, 0.95), 0.1)
    for b in np.argsort(y, kind="stable"):
        r = rasters[b]
        if r is None:
            continue
        us = r["s"] ** np.float32(p[b])
        tone = (0.7 + 0.35 * r["s"]) * (1 + 0.2 * r["v"] * ctx.sun)
        layer.paint(r.y0, r.x0, r.cov, cols[b][None, None] * tone[..., None], [(src[b], us * dx[b], us * dy[b])])
        if rng.random() < heads:
            t0 = rng.uniform(0.72, 0.85)
            pts = shapes.bezier_points(ctrl[b:b + 1], 8)[0]
            i0 = int(t0 * 8)
            hx, hy = pts[i0]
            tx, ty = pts[min(i0 + 1, 8)]
            hl = length[b] * rng.uniform(0.08, 0.14)
            ang = np.arctan2(tx - hx, -(ty - hy))
            plume = rng.random() < 0.4
            e = shapes.ellipse(hx + 0.5 * hl * np.sin(ang), hy - 0.5 * hl * np.cos(ang),
                               w[b] * (2.5 if plume else 1.6), hl * (0.9 if plume else 0.5), ang, H, W)
            if e is not None:
                col = textures.hsv(0.07, 0.6, 0.28) if not plume else textures.hsv(0.09, 0.35, 0.7)
                us = np.float32(t0 ** p[b])
                tone = 1.0 + 0.25 * e["lx"] * ctx.sun
                layer.paint(e.y0, e.x0, e.cov, col[None, None] * tone[..., None], [(src[b], us * dx[b], us * dy[b])])
    return B


# ----------------------------------------------------------------------------------------------
def _foliage_clump(ctx, layer, cx, cy, rx, ry, colour, modal, shade_bias=0.0, rough=0.3):
    """A leafy clump: a lobed blob (coarse noise outline, a few fine gaps at the rim) shaded by
    the light direction, darker underneath and inside, with a fine leaf texture."""
    r = shapes.radial(cx, cy, rx, ry, ctx.height, ctx.width, pad=rx * rough + 2)
    if r is None:
        return
    sl = (slice(r.y0, r.y0 + r.shape[0]), slice(r.x0, r.x0 + r.shape[1]))
    fine = ctx.leafnoise[sl]
    lobes = ctx.lobenoise[sl]
    cov = shapes.blob_coverage(r["rho"], lobes + 0.35 * fine, max(rx, ry), rough)
    rim = np.clip((r["rho"] - 0.75) * 4.0, 0.0, 1.0)
    cov = cov * (1.0 - rim * np.clip(0.6 - fine, 0.0, 1.0))
    lx, ly = ctx.light
    lit = 1.0 + ctx.sun * 0.45 * (r["dx"] * lx + r["dy"] * ly) - 0.2 * r["rho"] ** 2 - 0.12 * np.clip(r["dy"], 0, 1) + shade_bias
    tex = 1.0 + 0.16 * fine + 0.12 * np.clip(fine - 1.0, 0.0, 2.0) * (0.5 + ctx.sun)
    layer.paint(r.y0, r.x0, cov, colour[None, None] * (lit * tex)[..., None], modal(r))


def tree(ctx: SceneContext, layer: Layer, x: float, y_base: float, height: float, kind: str = "broadleaf") -> None:
    """A tree: trunk sway (smooth over the whole tree), branch bending, clump flutter (R <= 3)."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    h_m = height / ctx.ppm
    trunk_r = height * rng.uniform(0.025, 0.045)
    mass = rng.uniform(1.0, 3.0)
    f_trunk = cantilever_frequency(h_m, max(0.05, h_m * 0.02), rng.uniform(400, 700), mass, fmin=0.25, fmax=1.2)
    cap_t = FOLD * height / 2.0
    T = int(ctx.sway(x, f_trunk, rng.uniform(0.04, 0.12), 0.35 * height, cap_t, "trunk")[0])
    lean = rng.normal(0, 0.06)
    tdx, tdy = _mode_dir(rng, np.array(lean), 0.05)
    tdx, tdy = float(tdx), float(tdy)
    season = ctx.season
    leaf = textures.leaf_colour(rng, season)
    bark = textures.hsv(rng.uniform(0.05, 0.1), rng.uniform(0.2, 0.5), rng.uniform(0.18, 0.4))
    if kind == "birch":
        bark = textures.hsv(0.1, 0.05, rng.uniform(0.75, 0.9))

    def trunk_u(yy):
        hgt = np.clip((y_base - yy) / height, 0.0, 1.0)
        return hgt * hgt

    top = (x + lean * height * 0.6, y_base - height * (0.9 if kind == "conifer" else rng.uniform(0.5, 0.7)))
    ctrl = np.array([[[x, y_base], [x + lean * height * 0.2, (y_base + top[1]) / 2], top]])
    tr = shapes.tapered_strokes(ctrl, np.array([[trunk_r, trunk_r * 0.55]]), H, W)[0]

    def draw_trunk():
        if tr is None:
            return
        yy, _ = tr.grid()
        tu = np.broadcast_to(trunk_u(yy), tr.shape)
        tex = 1.0 + 0.15 * ctx.leafnoise[tr.y0:tr.y0 + tr.shape[0], tr.x0:tr.x0 + tr.shape[1]]
        if kind == "birch":
            tex = tex * np.where(ctx.leafnoise[tr.y0:tr.y0 + tr.shape[0], tr.x0:tr.x0 + tr.shape[1]] > 1.2, 0.3, 1.0)
        tone = (1.0 + 0.4 * ctx.sun * tr["v"] * -np.sign(ctx.light[0])) * tex
        layer.paint(tr.y0, tr.x0, tr.cov, bark[None, None] * tone[..., None], [(T, tu * tdx, tu * tdy)])

    crown_cx, crown_cy = top
    crown_r = height * rng.uniform(0.28, 0.42)
    if kind == "conifer":
        draw_trunk()
        tiers = int(rng.integers(4, 8))
        for i in range(tiers):
            fy = i / tiers
            cy = y_base - height * (0.95 - 0.7 * fy)
            half_w = height * (0.08 + 0.22 * fy) * rng.uniform(0.85, 1.1)
            th = height * 0.7 / tiers * 1.6
            r = shapes.radial(x + lean * height * (1 - fy) * 0.5, cy, half_w, th / 2, H, W, pad=3)
            if r is None:
                continue
            sl = (slice(r.y0, r.y0 + r.shape[0]), slice(r.x0, r.x0 + r.shape[1]))
            nz = ctx.leafnoise[sl]
            sd = (np.abs(r["dx"]) - (r["dy"] + 1) / 2 - 0.15 * nz) * half_w
            sd = np.maximum(sd, (r["dy"] - 1 + 0.2 * nz) * th / 2)
            cov = shapes.coverage(sd)
            f_b = cantilever_frequency(half_w / ctx.ppm, 0.02, 500, 1.0, fmin=0.6, fmax=2.0)
            Bsrc = int(ctx.sway(x, f_b, rng.uniform(0.05, 0.15), 0.2 * half_w, FOLD * half_w, "branch")[0])
            yy, xx = r.grid()
            tu = np.broadcast_to(trunk_u(yy), r.shape)
            bu = np.clip(np.abs(r["dx"]), 0, 1) ** 1.5
            tone = (0.75 + 0.1 * fy) * (1 + 0.2 * nz) * (1 + 0.3 * ctx.sun * r["dx"] * -np.sign(ctx.light[0]))
            col = leaf[None, None] * tone[..., None]
            layer.paint(r.y0, r.x0, cov, col, [(T, tu * tdx, tu * tdy), (Bsrc, bu * 0.3, bu)])
        ctx.note("conifer")
        return
    # broadleaf / birch: back clumps, trunk and branches, front clumps
    nb = int(rng.integers(3, 7))
    branches = []
    for i in range(nb):
        t = rng.uniform(0.45, 1.0)
        bx = x + (top[0] - x) * t
        by = y_base + (top[1] - y_base) * t
        side = -1 if i % 2 == 0 else 1
        ang = side * rng.uniform(0.4, 1.1)
        bl = crown_r * rng.uniform(0.6, 1.1)
        ex, ey = bx + bl * np.sin(ang), by - bl * np.cos(ang)
        branches.append((bx, by, ex, ey, ang, bl))
    ctrlb = np.array([[[bx, by], [(bx + ex) / 2, (by + ey) / 2 + rng.normal(0, bl * 0.1)], [ex, ey]]
                      for bx, by, ex, ey, ang, bl in branches])
    rb = np.array([[trunk_r * 0.45, trunk_r * 0.15]] * nb)
    br = shapes.tapered_strokes(ctrlb, rb, H, W)
    bsrc = []
    for bx, by, ex, ey, ang, bl in branches:
        f_b = cantilever_frequency(bl / ctx.ppm, max(0.01, bl / ctx.ppm * 0.025), rng.uniform(450, 650), 1.0,
                                   fmin=max(0.4, float(f_trunk)), fmax=2.2)
        s = int(ctx.sway(bx, f_b, rng.uniform(0.05, 0.15), 0.3 * bl, FOLD * bl / 1.5, "branch")[0])
        dx, dy = _mode_dir(rng, np.array(ang), 0.2)
        bsrc.append((s, float(dx), float(dy)))
    clumps = []
    for bi, (bx, by, ex, ey, ang, bl) in enumerate(branches):
        for _ in range(int(rng.integers(2, 5))):
            t = rng.uniform(0.5, 1.05)
            cx = bx + (ex - bx) * t + rng.normal(0, crown_r * 0.12)
            cy = by + (ey - by) * t + rng.normal(0, crown_r * 0.12)
            clumps.append((bi, t, cx, cy, crown_r * rng.uniform(0.3, 0.55)))
    for _ in range(int(rng.integers(2, 5))):  # crown top
        clumps.append((-1, 1.0, crown_cx + rng.normal(0, crown_r * 0.3), crown_cy - crown_r * rng.uniform(0.2, 0.7),
                       crown_r * rng.uniform(0.35, 0.6)))

    def clump_modal(bi, t, cx, cy, rad):
        fl = ctx.flutter_source(cx, rng.uniform(1.6, 3.0), 0.15 * rad, FOLD * 6.0 * 0.5, "leaves")

        def modal(r):
            yy, xx = r.grid()
            tu = np.broadcast_to(trunk_u(yy), r.shape)
            sl = (slice(r.y0, r.y0 + r.shape[0]), slice(r.x0, r.x0 + r.shape[1]))
            fx, fy = ctx.flutter[0][sl] * 0.5, ctx.flutter[1][sl] * 0.5
            out = [(T, tu * tdx, tu * tdy)]
            if bi >= 0:
                s, dx, dy = bsrc[bi]
                bu = np.float32(min(t, 1.0) ** 1.5)
                out.append((s, bu * dx, bu * dy))
            out.append((fl, fx, fy))
            return out
        return modal

    rng.shuffle(clumps)
    nback = len(clumps) // 2
    for c in clumps[:nback]:
        _foliage_clump(ctx, layer, c[2], c[3], c[4], c[4] * rng.uniform(0.75, 1.0), leaf * 0.7,
                       clump_modal(*c), shade_bias=-0.15)
    draw_trunk()
    for bi, r in enumerate(br):
        if r is None:
            continue
        yy, _ = r.grid()
        tu = np.broadcast_to(trunk_u(yy), r.shape)
        s, dx, dy = bsrc[bi]
        bu = r["s"] ** 1.5
        layer.paint(r.y0, r.x0, r.cov, bark[None, None] * (0.9 + 0.2 * r["v"][..., None]),
                    [(T, tu * tdx, tu * tdy), (s, bu * dx, bu * dy)])
    for c in clumps[nback:]:
        _foliage_clump(ctx, layer, c[2], c[3], c[4], c[4] * rng.uniform(0.75, 1.0),
                       textures.jitter(rng, leaf, 0.06), clump_modal(*c))
    ctx.note("birch" if kind == "birch" else "tree")


def shrub(ctx: SceneContext, layer: Layer, cx: float, y_base: float, radius: float, colour=None) -> None:
    """A bush: leafy clumps in a dome; each clump sways with its height above the ground and flutters."""
    rng = ctx.rng
    colour = textures.leaf_colour(rng, ctx.season * 0.5) if colour is None else colour
    n = int(np.clip(radius / 3, 4, 18))
    for i in range(n):
        a = rng.uniform(-1.3, 1.3)
        rr = radius * np.sqrt(rng.uniform(0.1, 1.0))
        x = cx + rr * np.sin(a) * 1.2
        y = y_base - radius * 0.55 - rr * np.cos(a) * 0.8
        cr = radius * rng.uniform(0.3, 0.5)
        hgt = max(2.0, y_base - (y - cr))
        f = cantilever_frequency(hgt / ctx.ppm, 0.006, rng.uniform(200, 350), 1.0, fmin=0.8, fmax=2.8)
        src = int(ctx.sway(x, f, rng.uniform(0.08, 0.2), 0.4 * cr, FOLD * hgt / 1.5, "shrub")[0])
        fl = ctx.flutter_source(x, rng.uniform(1.8, 3.0), 0.12 * cr, FOLD * 3.0, "leaves")
        dx, dy = _mode_dir(rng, np.array(rng.normal(0, 0.2)), 0.2)

        def modal(r, src=src, fl=fl, dx=float(dx), dy=float(dy)):
            yy, _ = r.grid()
            hu = np.broadcast_to(np.clip((y_base - yy) / (radius * 1.6), 0, 1) ** 1.5, r.shape)
            sl = (slice(r.y0, r.y0 + r.shape[0]), slice(r.x0, r.x0 + r.shape[1]))
            return [(src, hu * dx, hu * dy), (fl, ctx.flutter[0][sl] * 0.5, ctx.flutter[1][sl] * 0.5)]

        tone = 0.7 + 0.4 * (i / n)
        _foliage_clump(ctx, layer, x, y, cr, cr * 0.85, textures.jitter(rng, colour * tone, 0.05), modal)
    ctx.note("shrub")


# ----------------------------------------------------------------------------------------------
def _pattern(rng, s, v, base):
    """Cloth/flag patterns on (s, v) coordinates: plain, stripes, checks, tricolours."""
    kind = int(rng.integers(0, 5))
    c2 = textures.flower_colour(rng) if rng.random() < 0.6 else textures.hsv(0, 0, rng.uniform(0.85, 1.0))
    base = np.asarray(base, np.float32)
    if kind == 0:
        m = np.zeros_like(s)
    elif kind == 1:
        m = (np.sin(v * rng.uniform(8, 30)) > 0).astype(np.float32)
    elif kind == 2:
        m = (np.sin(s * rng.uniform(8, 30)) > 0).astype(np.float32)
    elif kind == 3:
        f = rng.uniform(10, 25)
        m = ((np.sin(s * f) > 0) ^ (np.sin(v * f) > 0)).astype(np.float32)
    else:
        k = (np.floor(np.clip(s if rng.random() < 0.5 else v, 0, 0.999) * 3)).astype(np.int32)
        c3 = textures.flower_colour(rng)
        cols = np.stack([base, c2, c3])
        return cols[k]
    return base * (1 - m[..., None]) + c2 * m[..., None]


def flag(ctx: SceneContext, layer: Layer, pole_x: float, top_y: float, length: float, height: float,
         direction: float = 1.0, pole_bottom: float | None = None) -> None:
    """A flag on a pole: a travelling wave (two modes in quadrature) with gust-modulated flutter."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    lam = length * rng.uniform(0.5, 1.0)
    f = rng.uniform(1.0, 2.6)
    droop = height * rng.uniform(0.0, 0.5) * (1.0 - min(1.0, ctx.wind.turbulence * 2))
    sgn = 1.0 if direction >= 0 else -1.0
    x0, x1 = (pole_x, pole_x + length) if sgn > 0 else (pole_x - length, pole_x)

    def sfrac(xs):
        return np.clip((xs - pole_x) * sgn / length, 0, 1)

    r = shapes.band(x0, x1, lambda xs: top_y + droop * sfrac(xs) ** 2,
                    lambda xs: top_y + height + droop * sfrac(xs) ** 2 - 0.15 * height * sfrac(xs), H, W)
    spec = narrowband(rng, f, 0.5)
    a1 = ctx.wind.modulated(spec, pole_x)
    amp = FOLD * lam / (2 * np.pi) / 1.2
    s1 = ctx.bank.add(a1, amp, "flag", main=True)
    s2 = ctx.bank.add(quadrature(a1), amp, "flag", main=False)
    if r is not None:
        yy, xx = r.grid()
        s = np.broadcast_to(sfrac(xx), r.shape)
        ph = 2 * np.pi * s * length / lam
        env = s**1.2
        base = textures.flower_colour(rng)
        col = _pattern(rng, s, r["v"], base)
        fold = 1.0 + 0.22 * np.cos(ph + 0.7) * (0.3 + 0.7 * s)
        col = col * (fold * ctx.shade(0, -0.3))[..., None]
        layer.paint(r.y0, r.x0, r.cov, col, [(s1, 0.35 * env * np.cos(ph) * sgn, env * np.sin(ph)),
                                             (s2, -0.35 * env * np.sin(ph) * sgn, env * np.cos(ph))])
    pb = pole_bottom if pole_bottom is not None else H + 5
    pr = shapes.tapered_strokes(np.array([[[pole_x, pb], [pole_x, (pb + top_y) / 2], [pole_x, top_y - 3]]]),
                                np.array([[1.2, 0.9]]) * max(1.0, height / 25), H, W)[0]
    if pr is not None:
        c = textures.hsv(0, 0, rng.uniform(0.3, 0.8))
        layer.paint(pr.y0, pr.x0, pr.cov, c[None, None] * (0.8 + 0.3 * pr["v"][..., None]), [])
    ctx.note("flag")


def bunting(ctx: SceneContext, layer: Layer, xa: float, ya: float, xb: float, yb: float, size: float) -> None:
    """Pennants on a sagging string: the string sways, each pennant swings about the string."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    sag = abs(xb - xa) * rng.uniform(0.05, 0.15)

    def line_y(xs):
        t = np.clip((xs - xa) / (xb - xa), 0, 1)
        return ya + (yb - ya) * t + 4 * sag * t * (1 - t)

    span = abs(xb - xa)
    f_line = cantilever_frequency(span / ctx.ppm, 0.01, 60.0, 2.0, fmin=0.4, fmax=1.2)
    L = int(ctx.sway((xa + xb) / 2, f_line, rng.uniform(0.05, 0.15), 0.05 * span, FOLD * span / 4, "string")[0])
    xs = np.arange(min(xa, xb), max(xa, xb), 1.0)
    line = shapes.band(min(xa, xb), max(xa, xb), lambda q: line_y(q) - 0.5, lambda q: line_y(q) + 0.5, H, W)
    if line is not None:
        yy, xx = line.grid()
        lu = np.broadcast_to(np.sin(np.pi * np.clip((xx - xa) / (xb - xa), 0, 1)), line.shape)
        layer.paint(line.y0, line.x0, line.cov, textures.hsv(0, 0, 0.25), [(L, lu * 0.4, lu)])
    n = int(span / (size * 1.3))
    for i in range(n):
        cx = min(xa, xb) + (i + 0.5) * span / n
        w = size * 0.5
        r = shapes.band(cx - w, cx + w, lambda q: line_y(q),
                        lambda q, cx=cx: line_y(q) + size * np.clip(1 - np.abs(q - cx) / w, 0, 1) * 1.2, H, W)
        if r is None:
            continue
        f = pendulum_frequency(size / ctx.ppm * 0.6, fmin=0.8)
        P = int(ctx.sway(cx, f, rng.uniform(0.05, 0.15), 0.3 * size, FOLD * size, "pennant", main=False)[0])
        yy, xx = r.grid()
        ly = line_y(cx)
        lu = float(np.sin(np.pi * np.clip((cx - xa) / (xb - xa), 0, 1)))
        du = np.broadcast_to(np.clip((yy - ly) / size, 0, 1.5), r.shape)
        col = textures.flower_colour(rng) * ctx.shade(0, -0.3)
        layer.paint(r.y0, r.x0, r.cov, col, [(L, lu * 0.4, lu), (P, du, 0.0)])
    del xs
    ctx.note("bunting")


def cloth_line(ctx: SceneContext, layer: Layer, xa: float, xb: float, y_line: float, n_items: int,
               max_h: float) -> None:
    """Laundry on a line: pieces swing about the line (pendulum-like) and ripple (quadrature pair)."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    span = xb - xa
    sag = span * rng.uniform(0.02, 0.08)

    def line_y(xs):
        t = np.clip((xs - xa) / span, 0, 1)
        return y_line + 4 * sag * t * (1 - t)

    f_line = cantilever_frequency(span / ctx.ppm, 0.01, 60.0, 4.0, fmin=0.4, fmax=1.0)
    Ls = int(ctx.sway((xa + xb) / 2, f_line, rng.uniform(0.05, 0.12), 0.03 * span, FOLD * span / 4, "line")[0])
    line = shapes.band(xa, xb, lambda q: line_y(q) - 0.5, lambda q: line_y(q) + 0.5, H, W)
    if line is not None:
        yy, xx = line.grid()
        lu = np.broadcast_to(np.sin(np.pi * np.clip((xx - xa) / span, 0, 1)), line.shape)
        layer.paint(line.y0, line.x0, line.cov, textures.hsv(0, 0, 0.85), [(Ls, lu * 0.3, lu)])
    slots = np.sort(rng.uniform(xa + 4, xb - 4, n_items))
    for cx in slots:
        w = rng.uniform(0.35, 1.0) * max_h * 0.9
        h = rng.uniform(0.4, 1.0) * max_h
        hem = rng.normal(0, 0.05 * h, 4)

        def bottom(q, cx=cx, w=w, h=h, hem=hem):
            t = np.clip((q - cx + w / 2) / w, 0, 1)
            return line_y(q) + h + hem[0] * np.sin(3 * t + hem[1]) + hem[2] * t

        r = shapes.band(cx - w / 2, cx + w / 2, line_y, bottom, H, W)
        if r is None:
            continue
        f = pendulum_frequency(h / ctx.ppm * 0.5, fmin=0.5)
        swing = int(ctx.sway(cx, f, rng.uniform(0.1, 0.25), 0.3 * h, FOLD * h / 1.3, "cloth")[0])
        lam = h * rng.uniform(0.7, 1.5)
        rip = ctx.wind.modulated(narrowband(rng, rng.uniform(1.2, 2.5), 0.6), cx)
        ampc = FOLD * lam / (2 * np.pi) / 1.3
        r1 = ctx.bank.add(rip * 0.5, ampc, "cloth_ripple", main=False)
        r2 = ctx.bank.add(quadrature(rip) * 0.5, ampc, "cloth_ripple", main=False)
        yy, xx = r.grid()
        v = r["v"]
        lu = np.broadcast_to(np.sin(np.pi * np.clip((xx - xa) / span, 0, 1)), r.shape)
        su = v**1.3
        ph = 2 * np.pi * (v * h / lam + np.broadcast_to(xx / lam * 0.5, r.shape))
        col = _pattern(rng, r["s"], v, textures.flower_colour(rng) if rng.random() < 0.7 else textures.hsv(0, 0, 0.95))
        fold = 1.0 + 0.18 * np.cos(2 * np.pi * r["s"] * rng.uniform(1.5, 4.0) + rng.uniform(0, 6))
        col = col * (fold * (1.0 - 0.15 * v) * ctx.shade(0, -0.3))[..., None]
        env = v
        layer.paint(r.y0, r.x0, r.cov, col, [(Ls, lu * 0.3, lu), (swing, su, 0.1 * su),
                                             (r1, env * np.sin(ph), 0.2 * env * np.cos(ph)),
                                             (r2, env * np.cos(ph), -0.2 * env * np.sin(ph))])
    ctx.note("laundry")


# ----------------------------------------------------------------------------------------------
def candle(ctx: SceneContext, layer: Layer, x: float, y_base: float, body_h: float, body_w: float,
           flame_len: float, draft: float = 0.5) -> None:
    """A candle: static wax body and wick, a flickering flame (sway + stretch sources) with a glow."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    top = y_base - body_h
    wax = textures.hsv(rng.choice([0.08, 0.0, 0.12, 0.6, 0.95]), rng.uniform(0.05, 0.6), rng.uniform(0.6, 0.95))
    body = shapes.band(x - body_w / 2, x + body_w / 2, lambda q: top + 0 * q, lambda q: y_base + 0 * q, H, W)
    if body is not None:
        s = body["s"]
        tone = 0.35 + 0.65 * np.clip(np.sin(np.pi * s), 0, 1) ** 0.7 * (1.0 + 0.5 * (1 - body["v"]))
        layer.paint(body.y0, body.x0, body.cov, wax[None, None] * tone[..., None], [])
    e = shapes.ellipse(x, top, body_w / 2, max(0.8, body_w * 0.15), 0.0, H, W)
    if e is not None:
        layer.paint(e.y0, e.x0, e.cov, wax * 1.15, [])
    wick = shapes.tapered_strokes(np.array([[[x, top], [x, top - 1.0], [x + 0.2, top - 2.0]]]), np.array([[0.5, 0.4]]), H, W)[0]
    if wick is not None:
        layer.paint(wick.y0, wick.x0, wick.cov, np.array([0.1, 0.08, 0.06], np.float32), [])
    fb = top - 1.5
    lean = rng.normal(0, 0.1)
    ctrl = np.array([[[x, fb], [x + lean * flame_len * 0.3, fb - flame_len * 0.45], [x + lean * flame_len, fb - flame_len]]])
    fw = flame_len * rng.uniform(0.2, 0.3)
    fr = shapes.tapered_strokes(ctrl, np.array([[fw, 0.1]]), H, W, nseg=6)[0]
    f0 = rng.uniform(0.8, 2.6)
    spec = narrowband(rng, f0, rng.uniform(0.4, 1.2)) + 0.4 * random_spectrum(rng, turbulence_spectrum(1.5))
    spec = spec * draft
    S = ctx.bank.add(spec * flame_len, FOLD * flame_len / 1.5, "flame", main=True)
    Z = ctx.bank.add(narrowband(rng, rng.uniform(1.0, 3.0), 0.8) * draft * flame_len * 0.3, 0.25 * flame_len,
                     "flame_stretch", main=False)
    if fr is None:
        return
    s, v = fr["s"], np.abs(fr["v"])
    core = np.clip(1.0 - v * 1.4 - np.abs(s - 0.3) * 1.2, 0, 1)[..., None]
    outer = np.array([1.0, 0.55, 0.12], np.float32)
    inner = np.array([1.25, 1.15, 0.9], np.float32)
    col = outer * (1 - core) + inner * core
    blue = np.clip(1.0 - s * 6.0, 0, 1)[..., None] * (v[..., None] > 0.5)
    col = col * (1 - 0.6 * blue) + np.array([0.2, 0.3, 0.8], np.float32) * 0.6 * blue
    cov = fr.cov * np.clip(0.55 + 0.6 * (1 - v), 0, 1).astype(np.float32)
    us = s**1.5
    layer.paint(fr.y0, fr.x0, cov, col, [(S, us, 0.15 * us), (Z, 0.0, -s)])
    # glow (additive, no alpha): moves with the flame
    gr = flame_len * rng.uniform(1.5, 3.0)
    g = shapes.radial(x, fb - flame_len * 0.4, gr, gr, H, W, pad=0)
    if g is not None:
        glow = np.exp(-2.5 * g["rho"] ** 2)[..., None] * np.array([1.0, 0.6, 0.25], np.float32) * rng.uniform(0.15, 0.4)
        layer.add_light(g.y0, g.x0, glow.astype(np.float32))
    ctx.note("candle")


def lantern(ctx: SceneContext, layer: Layer, px: float, py: float, string_len: float, size: float,
            glow: float = 0.0, kind: str = "paper") -> None:
    """A lantern hanging from a static pivot: pendulum swing (rotation about the pivot)."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    L_c = string_len + size * 0.6
    f = pendulum_frequency(L_c / ctx.ppm)
    zeta = rng.uniform(0.02, 0.1)
    S = int(ctx.sway(px, f, zeta, 0.3 * L_c, FOLD * L_c, "lantern", local=0.6)[0])
    S2 = int(ctx.sway(px, f * rng.uniform(0.97, 1.03), zeta, 0.1 * L_c, FOLD * L_c * 0.5, "lantern_z", local=0.8,
                      main=False)[0])

    def rot(r):
        yy, xx = r.grid()
        ux = np.broadcast_to(-(yy - py) / L_c, r.shape)
        uy = np.broadcast_to((xx - px) / L_c, r.shape)
        return [(S, ux, uy), (S2, 0.0 * ux, np.broadcast_to(np.clip((yy - py) / L_c, 0, 2) * 0.15, r.shape))]

    st = shapes.tapered_strokes(np.array([[[px, py], [px, py + string_len / 2], [px, py + string_len]]]),
                                np.array([[0.45, 0.45]]), H, W)[0]
    if st is not None:
        layer.paint(st.y0, st.x0, st.cov, np.array([0.12, 0.1, 0.08], np.float32), rot(st))
    cy = py + string_len + size * 0.6
    base = textures.flower_colour(rng) if kind == "paper" else np.array([1.0, 0.75, 0.35], np.float32)
    if kind == "paper":
        e = shapes.ellipse(px, cy, size * rng.uniform(0.45, 0.6), size * 0.55, 0.0, H, W)
        if e is not None:
            ribs = 1.0 - 0.25 * (np.cos(e["ly"] * np.pi * rng.integers(3, 7)) > 0.85)
            lit = (1.0 - 0.45 * e["lx"] ** 2) * ribs * (1.0 + glow * 0.8)
            layer.paint(e.y0, e.x0, e.cov, base[None, None] * lit[..., None], rot(e))
        for dy in (-0.55, 0.55):
            c = shapes.ellipse(px, cy + dy * size, size * 0.2, max(0.7, size * 0.08), 0.0, H, W)
            if c is not None:
                layer.paint(c.y0, c.x0, c.cov, np.array([0.08, 0.07, 0.06], np.float32), rot(c))
    else:  # metal box lantern with a lit pane
        frame = shapes.band(px - size * 0.3, px + size * 0.3, lambda q: cy - size * 0.5 + 0 * q,
                            lambda q: cy + size * 0.5 + 0 * q, H, W)
        if frame is not None:
            s, v = frame["s"], frame["v"]
            pane = ((np.abs(s - 0.5) < 0.33) & (np.abs(v - 0.5) < 0.38)).astype(np.float32)
            dark = np.array([0.1, 0.1, 0.1], np.float32)
            col = dark * (1 - pane[..., None]) + base * (0.6 + glow) * pane[..., None]
            layer.paint(frame.y0, frame.x0, frame.cov, col, rot(frame))
    if glow > 0:
        gr = size * rng.uniform(1.2, 2.0)
        g = shapes.radial(px, cy, gr, gr, H, W, pad=0)
        if g is not None:
            light = np.exp(-2.0 * g["rho"] ** 2)[..., None] * base * 0.35 * glow
            layer.add_light(g.y0, g.x0, light.astype(np.float32))
    ctx.note("lantern")


def string_lights(ctx: SceneContext, layer: Layer, xa: float, ya: float, xb: float, yb: float, n: int,
                  glow: float) -> None:
    """A festoon of bulbs on a sagging wire: the wire sways, bulbs dangle."""
    rng, H, W = ctx.rng, ctx.height, ctx.width
    sag = abs(xb - xa) * rng.uniform(0.06, 0.15)

    def line_y(q):
        t = np.clip((q - xa) / (xb - xa), 0, 1)
        return ya + (yb - ya) * t + 4 * sag * t * (1 - t)

    span = abs(xb - xa)
    f_line = cantilever_frequency(span / ctx.ppm, 0.01, 50.0, 3.0, fmin=0.3, fmax=1.0)
    L = int(ctx.sway((xa + xb) / 2, f_line, rng.uniform(0.04, 0.12), 0.05 * span, FOLD * span / 4, "wire")[0])
    line = shapes.band(min(xa, xb), max(xa, xb), lambda q: line_y(q) - 0.45, lambda q: line_y(q) + 0.45, H, W)

    def lu(xx):
        return np.sin(np.pi * np.clip((xx - xa) / (xb - xa), 0, 1))

    if line is not None:
        yy, xx = line.grid()
        u = np.broadcast_to(lu(xx), line.shape)
        layer.paint(line.y0, line.x0, line.cov, np.array([0.08, 0.08, 0.08], np.float32), [(L, 0.3 * u, u)])
    warm = np.array([1.0, 0.8, 0.45], np.float32)
    for i in range(n):
        cx = xa + (i + 0.5) * (xb - xa) / n
        cy = line_y(cx) + rng.uniform(2.0, 4.0)
        rb = rng.uniform(1.2, 2.2)
        e = shapes.ellipse(cx, cy, rb * 0.8, rb, 0.0, H, W)
        if e is None:
            continue
        u0 = float(lu(cx))
        lit = (1.3 - 0.5 * e["rho"])[..., None] * (0.6 + glow)
        layer.paint(e.y0, e.x0, e.cov, warm * lit, [(L, 0.3 * u0, u0)])
        if glow > 0:
            g = shapes.radial(cx, cy, rb * 4, rb * 4, H, W, pad=0)
            if g is not None:
                layer.add_light(g.y0, g.x0, (np.exp(-3 * g["rho"] ** 2)[..., None] * warm * 0.3 * glow).astype(np.float32))
    ctx.note("string lights")


__all__ = ["SceneContext", "bunting", "candle", "cloth_line", "flag", "flowers", "grass", "grass_field",
           "lantern", "reeds", "shrub", "string_lights", "tree"]
