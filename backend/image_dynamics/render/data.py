"""Training triplets for the renderer from the procedural scenes: (frame 0, true D_t, true frame t).

The cheapest exact source is the scene itself, not its video: ``make_scene(seed)`` gives frame 0,
``displacement_gt`` the exact D_t of frame 0's pixels and ``render_frames(times)`` renders only the
frames we keep (the generator warps every layer by its own motion and composites, so occlusions,
disocclusions and camera noise are real). One file per scene, ``DIR/<split>/scene_<seed>.npz``:

    image       uint8    (H, W, 3)     frame 0
    importance  float16  (H, W)        mean over the 150-frame window of |D_t| (pixels)
    times       int32    (n,)          kept frame numbers (1..149, random)
    disp        float16  (n, 2, H, W)  D_t at those frames (pixels)
    frames      uint8    (n, H, W, 3)  the true frames
    seed, magnify, recipe

``magnify`` (drawn per scene in [magnify_min, magnify_max]) scales the scene's modal spectra
before rendering, so motion and frames stay consistent while covering the larger motion a user
asks for with ``--magnify``; the generator's fixed-point inverse warp stays accurate well past
3x on these scenes (displacement gradients are kept small). Files are written atomically and
skipped when present, so generation resumes. Train seeds start at 0, held-out seeds at
``HELDOUT_SEED0`` (disjoint from the motion model's test seeds at 10^9 as well).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

HELDOUT_SEED0 = 2_000_000_000
TRAIN_SEED0 = 0


def scene_triplets(seed: int, times_per_scene: int = 8, width: int = 256, height: int = 160,
                   magnify: float = 1.0, times=None) -> dict:
    """One scene's record (see module docstring); ``times`` overrides the random draw."""
    from ..synth import make_scene

    scene = make_scene(int(seed), width, height)
    if magnify != 1.0:
        scene.A = (scene.A * np.float32(magnify)).astype(np.complex64)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 4242])
    if times is None:
        times = np.sort(rng.choice(np.arange(1, 150), size=times_per_scene, replace=False))
    times = np.asarray(times, np.int32)
    D = scene.displacement_gt()  # (150, 2, H, W): the whole window, for the importance
    importance = np.sqrt((D ** 2).sum(axis=1)).mean(axis=0)
    return {"image": scene.frame0(), "importance": importance.astype(np.float16), "times": times,
            "disp": D[times].astype(np.float16), "frames": scene.render_frames(times),
            "seed": np.int64(seed), "magnify": np.float32(magnify), "recipe": np.array(scene.recipe)}


def scene_path(root: str | os.PathLike, split: str, seed: int) -> Path:
    return Path(root) / split / f"scene_{int(seed):010d}.npz"


def generate(root: str | os.PathLike, split: str, count: int, seed0: int, times_per_scene: int = 8,
             width: int = 256, height: int = 160, magnify: tuple[float, float] = (1.0, 3.0),
             progress: bool = True) -> list[Path]:
    """Write the scenes seed0 .. seed0+count-1 of a split (skipping existing files)."""
    from tqdm import tqdm

    paths = []
    todo = [s for s in range(seed0, seed0 + count) if not scene_path(root, split, s).is_file()]
    for seed in tqdm(todo, desc=f"{split} scenes", unit="scene", disable=not progress or not todo):
        rng = np.random.default_rng([seed & 0xFFFFFFFF, 77])
        m = float(rng.uniform(*magnify)) if magnify[1] > magnify[0] else float(magnify[0])
        rec = scene_triplets(seed, times_per_scene, width, height, m)
        path = scene_path(root, split, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".partial.npz")
        np.savez_compressed(tmp, **rec)
        os.replace(tmp, path)
    for s in range(seed0, seed0 + count):
        paths.append(scene_path(root, split, s))
    return paths


class TripletDataset(torch.utils.data.Dataset):
    """Items (image, flow, importance, target) as float tensors in [0, 1] / pixels.

    Item index i -> (scene, time, crop draw, flip): the augmentation lives in the index so the
    training loop's seeded sampler decides it (reproducible, resumable). ``crop`` (h, w) or None
    for whole frames; ``variants`` random crops per (scene, time) and a horizontal flip (which
    negates D_x) when ``flip``. ``keep_all`` keeps every decoded scene in memory (~2.4 MB each
    at 256x160): the shuffled order touches a different file every item, and decompressing it
    costs as much as a training step.
    """

    def __init__(self, paths, crop: tuple[int, int] | None = None, variants: int = 1, flip: bool = False,
                 times_per_scene: int | None = None, keep_all: bool = False):
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("no scenes")
        with np.load(self.paths[0], allow_pickle=False) as z:
            self.n_t = int(z["times"].shape[0]) if times_per_scene is None else times_per_scene
            self.size = z["image"].shape[:2]
        self.crop = crop
        self.variants = max(1, int(variants))
        self.flip = flip
        self.keep_all = keep_all
        self._cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.paths) * self.n_t * self.variants * (2 if self.flip else 1)

    def _scene(self, k: int) -> dict:
        if k not in self._cache:
            if not self.keep_all:
                self._cache.clear()
            with np.load(self.paths[k], allow_pickle=False) as z:
                self._cache[k] = {n: z[n] for n in ("image", "importance", "disp", "frames")}
        return self._cache[k]

    def __getitem__(self, i: int):
        i = int(i)
        flip = False
        if self.flip:
            i, flip = divmod(i, 2)
            flip = bool(flip)
        i, variant = divmod(i, self.variants)
        k, t = divmod(i, self.n_t)
        d = self._scene(k)
        image = d["image"]
        imp = d["importance"].astype(np.float32)
        disp = d["disp"][t].astype(np.float32)
        target = d["frames"][t]
        H, W = image.shape[:2]
        if self.crop is not None:
            ch, cw = self.crop
            rng = np.random.default_rng([k, t, variant, 99])
            y0 = int(rng.integers(0, H - ch + 1))
            x0 = int(rng.integers(0, W - cw + 1))
            sl = (slice(y0, y0 + ch), slice(x0, x0 + cw))
            image, imp, target = image[sl], imp[sl], target[sl]
            disp = disp[:, sl[0], sl[1]]
        if flip:
            image, imp, target = image[:, ::-1], imp[:, ::-1], target[:, ::-1]
            disp = disp[:, :, ::-1] * np.array([-1.0, 1.0], np.float32)[:, None, None]
        to = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        return {"image": to(image).permute(2, 0, 1).float() / 255.0, "flow": to(disp),
                "importance": to(imp)[None], "target": to(target).permute(2, 0, 1).float() / 255.0}
