"""Scene recipes and composition: ``make_scene(seed)`` builds one random scene with exact motion.

Recipes (``RECIPES``): meadow, trees, reeds, garden, laundry, flags, candles, lanterns, closeup,
mixed. Each composes a static backdrop (sky, hills, ground, buildings or a room: never moves),
several depth layers of moving elements, and static occluders in between (rocks, fences, beams,
candle bodies), with a random framing (wide: few tens of pixels per metre; close-up: hundreds),
time of day, sun/overcast lighting, season, wind (calm to storm, gusts, travelling gust fronts)
and camera (grade, blur, noise). Everything is drawn from ``numpy.random.default_rng(seed)``, so
the same seed gives byte-identical images, clips and ground truth.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import backdrops, elements, textures
from .elements import SceneContext
from .modal_field import SourceBank, coordinates, displacements, volume_from_modal
from .render import Camera, Layer, composite, visible_modal, warp_layer
from .wind import Wind
from ..motion.spectral import NUM_FRAMES

RECIPES = ("meadow", "trees", "reeds", "garden", "laundry", "flags", "candles", "lanterns", "closeup", "mixed")
RECIPE_WEIGHTS = (0.15, 0.14, 0.09, 0.12, 0.07, 0.07, 0.07, 0.07, 0.14, 0.08)


@dataclass
class Scene:
    """One synthetic scene: layers at frame 0, the sources' spectra A, the camera."""

    seed: int
    width: int
    height: int
    recipe: str
    description: str
    layers: list
    A: np.ndarray
    camera: Camera
    info: dict = field(default_factory=dict)
    _modal: tuple | None = field(default=None, repr=False)

    @property
    def num_sources(self) -> int:
        return self.A.shape[0] - 1

    def _rgbas(self):
        return [L.premultiplied() for L in self.layers]

    def frame0(self, effects: bool = True) -> np.ndarray:
        """Frame 0 as uint8 (H, W, 3) RGB (with camera noise and blur unless ``effects`` is False)."""
        return self.camera.finish(composite(self._rgbas()), 0, effects)

    def modal(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(idx uint16 (R, H, W), u float32 (R, 2, H, W), A complex64 (M+1, K)) of frame 0's visible pixels."""
        if self._modal is None:
            idx, u, _ = visible_modal(self.layers)
            self._modal = (idx, u)
        return self._modal[0], self._modal[1], self.A

    def spectral_volume(self) -> np.ndarray:
        idx, u, A = self.modal()
        return volume_from_modal(idx, u, A)

    def displacement_gt(self, times=None) -> np.ndarray:
        """Exact displacement (len(times), 2, H, W) of frame 0's pixels (all T frames when None)."""
        idx, u, A = self.modal()
        return displacements(idx, u, A, times)

    def moving_mask(self) -> np.ndarray:
        idx, _, _ = self.modal()
        return idx.any(axis=0)

    def render_frames(self, times, effects: bool = True) -> np.ndarray:
        """Frames at the given (integer or fractional) times, (N, H, W, 3) uint8."""
        times = np.asarray(times, np.float64).reshape(-1)
        a = coordinates(self.A, times).astype(np.float32)
        rgbas = self._rgbas()
        gy, gx = np.mgrid[0:self.height, 0:self.width].astype(np.float32)
        out = np.empty((len(times), self.height, self.width, 3), np.uint8)
        for i, t in enumerate(times):
            if np.abs(a[i]).max() < 1e-5:
                frame = composite(rgbas)
            else:
                frame = composite([warp_layer(L, a[i], (gx, gy), im) for L, im in zip(self.layers, rgbas)])
            out[i] = self.camera.finish(frame, int(round(t)), effects)
        return out

    def render_clip(self, num_frames: int = NUM_FRAMES, effects: bool = True) -> np.ndarray:
        """The video (num_frames, H, W, 3) uint8: every layer warped by its own motion, composited."""
        return self.render_frames(np.arange(num_frames), effects)


# ------------------------------------------------------------------------------------------------
class _Build:
    """Mutable state of one recipe run."""

    def __init__(self, ctx: SceneContext, tod: str):
        self.ctx, self.tod = ctx, tod
        self.layers: list[Layer] = []
        self.H, self.W = ctx.height, ctx.width
        self.horizon: float | None = None  # set by outdoor backdrops: the sky above it is not dimmed

    def layer(self, moving: bool = True, name: str = "") -> Layer:
        L = Layer(self.H, self.W, moving=moving, name=name)
        self.layers.append(L)
        return L

    def plate(self, img: np.ndarray) -> Layer:
        L = self.layer(False, "backdrop")
        L.fill(np.clip(img, 0, None))
        return L


def _outdoor_backdrop(b: _Build, horizon: float, hills: bool = True, houses: float = 0.15,
                      ground: str | None = None) -> np.ndarray:
    ctx, rng = b.ctx, b.ctx.rng
    b.horizon = horizon
    img = backdrops.sky(ctx, horizon, b.tod)
    haze = img[max(0, int(horizon) - 2)].mean(axis=0)
    if hills:
        backdrops.hills(ctx, img, horizon, haze, int(rng.integers(1, 4)))
    kind = ground or str(rng.choice(["lawn", "lawn", "dry", "soil"], p=[0.4, 0.2, 0.25, 0.15]))
    backdrops.ground(ctx, img, horizon, kind)
    if rng.random() < houses:
        backdrops.buildings(ctx, img, horizon + rng.uniform(1, 8), int(rng.integers(1, 4)), rng.uniform(0.3, 0.7))
        ctx.note("houses")
    return img


def _meadow(b: _Build) -> None:
    ctx, rng, H, W = b.ctx, b.ctx.rng, b.H, b.W
    horizon = H * rng.uniform(0.2, 0.5)
    b.plate(_outdoor_backdrop(b, horizon, houses=0.2))
    lean = rng.normal(0, 0.2)
    mid = b.layer(name="mid grass")
    y_mid = horizon + (H - horizon) * rng.uniform(0.1, 0.3)
    elements.grass_field(ctx, mid, y_mid, H * 0.8, rng.uniform(1.5, 3.5), (5, 12), (0.7, 1.3), lean=lean,
                         dry=rng.uniform(0, 0.4), share=3)
    nf = int(rng.integers(5, 30))
    fy = rng.uniform(y_mid, H, nf)
    depth = (fy - horizon) / (H - horizon)
    elements.flowers(ctx, mid, rng.uniform(0, W, nf), fy, rng.uniform(8, 25, nf) * (0.5 + depth),
                     rng.uniform(1.2, 3.0, nf) * (0.5 + depth), lean=lean, leaves=False)
    if rng.random() < 0.4:
        backdrops.rocks(ctx, b.layer(False, "rocks"), int(rng.integers(1, 4)), (H * 0.7, H), (8, 25))
    near = b.layer(name="near grass")
    elements.grass_field(ctx, near, H * 0.85, H + 10, rng.uniform(0.8, 2.0), (25, 60), (1.4, 2.8), lean=lean,
                         dry=rng.uniform(0, 0.5), share=2)
    ctx.note("meadow")


def _trees(b: _Build) -> None:
    ctx, rng, H, W = b.ctx, b.ctx.rng, b.H, b.W
    horizon = H * rng.uniform(0.35, 0.6)
    b.plate(_outdoor_backdrop(b, horizon, houses=0.25))
    far = b.layer(name="far trees")
    for _ in range(int(rng.integers(0, 3))):
        elements.tree(ctx, far, rng.uniform(0, W), horizon + rng.uniform(2, 10), rng.uniform(30, 60),
                      str(rng.choice(["broadleaf", "conifer", "birch"])))
    near = b.layer(name="trees")
    n = int(rng.integers(1, 3))
    for i in range(n):
        kind = str(rng.choice(["broadleaf", "broadleaf", "conifer", "birch"]))
        base = horizon + (H - horizon) * rng.uniform(0.3, 0.8)
        elements.tree(ctx, near, rng.uniform(W * 0.05, W * 0.95), base, rng.uniform(0.7, 1.4) * base, kind)
    for _ in range(int(rng.integers(0, 4))):
        elements.shrub(ctx, near, rng.uniform(0, W), rng.uniform(horizon + 10, H), rng.uniform(8, 25))
    if rng.random() < 0.3:
        backdrops.fence(ctx, b.layer(False, "fence"), H * rng.uniform(0.8, 0.95), rng.uniform(15, 30))
    front = b.layer(name="grass")
    elements.grass_field(ctx, front, H * 0.82, H + 8, rng.uniform(0.5, 1.5), (10, 30), (1.0, 2.0),
                         lean=rng.normal(0, 0.15), dry=rng.uniform(0, 0.5))


def _reeds(b: _Build) -> None:
    ctx, rng, H, W = b.ctx, b.ctx.rng, b.H, b.W
    bank_y = H * rng.uniform(0.3, 0.55)
    b.horizon = bank_y
    img = backdrops.sky(ctx, bank_y, b.tod)
    haze = img[int(bank_y) - 1].mean(axis=0)
    backdrops.hills(ctx, img, bank_y, haze, int(rng.integers(1, 3)))
    b.plate(img)
    backdrops.water(ctx, b.layer(name="water"), bank_y + rng.uniform(0, 4), img)
    lean = rng.normal(0, 0.15)
    back = b.layer(name="far reeds")
    nb = int(rng.integers(10, 40))
    x = rng.uniform(0, W, nb)
    y = bank_y + rng.uniform(2, 20, nb)
    elements.reeds(ctx, back, x, y, rng.uniform(15, 40, nb), lean=lean)
    front = b.layer(name="reeds")
    nf = int(rng.integers(15, 50))
    cx = rng.uniform(0, W, max(1, nf // 10))
    x = np.concatenate([c + rng.normal(0, rng.uniform(8, 25), 10) for c in cx])[:nf]
    nf = len(x)
    elements.reeds(ctx, front, x, H + rng.uniform(-15, 10, nf), rng.uniform(60, 150, nf), lean=lean)
    if rng.random() < 0.5:
        elements.grass_field(ctx, front, H * 0.85, H + 10, 1.0, (25, 60), (1.5, 2.5), lean=lean, share=3,
                             dry=0.6, x_range=(-5, W * rng.uniform(0.2, 0.5)))
    ctx.note("reeds by water")


def _garden(b: _Build) -> None:
    ctx, rng, H, W = b.ctx, b.ctx.rng, b.H, b.W
    horizon = H * rng.uniform(0.3, 0.55)
    img = _outdoor_backdrop(b, horizon, houses=0.6, ground="lawn")
    b.plate(img)
    if rng.random() < 0.5:
        backdrops.fence(ctx, b.layer(False, "fence"), horizon + rng.uniform(5, 20), rng.uniform(15, 35))
    shrubs = b.layer(name="shrubs")
    for _ in range(int(rng.integers(1, 5))):
        elements.shrub(ctx, shrubs, rng.uniform(0, W), horizon + rng.uniform(10, 35), rng.uniform(10, 28))
    beds = b.layer(name="flowers")
    n = int(rng.integers(10, 45))
    y = rng.uniform(horizon + 15, H + 5, n)
    depth = (y - horizon) / (H - horizon)
    elements.flowers(ctx, beds, rng.uniform(0, W, n), y, rng.uniform(15, 45, n) * (0.5 + depth),
                     rng.uniform(2, 5, n) * (0.5 + depth), lean=rng.normal(0, 0.1))
    elements.grass_field(ctx, beds, H * 0.7, H + 5, rng.uniform(0.3, 1.0), (10, 25), (1.0, 2.0), share=3)
    if rng.random() < 0.6:
        backdrops.rocks(ctx, b.layer(False, "rocks"), int(rng.integers(1, 5)), (H * 0.75, H + 5), (8, 22))
    ctx.note("garden")


def _laundry(b: _Build) -> None:
    ctx, rng, H, W = b.ctx, b.ctx.rng, b.H, b.W
    horizon = H * rng.uniform(0.5, 0.75)
    b.plate(_outdoor_backdrop(b, horizon, houses=0.8))
    posts = b.layer(False, "posts")
    y_line = H * rng.uniform(0.12, 0.35)
    xa, xb = rng.uniform(-20, W * 0.2), rng.uniform(W * 0.8, W + 20)
    for px in (xa, xb):
        r = elements.shapes.band(px - 2, px + 2, lambda q: y_line - 3 + 0 * q, lambda q: H + 2 + 0 * q, H, W)
        if r is not None:
            posts.paint(r.y0, r.x0, r.cov, textures.hsv(0.08, 0.4, 0.35) * (0.8 + 0.3 * np.sin(np.pi * r["s"]))[..., None], [])
    cloth = b.layer(name="laundry")
    elements.cloth_line(ctx, cloth, xa, xb, y_line, int(rng.integers(3, 8)), (horizon - y_line) * rng.uniform(0.6, 1.1))
    front = b.layer(name="grass")
    elements.grass_field(ctx, front, H * 0.88, H + 8, rng.uniform(0.4, 1.2), (10, 25), (1.0, 2.0))


def _flags(b: _Build) -> None:
    ctx, rng, H, W = b.ctx, b.ctx.rng, b.H, b.W
    horizon = H * rng.uniform(0.55, 0.85)
    b.plate(_outdoor_backdrop(b, horizon, houses=0.5))
    L = b.layer(name="flags")
    n = int(rng.integers(1, 4))
    d = ctx.wind.direction
    for i in range(n):
        px = W * (i + 0.5) / n + rng.normal(0, 10)
        fh = rng.uniform(12, 35)
        elements.flag(ctx, L, px, rng.uniform(8, H * 0.35), fh * rng.uniform(1.3, 2.0), fh, d, pole_bottom=horizon + rng.uniform(0, 20))
    if rng.random() < 0.6:
        B = b.layer(name="bunting")
        elements.bunting(ctx, B, -5, rng.uniform(5, H * 0.3), W + 5, rng.uniform(5, H * 0.3), rng.uniform(5, 10))
    front = b.layer(name="grass")
    elements.grass_field(ctx, front, H * 0.85, H + 8, rng.uniform(0.4, 1.5), (10, 28), (1.0, 2.0))


def _candles(b: _Build) -> None:
    ctx, rng, H, W = b.ctx, b.ctx.rng, b.H, b.W
    table_y = H * rng.uniform(0.55, 0.8)
    img = backdrops.interior(ctx, table_y, rng.uniform(0.3, 0.8))
    n = int(rng.integers(1, 7))
    xs = np.sort(rng.uniform(W * 0.1, W * 0.9, n))
    specs = []
    for x in xs:
        bh = rng.uniform(15, 70)
        base = table_y + rng.uniform(3, H - table_y - 2)
        fl = rng.uniform(8, 30) if n <= 3 else rng.uniform(7, 18)
        specs.append((x, base, bh, rng.uniform(0.6, 1.4) * fl, fl))
        backdrops.light_pool(img, x, base - bh, rng.uniform(25, 60), (1.0, 0.7, 0.35), rng.uniform(0.5, 1.5))
    b.plate(img)
    L = b.layer(name="candles")
    draft = rng.uniform(0.2, 1.0)
    for x, base, bh, bw, fl in sorted(specs, key=lambda s: s[1]):
        elements.candle(ctx, L, x, base, bh, bw, fl, draft)
    ctx.note("interior")


def _lanterns(b: _Build) -> None:
    ctx, rng, H, W = b.ctx, b.ctx.rng, b.H, b.W
    night = b.tod in ("dusk", "night")
    if rng.random() < 0.7:
        horizon = H * rng.uniform(0.6, 0.9)
        img = _outdoor_backdrop(b, horizon, houses=0.6)
    else:
        img = backdrops.interior(ctx, H * rng.uniform(0.8, 0.95), rng.uniform(0.3, 0.9))
    b.plate(img)
    beam_y = rng.uniform(-3, H * 0.15)
    L = b.layer(name="lanterns")
    n = int(rng.integers(2, 7))
    glow = rng.uniform(0.5, 1.2) if night else rng.uniform(0.0, 0.4)
    for i in range(n):
        px = W * (i + 0.5) / n + rng.normal(0, 8)
        elements.lantern(ctx, L, px, beam_y + 4, rng.uniform(8, 60), rng.uniform(10, 28), glow,
                         "paper" if rng.random() < 0.7 else "box")
    if rng.random() < 0.4:
        elements.string_lights(ctx, L, -5, rng.uniform(5, 30), W + 5, rng.uniform(5, 30), int(rng.integers(6, 16)), glow)
    backdrops.beam(ctx, b.layer(False, "beam"), beam_y, rng.uniform(5, 10))
    if rng.random() < 0.5:
        front = b.layer(name="grass")
        elements.grass_field(ctx, front, H * 0.9, H + 8, rng.uniform(0.3, 1.0), (10, 25), (1.0, 2.0))


def _closeup(b: _Build) -> None:
    ctx, rng, H, W = b.ctx, b.ctx.rng, b.H, b.W
    img = textures.photo_plate(rng, H, W, blur=rng.uniform(3, 9))
    b.horizon = -20.0
    b.plate(img * rng.uniform(0.7, 1.05))
    mid = b.layer(name="blades")
    lean = rng.normal(0, 0.2)
    nb = int(rng.integers(5, 40))
    cols = textures.jitter(rng, textures.photo_colour(rng, "green" if rng.random() < 0.7 else "dry", nb), 0.1)
    elements.grass(ctx, mid, rng.uniform(-10, W + 10, nb), H + rng.uniform(0, 20, nb), rng.uniform(50, 150, nb),
                   rng.uniform(2.0, 5.0, nb), cols, lean=lean, share=1, curl=0.3)
    fl = b.layer(name="flowers")
    n = int(rng.integers(1, 6))
    elements.flowers(ctx, fl, rng.uniform(W * 0.1, W * 0.9, n), H + rng.uniform(0, 20, n), rng.uniform(60, 140, n),
                     rng.uniform(8, 25, n), lean=lean)
    if rng.random() < 0.4:  # defocused foreground blades
        fg = b.layer(name="foreground")
        nf = int(rng.integers(2, 6))
        cols = textures.jitter(rng, textures.photo_colour(rng, "green", nf) * 0.6, 0.1)
        elements.grass(ctx, fg, rng.uniform(-10, W + 10, nf), H + 10 + rng.uniform(0, 10, nf), rng.uniform(60, 120, nf),
                       rng.uniform(5.0, 9.0, nf), cols, lean=lean, share=1)
        sig = rng.uniform(1.0, 2.5)
        fg.rgb[:] = cv2.GaussianBlur(fg.rgb, (0, 0), sig)
        fg.alpha[:] = cv2.GaussianBlur(fg.alpha, (0, 0), sig)
    ctx.note("close-up")


def _mixed(b: _Build) -> None:
    ctx, rng, H, W = b.ctx, b.ctx.rng, b.H, b.W
    horizon = H * rng.uniform(0.35, 0.6)
    b.plate(_outdoor_backdrop(b, horizon, houses=0.4))
    back = b.layer(name="back")
    if rng.random() < 0.7:
        base = horizon + (H - horizon) * rng.uniform(0.2, 0.6)
        elements.tree(ctx, back, rng.uniform(0, W), base, base * rng.uniform(0.6, 1.0), str(rng.choice(["broadleaf", "conifer", "birch"])))
    if rng.random() < 0.5:
        elements.flag(ctx, back, rng.uniform(W * 0.2, W * 0.8), rng.uniform(5, horizon * 0.5), rng.uniform(25, 45),
                      rng.uniform(12, 25), ctx.wind.direction, pole_bottom=horizon + 10)
    mid = b.layer(name="mid")
    for _ in range(int(rng.integers(0, 3))):
        elements.shrub(ctx, mid, rng.uniform(0, W), rng.uniform(horizon + 10, H), rng.uniform(8, 22))
    n = int(rng.integers(3, 20))
    y = rng.uniform(horizon + 10, H + 5, n)
    elements.flowers(ctx, mid, rng.uniform(0, W, n), y, rng.uniform(15, 45, n), rng.uniform(2, 5, n))
    if rng.random() < 0.5:
        backdrops.rocks(ctx, b.layer(False, "rocks"), int(rng.integers(1, 4)), (H * 0.7, H + 5), (8, 22))
    front = b.layer(name="front")
    if rng.random() < 0.5:
        nr = int(rng.integers(3, 12))
        elements.reeds(ctx, front, rng.uniform(0, W, nr), H + rng.uniform(0, 10, nr), rng.uniform(50, 120, nr))
    elements.grass_field(ctx, front, H * 0.8, H + 8, rng.uniform(0.5, 1.5), (15, 40), (1.2, 2.4), dry=rng.uniform(0, 0.6))


_BUILDERS = {"meadow": _meadow, "trees": _trees, "reeds": _reeds, "garden": _garden, "laundry": _laundry,
             "flags": _flags, "candles": _candles, "lanterns": _lanterns, "closeup": _closeup, "mixed": _mixed}


def _tod(rng, recipe: str) -> str:
    if recipe == "candles":
        return "night"
    if recipe == "lanterns":
        return str(rng.choice(["day", "golden", "dusk", "night"], p=[0.25, 0.2, 0.3, 0.25]))
    return str(rng.choice(["day", "golden", "overcast", "dusk"], p=[0.5, 0.2, 0.22, 0.08]))


def wind_level_distribution(rng, n: int, recipe: str = "meadow") -> np.ndarray:
    """``n`` draws of the wind level (px) that ``make_scene`` gives a scene of ``recipe``: nothing
    in the photo shows it (``evaluation/ceilings.wind_blind`` measures what that costs)."""
    if recipe == "candles":
        return rng.uniform(0.4, 2.5, size=n)
    return np.array([_wind_level(rng)[1] for _ in range(n)])


def _wind_level(rng) -> tuple[str, float]:
    u = rng.random()
    if u < 0.12:
        return "calm", rng.uniform(0.3, 0.8)
    if u < 0.62:
        return "breeze", rng.uniform(0.8, 3.0)
    if u < 0.92:
        return "windy", rng.uniform(3.0, 6.0)
    return "storm", rng.uniform(6.0, 10.0)


def _camera(rng, seed: int, tod: str) -> Camera:
    tint = {"day": (1.0, 1.0, 1.0), "golden": (1.08, 0.98, 0.85), "overcast": (0.97, 1.0, 1.04),
            "dusk": (1.05, 0.95, 1.0), "night": (1.1, 0.95, 0.8)}[tod]
    tint = tuple(float(t * rng.uniform(0.96, 1.04)) for t in tint)
    return Camera(seed=int(seed), exposure=float(rng.uniform(0.85, 1.15)), tint=tint,
                  saturation=float(rng.uniform(0.8, 1.2)), contrast=float(rng.uniform(0.85, 1.15)),
                  gamma=float(rng.uniform(0.9, 1.12)), vignette=float(rng.uniform(0, 0.45)),
                  blur_sigma=float(rng.uniform(0.3, 0.8)) if rng.random() < 0.6 else 0.0,
                  noise_sigma=float(rng.uniform(0.5, 2.0)))


def _ambient(b: _Build, rng) -> None:
    """Dim and tint everything lit by the sky (not the sky itself, nor lamps and flames) by time of day."""
    if not b.layers:
        return
    gain = {"day": (1.0, 1.0), "golden": (0.8, 1.0), "overcast": (0.8, 1.0), "dusk": (0.55, 0.8),
            "night": (0.3, 0.5)}[b.tod]
    tint = {"day": (1.0, 1.0, 1.0), "golden": (1.08, 0.95, 0.78), "overcast": (0.97, 1.0, 1.03),
            "dusk": (1.0, 0.85, 0.9), "night": (0.8, 0.9, 1.2)}[b.tod]
    amb = np.float32(rng.uniform(*gain)) * np.asarray(tint, np.float32)
    if np.allclose(amb, 1.0):
        return
    for L in b.layers:
        if L.name in ("candles", "lanterns"):
            continue
        if L.name == "backdrop":
            if b.horizon is None:
                continue
            ramp = np.clip((np.arange(b.H, dtype=np.float32) - b.horizon + 6.0) / 12.0, 0, 1)[:, None, None]
            L.rgb *= 1.0 + ramp * (amb - 1.0)
        else:
            L.rgb *= amb


def make_scene(seed: int, width: int = 256, height: int = 160, recipe: str | None = None) -> Scene:
    """Build the scene of ``seed`` (deterministic). ``recipe`` forces one of ``RECIPES``."""
    rng = np.random.default_rng(int(seed))
    if recipe is None:
        recipe = str(rng.choice(RECIPES, p=np.array(RECIPE_WEIGHTS) / sum(RECIPE_WEIGHTS)))
    elif recipe not in _BUILDERS:
        raise ValueError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    else:
        rng.random()  # keep the stream aligned with the random pick
    tod = _tod(rng, recipe)
    close = recipe in ("closeup", "candles")
    ppm = float(rng.uniform(200, 600) if close else rng.uniform(25, 90)) * width / 256
    wind_name, level = _wind_level(rng)
    wind = Wind(rng, turbulence=rng.uniform(0.1, 0.4), gustiness=rng.uniform(0.0, 1.0),
                front_speed=rng.uniform(150, 1500), direction=rng.choice([-1.0, 1.0]))
    ang = rng.uniform(-2.6, -0.5)
    sun = {"day": rng.uniform(0.4, 1.0), "golden": rng.uniform(0.6, 1.0), "overcast": rng.uniform(0.0, 0.25),
           "dusk": rng.uniform(0.1, 0.4), "night": 0.1}[tod]
    ctx = SceneContext(rng=rng, height=height, width=width, ppm=ppm, wind=wind, bank=SourceBank(),
                       light=(float(np.cos(ang)), float(np.sin(ang))), sun=float(sun),
                       season=float(rng.uniform(0, 1) if rng.random() < 0.25 else 0.0))
    b = _Build(ctx, tod)
    _BUILDERS[recipe](b)
    if recipe == "candles":  # a draught indoors; keep in step with wind_level_distribution
        level = float(rng.uniform(0.4, 2.5))
        wind_name = "draught"
    if recipe != "candles":
        _ambient(b, rng)
    A = ctx.bank.finalize(level)
    for L in b.layers:
        L.finalize()
    counts = Counter(ctx.parts)
    parts = ", ".join(f"{k} x{v}" if v > 1 else k for k, v in counts.items())
    desc = f"{recipe}: {parts}; {tod} light, {wind_name} (level {level:.1f} px), {len(ctx.bank)} sources"
    return Scene(seed=int(seed), width=width, height=height, recipe=recipe, description=desc, layers=b.layers,
                 A=A, camera=_camera(rng, seed, tod),
                 info={"tod": tod, "wind": wind_name, "level_px": float(level), "ppm": ppm})


__all__ = ["RECIPES", "Scene", "make_scene"]
