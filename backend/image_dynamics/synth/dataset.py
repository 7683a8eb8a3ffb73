"""Writing synthetic training data: FFV1 clips with canonical volumes, or compact shards.

Clips (``write_clips``): for each seed, ``clip_XXXXX.mkv`` (150 frames, 30 fps, 256x160, lossless
FFV1, RGB stored as the codec's BGR) and ``clip_XXXXX.npz``, a canonical spectral-volume file
(``motion.volume_file``) with ``image`` = frame 0 of the clip, ``source`` = "synth" and meta
{seed, recipe, description, generator}.

Shards (``build_dataset``): ``DIR/train/shard_XXXX.npz`` and ``DIR/test/shard_XXXX.npz``, each a
compressed npz with N pairs:

    images   uint8      (N, H, W, 3)     frame 0 (RGB, with camera blur and noise)
    idx      uint16     (N, R, H, W)     source index per pixel and slot (0 = none), R = 4
    u        float16    (N, R, 2, H, W)  mode shapes (x, y) per slot
    A        complex64  (N, Mmax+1, 16)  source spectra, zero-padded to the shard's largest M
    seeds    int64      (N,)
    recipes  str        (N,)
    num_sources int32   (N,)

The spectral volume of pair i is ``volume_from_modal(idx[i], u[i], A[i])`` (exact; float16 mode
shapes change it by < 0.01 px, see the tests). Train seeds are 0.. and test seeds 10^9.. (disjoint).
``manifest.json`` lists counts, seed ranges, shards, bytes and time taken. The build is resumable:
complete shards (written atomically, checked by their seeds) are skipped.
"""

from __future__ import annotations

import bisect
import json
import math
import multiprocessing as mp
import os
import time
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from ..motion.spectral import FPS, NUM_FRAMES, NUM_FREQS
from ..motion.volume_file import SpectralVolume, save_volume
from .modal_field import MAX_SOURCES_PER_PIXEL, pad_sources, volume_from_modal
from .scene import make_scene

GENERATOR_VERSION = "synth-1"
TEST_SEED0 = 10**9
U_DTYPE = np.float16


# ------------------------------------------------------------------------------------------------
def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = FPS) -> None:
    """Write RGB frames (T, H, W, 3) uint8 as lossless FFV1 in Matroska (atomically)."""
    path = os.fspath(path)
    tmp = path[:-4] + ".partial.mkv"
    T, H, W, _ = frames.shape
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"FFV1"), fps, (W, H))
    if not writer.isOpened():
        raise RuntimeError(f"cannot open an FFV1 video writer for {path}")
    try:
        for f in frames:
            writer.write(np.ascontiguousarray(f[:, :, ::-1]))
    finally:
        writer.release()
    os.replace(tmp, path)


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Read a whole video as RGB frames (T, H, W, 3) uint8."""
    cap = cv2.VideoCapture(os.fspath(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f[:, :, ::-1])
    cap.release()
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


def write_clips(out_dir: str | os.PathLike, count: int, seed0: int = 0, width: int = 256, height: int = 160,
                recipe: str | None = None, effects: bool = True, progress: bool = True) -> list[Path]:
    """Render ``count`` scenes (seeds seed0..) as clip_XXXXX.mkv + clip_XXXXX.npz in ``out_dir``."""
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i in tqdm(range(count), desc="clips", unit="clip", disable=not progress):
        seed = seed0 + i
        scene = make_scene(seed, width, height, recipe)
        frames = scene.render_clip(NUM_FRAMES, effects=effects)
        stem = out / f"clip_{seed:05d}"
        write_video(stem.with_suffix(".mkv"), frames)
        meta = {"seed": seed, "recipe": scene.recipe, "description": scene.description,
                "generator": GENERATOR_VERSION, "camera_effects": effects}
        save_volume(stem.with_suffix(".npz"), SpectralVolume(S=scene.spectral_volume(), image=frames[0],
                                                             source="synth", meta=meta))
        written.append(stem.with_suffix(".npz"))
    return written


# ------------------------------------------------------------------------------------------------
def make_pair(seed: int, width: int = 256, height: int = 160) -> dict:
    """One training pair in compact form: image, idx, u (float32), A, recipe."""
    scene = make_scene(seed, width, height)
    idx, u, A = scene.modal()
    return {"image": scene.frame0(), "idx": idx, "u": u, "A": A, "recipe": scene.recipe, "seed": seed}


def _shard_tasks(root: Path, split: str, count: int, seed0: int, shard_size: int):
    tasks = []
    for i in range(math.ceil(count / shard_size) if count > 0 else 0):
        a = i * shard_size
        b = min(count, a + shard_size)
        tasks.append((str(root / split / f"shard_{i:04d}.npz"), split, seed0 + a, seed0 + b))
    return tasks


def _shard_complete(path: str, s0: int, s1: int) -> bool:
    if not os.path.isfile(path):
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            seeds = z["seeds"]
        return seeds.shape == (s1 - s0,) and bool(np.all(seeds == np.arange(s0, s1)))
    except Exception:
        return False


_COUNTER = None


def _init_worker(counter) -> None:
    global _COUNTER
    _COUNTER = counter
    cv2.setNumThreads(1)


def write_shard(task, width: int = 256, height: int = 160) -> dict:
    """Generate the pairs of seeds [s0, s1) and write them as one compressed shard (atomically)."""
    path, split, s0, s1 = task
    t0 = time.time()
    pairs = []
    for seed in range(s0, s1):
        pair = make_pair(seed, width, height)
        pair["u"] = pair["u"].astype(U_DTYPE)  # halve the shard's peak memory
        pairs.append(pair)
        if _COUNTER is not None:
            with _COUNTER.get_lock():
                _COUNTER.value += 1
    mmax = max(p["A"].shape[0] - 1 for p in pairs)
    arrays = {
        "images": np.stack([p["image"] for p in pairs]),
        "idx": np.stack([p["idx"] for p in pairs]).astype(np.uint16),
        "u": np.stack([p["u"] for p in pairs]).astype(U_DTYPE),
        "A": np.stack([pad_sources(p["A"], mmax) for p in pairs]),
        "seeds": np.arange(s0, s1, dtype=np.int64),
        "recipes": np.array([p["recipe"] for p in pairs]),
        "num_sources": np.array([p["A"].shape[0] - 1 for p in pairs], np.int32),
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path[:-4] + ".partial.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return {"path": path, "split": split, "count": s1 - s0, "seeds": [s0, s1], "bytes": os.path.getsize(path),
            "seconds": time.time() - t0}


def build_dataset(out_dir: str | os.PathLike, train_count: int = 20000, test_count: int = 500, workers: int = 2,
                  shard_size: int = 500, train_seed0: int = 0, test_seed0: int = TEST_SEED0,
                  width: int = 256, height: int = 160, progress: bool = True) -> dict:
    """Write the sharded train/test sets (resumable) and ``manifest.json``; returns the manifest."""
    from tqdm import tqdm

    if train_seed0 + train_count > test_seed0 and test_count > 0 and train_seed0 < test_seed0 + test_count:
        raise ValueError("train and test seed ranges overlap")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    tasks = (_shard_tasks(root, "train", train_count, train_seed0, shard_size)
             + _shard_tasks(root, "test", test_count, test_seed0, shard_size))
    todo = [t for t in tasks if not _shard_complete(t[0], t[2], t[3])]
    skipped = len(tasks) - len(todo)
    total_new = sum(t[3] - t[2] for t in todo)
    t0 = time.time()
    results = []
    bar = tqdm(total=total_new, desc="pairs", unit="pair", disable=not progress, smoothing=0.05)
    if todo:
        if workers <= 1:
            for t in todo:
                r = write_shard(t, width, height)
                bar.update(r["count"])
                results.append(r)
        else:
            ctx = mp.get_context("spawn" if os.name == "nt" else "fork")
            counter = ctx.Value("q", 0)
            with ctx.Pool(workers, initializer=_init_worker, initargs=(counter,)) as pool:
                async_res = pool.map_async(_write_shard_default, [(t, width, height) for t in todo], chunksize=1)
                done = 0
                while not async_res.ready():
                    async_res.wait(0.5)
                    now = counter.value
                    bar.update(now - done)
                    done = now
                results = async_res.get()
                bar.update(counter.value - done)
    bar.close()
    elapsed = time.time() - t0
    shards = []
    for path, split, s0, s1 in tasks:
        shards.append({"path": os.path.relpath(path, root), "split": split, "count": s1 - s0, "seeds": [s0, s1],
                       "bytes": os.path.getsize(path)})
    total_bytes = sum(s["bytes"] for s in shards)
    n_pairs = train_count + test_count
    manifest_path = root / "manifest.json"
    previous = {}
    if manifest_path.is_file():
        try:
            previous = json.loads(manifest_path.read_text())
        except ValueError:
            previous = {}
    manifest = {
        "generator": GENERATOR_VERSION,
        "width": width, "height": height, "num_freqs": NUM_FREQS, "num_frames": NUM_FRAMES, "fps": FPS,
        "sources_per_pixel": MAX_SOURCES_PER_PIXEL, "u_dtype": np.dtype(U_DTYPE).name,
        "train": {"count": train_count, "seeds": [train_seed0, train_seed0 + train_count]},
        "test": {"count": test_count, "seeds": [test_seed0, test_seed0 + test_count]},
        "shard_size": shard_size, "shards": shards,
        "bytes": total_bytes, "bytes_per_pair": total_bytes / max(n_pairs, 1),
        "seconds_this_run": elapsed, "pairs_this_run": total_new, "shards_skipped": skipped,
        "seconds_total": float(previous.get("seconds_total", 0.0)) + elapsed, "workers": workers,
        "pairs_per_minute_this_run": (60.0 * total_new / elapsed) if total_new and elapsed > 0 else None,
    }
    tmp = manifest_path.with_suffix(".partial.json")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, manifest_path)
    return manifest


def _write_shard_default(args):
    task, width, height = args
    return write_shard(task, width, height)


# ------------------------------------------------------------------------------------------------
class ShardDataset:
    """Read (image, spectral volume) pairs from a shard dataset, loading shards lazily.

    ``ds[i]`` -> (image uint8 (H, W, 3), S complex64 (16, 2, H, W)), S recomputed exactly from the
    stored modal description. Whole shards are decompressed on first touch and the last
    ``cache_shards`` are kept (LRU), so read in shard order (see ``shard_ranges``) for speed.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", cache_shards: int = 2):
        self.root = Path(root)
        self.split = split
        self.cache_shards = max(1, int(cache_shards))
        manifest = self.root / "manifest.json"
        paths, counts = [], []
        if manifest.is_file():
            m = json.loads(manifest.read_text())
            for s in m["shards"]:
                if s["split"] == split:
                    paths.append(self.root / s["path"])
                    counts.append(int(s["count"]))
        else:
            for p in sorted((self.root / split).glob("shard_*.npz")):
                if p.name.endswith(".partial.npz"):
                    continue
                with np.load(p, allow_pickle=False) as z:
                    counts.append(int(z["seeds"].shape[0]))
                paths.append(p)
        self.paths = paths
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._cache: OrderedDict[int, dict] = OrderedDict()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def shard_ranges(self) -> list[tuple[int, int]]:
        """[start, stop) of every shard's items: shuffle within and across shards, not globally."""
        return [(int(a), int(b)) for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def _shard(self, k: int) -> dict:
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        with np.load(self.paths[k], allow_pickle=False) as z:
            data = {name: z[name] for name in z.files}
        self._cache[k] = data
        while len(self._cache) > self.cache_shards:
            self._cache.popitem(last=False)
        return data

    def locate(self, i: int) -> tuple[int, int]:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = bisect.bisect_right(self.offsets, i) - 1
        return k, i - int(self.offsets[k])

    def modal(self, i: int) -> dict:
        """The stored compact record of item i: image, idx, u, A (trimmed to its sources), seed, recipe."""
        k, j = self.locate(i)
        d = self._shard(k)
        m = int(d["num_sources"][j])
        return {"image": d["images"][j], "idx": d["idx"][j], "u": d["u"][j], "A": d["A"][j, : m + 1],
                "seed": int(d["seeds"][j]), "recipe": str(d["recipes"][j])}

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        r = self.modal(i)
        return r["image"], volume_from_modal(r["idx"], r["u"], r["A"])


# ------------------------------------------------------------------------------------------------
def preview_sheet(seeds, path: str | os.PathLike, columns: int = 4, overlay: bool = True,
                  width: int = 256, height: int = 160) -> np.ndarray:
    """Contact sheet of frame-0 images (left) with their mean motion magnitude (turbo colour map)."""
    from ..motion.spectral import amplitude

    tiles = []
    for seed in seeds:
        scene = make_scene(int(seed), width, height)
        img = scene.frame0()
        if overlay:
            amp = amplitude(scene.spectral_volume()).sum(axis=0)
            heat = cv2.applyColorMap(np.clip(amp * 25.0, 0, 255).astype(np.uint8), cv2.COLORMAP_TURBO)[:, :, ::-1]
            mov = scene.moving_mask()[..., None]
            over = np.where(mov, (0.35 * img + 0.65 * heat), 0.35 * img).astype(np.uint8)
            img = np.concatenate([img, over], axis=1)
        cv2.putText(img, f"{seed} {scene.recipe}", (3, 11), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(img)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    sheet = np.vstack([np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)])
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    cv2.imwrite(os.fspath(path), sheet[:, :, ::-1])
    return sheet


__all__ = ["ShardDataset", "TEST_SEED0", "build_dataset", "make_pair", "preview_sheet", "read_video",
           "write_clips", "write_shard", "write_video"]
