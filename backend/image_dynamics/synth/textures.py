"""Textures, colours and photographic plates for the procedural scenes.

Real photographs (``assets/photos``, licences in ``assets/photos/NOTICE.md``) and how they are used:

- ``beach_grass.jpg``: its top band (sky over the sea) as a sky plate for wide outdoor scenes; its
  dry-grass pixels as a palette for straw, reeds and dry grass.
- ``meadow_grass.jpg``: greens for grass blades and leaves (colour palette sampled from the photo);
  heavily blurred crops as defocused green backgrounds in close-ups.
- ``dandelion_meadow.jpg``: blurred crops as sunset/bokeh background plates; its large dandelion
  clock as a photo sprite for seed heads on stems.
- ``dahlia.jpg``: the dahlia as a photo sprite for large flower heads (recoloured by hue shifts);
  its blurred teal foliage as a background plate.
- ``yellow_flower.jpg``: petal colours (yellow/orange palette) and a blurred dark-green plate.
- ``forget_me_nots.jpg``: blue/violet flower colours and soft green bokeh plates.
- ``dandelion_seeds.jpg``: warm orange bokeh background plates.
- ``grass_texture.png`` (grey): detail texture for lawns, soil, rocks, bark and plaster (tinted).

Procedural textures (multi-octave value noise, stretched noise for wood and water) add variety on
top; every function takes the scene's ``numpy.random.Generator`` so scenes stay deterministic.
"""

from __future__ import annotations

import colorsys
import functools
from pathlib import Path

import cv2
import numpy as np

PHOTO_DIR = Path(__file__).resolve().parent.parent / "assets" / "photos"
PHOTOS = (
    "beach_grass.jpg", "dahlia.jpg", "dandelion_meadow.jpg", "dandelion_seeds.jpg",
    "forget_me_nots.jpg", "grass_texture.png", "meadow_grass.jpg", "yellow_flower.jpg",
)
PLATES = ("meadow_grass.jpg", "dandelion_meadow.jpg", "dahlia.jpg", "forget_me_nots.jpg",
          "dandelion_seeds.jpg", "yellow_flower.jpg")
# Sprite locations (x, y, radius) in the full-resolution photos.
SPRITES = {"dahlia": ("dahlia.jpg", (305, 198, 134)), "dandelion": ("dandelion_meadow.jpg", (370, 228, 196))}


@functools.lru_cache(maxsize=None)
def photo(name: str, max_side: int = 640) -> np.ndarray:
    """A bundled photo as float32 RGB in [0, 1], downscaled to at most ``max_side`` (cached)."""
    path = PHOTO_DIR / name
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"missing bundled photo {path}")
    h, w = img.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s < 1.0:
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    img = img[:, :, ::-1].astype(np.float32) / 255.0
    img.setflags(write=False)
    return img


@functools.lru_cache(maxsize=None)
def _photo_colours(name: str, kind: str) -> np.ndarray:
    """Pixel colours of one kind (green, dry, petal...) sampled from a photo (cached, (N, 3))."""
    img = photo(name, 256).reshape(-1, 3)
    hsv = cv2.cvtColor(img.reshape(-1, 1, 3), cv2.COLOR_RGB2HSV).reshape(-1, 3)
    h, s, v = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    if kind == "green":
        sel = (h > 60) & (h < 160) & (s > 0.25) & (v > 0.15)
    elif kind == "dry":
        sel = (h > 25) & (h < 55) & (s > 0.3) & (v > 0.35)
    elif kind == "petal":
        sel = (s > 0.45) & (v > 0.45) & ~((h > 70) & (h < 170))
    else:
        sel = np.ones(len(img), bool)
    cols = img[sel]
    if len(cols) < 16:
        cols = img
    rng = np.random.default_rng(len(name))
    return cols[rng.choice(len(cols), size=min(2048, len(cols)), replace=False)]


def photo_colour(rng: np.random.Generator, kind: str, n: int = 1) -> np.ndarray:
    """n colours (n, 3) of a kind sampled from the photos: 'green', 'dry', 'petal'."""
    names = {"green": ("meadow_grass.jpg", "dandelion_meadow.jpg", "forget_me_nots.jpg"),
             "dry": ("beach_grass.jpg",),
             "petal": ("dahlia.jpg", "yellow_flower.jpg", "forget_me_nots.jpg")}[kind]
    pool = _photo_colours(names[int(rng.integers(len(names)))], kind)
    return pool[rng.integers(0, len(pool), size=n)].astype(np.float32)


def value_noise(rng: np.random.Generator, h: int, w: int, scale: float, octaves: int = 3,
                persistence: float = 0.5, stretch: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Smooth multi-octave value noise (h, w) float32, roughly zero-mean with unit std.

    ``scale`` is the feature size in pixels of the first octave; ``stretch`` (sy, sx) elongates
    features (e.g. (1, 8) for water streaks or wood grain).
    """
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    sc = float(scale)
    for _ in range(octaves):
        gh = max(2, int(np.ceil(h / max(sc * stretch[0], 1.0))) + 2)
        gw = max(2, int(np.ceil(w / max(sc * stretch[1], 1.0))) + 2)
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        big = cv2.resize(grid, (int((gw - 1) * w / (gw - 2)) + 1, int((gh - 1) * h / (gh - 2)) + 1),
                         interpolation=cv2.INTER_CUBIC)
        oy = int(rng.integers(0, max(1, big.shape[0] - h + 1)))
        ox = int(rng.integers(0, max(1, big.shape[1] - w + 1)))
        out += amp * big[oy:oy + h, ox:ox + w]
        total += amp**2
        amp *= persistence
        sc /= 2.0
        if sc < 0.75:
            break
    return out / np.float32(np.sqrt(total))


def detail_texture(rng: np.random.Generator, h: int, w: int, zoom: float = 1.0) -> np.ndarray:
    """A crop of the grey grass-texture photo, zero-mean unit-std, (h, w) float32."""
    src = photo("grass_texture.png", 512)[:, :, 1]
    z = max(0.15, float(zoom))
    ch, cw = min(src.shape[0], int(h / z) + 2), min(src.shape[1], int(w / z) + 2)
    y = int(rng.integers(0, src.shape[0] - ch + 1))
    x = int(rng.integers(0, src.shape[1] - cw + 1))
    crop = src[y:y + ch, x:x + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    out = cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)
    return (out - out.mean()) / (out.std() + 1e-6)


def photo_plate(rng: np.random.Generator, h: int, w: int, name: str | None = None,
                blur: float = 6.0) -> np.ndarray:
    """A random crop of a photo, resized to (h, w) and blurred: a defocused background (float32 RGB)."""
    name = name or PLATES[int(rng.integers(len(PLATES)))]
    img = photo(name, 480)
    ph, pw = img.shape[:2]
    zoom = rng.uniform(0.45, 1.0)
    ch = int(min(ph, pw * h / w) * zoom)
    cw = int(ch * w / h)
    y = int(rng.integers(0, ph - ch + 1))
    x = int(rng.integers(0, pw - cw + 1))
    crop = img[y:y + ch, x:x + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    small = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
    if blur > 0:
        small = cv2.GaussianBlur(small, (0, 0), blur)
    return np.ascontiguousarray(small)


def sky_plate(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """The real sky above the sea in beach_grass.jpg (top band), resized to (h, w)."""
    img = photo("beach_grass.jpg", 640)
    band = img[: int(img.shape[0] * 0.16)]
    x0 = int(rng.integers(0, band.shape[1] // 3))
    crop = band[:, x0: x0 + band.shape[1] * 2 // 3]
    return np.ascontiguousarray(cv2.resize(crop, (w, h), interpolation=cv2.INTER_CUBIC))


@functools.lru_cache(maxsize=None)
def _sprite_source(kind: str) -> np.ndarray:
    name, (cx, cy, r) = SPRITES[kind]
    img = photo(name, 1280)  # the bundled photos are at most 1280 px: full resolution
    crop = img[int(cy - r): int(cy + r), int(cx - r): int(cx + r)]
    out = cv2.resize(crop, (160, 160), interpolation=cv2.INTER_AREA)
    out.setflags(write=False)
    return out


def sprite(rng: np.random.Generator, kind: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A round photo sprite (flower head) of diameter ``size``: (rgb (s, s, 3), alpha (s, s))."""
    s = max(3, int(size))
    rgb = cv2.resize(_sprite_source(kind), (s, s), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    rho = np.hypot(xx - (s - 1) / 2, yy - (s - 1) / 2) / (s / 2)
    edge = 0.12 if kind == "dahlia" else 0.35
    alpha = np.clip((1.0 - rho) / edge, 0.0, 1.0).astype(np.float32)
    if rng.random() < 0.5:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    return np.ascontiguousarray(rgb), np.ascontiguousarray(alpha)


def hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1))), np.float32)


def jitter(rng: np.random.Generator, rgb: np.ndarray, amount: float = 0.08) -> np.ndarray:
    """Random brightness and hue-ish jitter of colours (..., 3)."""
    rgb = np.asarray(rgb, np.float32)
    gain = 1.0 + amount * rng.standard_normal(rgb.shape[:-1] + (1,))
    tint = 1.0 + 0.5 * amount * rng.standard_normal(rgb.shape)
    return np.clip(rgb * gain * tint, 0.0, 1.0).astype(np.float32)


def recolour(rgb: np.ndarray, hue_shift: float, sat: float = 1.0) -> np.ndarray:
    """Shift the hue (turns) and scale saturation of an RGB float image."""
    hsvimg = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), cv2.COLOR_RGB2HSV)
    hsvimg[..., 0] = (hsvimg[..., 0] + 360.0 * hue_shift) % 360.0
    hsvimg[..., 1] = np.clip(hsvimg[..., 1] * sat, 0, 1)
    return cv2.cvtColor(hsvimg, cv2.COLOR_HSV2RGB)


def flower_colour(rng: np.random.Generator) -> np.ndarray:
    """A petal colour: half from the photos' petals, half procedural (white, pink, purple, red...)."""
    if rng.random() < 0.45:
        return jitter(rng, photo_colour(rng, "petal")[0], 0.1)
    h = rng.choice([0.0, 0.03, 0.08, 0.13, 0.15, 0.6, 0.72, 0.8, 0.9, 0.95])
    if rng.random() < 0.2:
        return hsv(rng.random(), rng.uniform(0.0, 0.12), rng.uniform(0.85, 1.0))  # white-ish
    return hsv(h + rng.normal(0, 0.02), rng.uniform(0.45, 0.95), rng.uniform(0.6, 1.0))


def leaf_colour(rng: np.random.Generator, season: float = 0.0) -> np.ndarray:
    """A foliage colour: photo greens, shifted towards yellow/orange/red as ``season`` goes to 1."""
    g = photo_colour(rng, "green")[0]
    if season > 0 and rng.random() < season:
        g = hsv(rng.uniform(0.0, 0.14), rng.uniform(0.5, 0.9), rng.uniform(0.35, 0.8))
    return jitter(rng, g * rng.uniform(0.6, 1.05), 0.08)


__all__ = [
    "PHOTOS",
    "detail_texture",
    "flower_colour",
    "hsv",
    "jitter",
    "leaf_colour",
    "photo",
    "photo_colour",
    "photo_plate",
    "recolour",
    "sky_plate",
    "sprite",
    "value_noise",
]
