"""The training cache: every (photo, spectral volume) pair preprocessed once at model resolution.

Why a cache. The shard datasets store scenes compactly (synthetic: a modal description from which
S is recomputed; extracted videos: compressed float16 volumes at 256 x 160) and decompress a whole
shard at a time, which is fine for one sequential pass and far too slow for random batches. So one
pass (in shard order, ``workers`` processes) writes plain ``.npy`` arrays that training reads
memory-mapped, in any order, from any number of DataLoader workers or DDP ranks.

Layout of a cache folder (``build_cache``)::

    cache.json                  format, resolution, sources, counts, the scales and their fit,
                                statistics of the normalized values, build time
    scales.json                 ``FrequencyScales`` (fitted on the TRAINING split only)
    train/images.npy            uint8   (N, H, W, 3)     photo resized with INTER_AREA
    train/volumes.npy           float16 (N, K, 4, H, W)  normalized volume, channels
                                                         x_re, y_re, x_im, y_im (paper Eq. 4)
    train/index.npy             int64   (N, 2)           (source number, item in that source)
    test/...                    the same for the held-out split
    latents/NAME/{train,test}.npy + latents.json        optional, ``training.latents``

Steps: (1) images resized with ``resample_image`` (INTER_AREA when shrinking) and volumes with
``resample_volume`` (vectors scaled to model pixels), written into ``volumes.npy`` as
sign(v) sqrt(|v|) (raw pixel values below 6e-5 would be float16 subnormals and lose their digits,
yet after division by a small s_k they are visible; the square root keeps 3 digits down to 4e-9 px);
(2) ``fit_scales`` streams the training volumes (squared back) (a uniform 1-in-n subsample of the pairs when
there are more than ``scale_fit_pairs``: the fit keeps a 200,000-value reservoir per frequency
anyway, so 4,000 pairs (2.6e9 values per frequency) give the same percentile to ~1e-3 in rank);
(3) every array is normalized in place with those scales (the formula of ``motion.normalize``,
x = sign(v) sqrt(|v|) / sqrt(s_k), computed in float32). The build writes into ``OUT.partial`` and renames
it at the end, so a cache folder is always complete.

Sizes: at 128 x 80 and K = 16 a pair takes 1.31 MB (float16 volume) + 31 KB (image), so the
20,000 synthetic training pairs make a 26 GB cache. Float16 keeps ~3 significant digits of
normalized values (|x| <~ 20): far below the networks' errors.

Sources (``--data``, several allowed, concatenated in order):

* a synthetic shard dataset (``synth.dataset``: ``manifest.json`` + ``train/`` + ``test/``);
* extracted real-video shards (``extract.shards``, ``DenseShardDataset``): a folder of
  ``shard_XXXX.npz``, or one with ``train/`` and ``test/`` sub-folders of them. A flat folder is
  split by source video, never by window (overlapping windows of one video must not straddle the
  split): a video goes to the test split when crc32(path) % 20 == 0 (about 5 %).

Augmentation: horizontal flip, applied when a dataset item is read. The image is mirrored and the
volume mirrored with its x components negated (x_re and x_im change sign; y_re, y_im do not):
mirroring the scene mirrors horizontal motion. The flip is encoded in the item index (index
``i`` -> pair, frequency, flip bit), so the sampler's seeded shuffle decides it: reproducible,
identical across DDP ranks and DataLoader workers, exact on resume. Precomputed latents store the
flipped pairs' latents too (the VAE is not flip-equivariant, so a latent cannot be flipped).

The dataset classes below need no torch: they return numpy arrays, which torch's default collate
turns into tensors. They hold only paths and open their memory maps lazily in each process.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import UserError
from ..motion.normalize import FrequencyScales, fit_scales
from ..motion.resample import resample_image, resample_volume

__all__ = [
    "CACHE_FORMAT",
    "build_cache",
    "TrainingCache",
    "VAESliceDataset",
    "SliceDataset",
    "VolumeDataset",
    "Subset",
    "evenly_spaced",
    "image_to_array",
    "flip_volume",
]

CACHE_FORMAT = "image_dynamics.training_cache"
CACHE_VERSION = 1
CACHE_JSON = "cache.json"
SPLITS = ("train", "test")
TEST_BUCKETS = 20  # flat real-video folders: crc32(video) % 20 == 0 -> test


# ------------------------------------------------------------------------------------------------
# Sources
# ------------------------------------------------------------------------------------------------
@dataclass
class _Source:
    root: str
    kind: str  # "synth" | "dense"
    sub: dict[str, str]  # split -> folder / split name for the dataset class
    items: dict[str, list[int]] = field(default_factory=dict)  # split -> item indices
    groups: dict[str, list[int]] = field(default_factory=dict)  # split -> shard number of each item


def _shard_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("shard_*.npz") if ".partial" not in p.name)


def _npz_members(path: Path) -> list[str]:
    with np.load(path, allow_pickle=False) as z:
        return list(z.files)


def _dense_dataset(folder: str):
    try:
        from ..extract.shards import DenseShardDataset
    except ImportError as exc:  # pragma: no cover - the extract package ships with the backend
        raise UserError(f"{folder} holds extracted video shards, but image_dynamics.extract is unavailable: {exc}")
    return DenseShardDataset(folder)


def _dense_videos(folder: str) -> tuple[list[str], list[int]]:
    """Source video and shard number of every item of a dense shard folder, in dataset order."""
    videos, shards = [], []
    for si, path in enumerate(_shard_files(Path(folder))):
        with np.load(path, allow_pickle=False) as z:
            v = [str(s) for s in z["videos"]]
        videos.extend(v)
        shards.extend([si] * len(v))
    return videos, shards


def _open_source(root: str | os.PathLike) -> _Source:
    root_p = Path(root)
    if not root_p.is_dir():
        raise UserError(f"no such data folder: {root}", "pass a synthetic dataset (image-dynamics synth --dataset) "
                        "or a folder of extracted shards (image-dynamics extract)")
    manifest = root_p / "manifest.json"
    if manifest.is_file():
        try:
            m = json.loads(manifest.read_text())
        except ValueError:
            m = {}
        if "generator" in m:
            return _synth_source(root_p)
    sub = {s: root_p / s for s in SPLITS if (root_p / s).is_dir() and _shard_files(root_p / s)}
    if sub:
        first = _shard_files(next(iter(sub.values())))[0]
        members = _npz_members(first)
        if "idx" in members:
            return _synth_source(root_p)
        if "S" in members:
            src = _Source(str(root_p.resolve()), "dense", {s: str(p) for s, p in sub.items()})
            for split, folder in src.sub.items():
                _, shards = _dense_videos(folder)
                src.items[split] = list(range(len(shards)))
                src.groups[split] = shards
            return src
    flat = _shard_files(root_p)
    if flat and "S" in _npz_members(flat[0]):
        src = _Source(str(root_p.resolve()), "dense", {s: str(root_p) for s in SPLITS})
        videos, shards = _dense_videos(str(root_p))
        for split in SPLITS:
            src.items[split], src.groups[split] = [], []
        for i, (video, shard) in enumerate(zip(videos, shards)):
            split = "test" if zlib.crc32(video.encode("utf-8")) % TEST_BUCKETS == 0 else "train"
            src.items[split].append(i)
            src.groups[split].append(shard)
        return src
    raise UserError(f"{root} is neither a synthetic shard dataset nor a folder of extracted shards",
                    "expected manifest.json + train/ + test/, or shard_XXXX.npz files")


def _synth_source(root_p: Path) -> _Source:
    from ..synth.dataset import ShardDataset

    src = _Source(str(root_p.resolve()), "synth", {s: s for s in SPLITS})
    for split in SPLITS:
        ds = ShardDataset(root_p, split)
        src.items[split] = list(range(len(ds)))
        groups = []
        for k, (a, b) in enumerate(ds.shard_ranges()):
            groups.extend([k] * (b - a))
        src.groups[split] = groups
    return src


_OPEN: dict[tuple[str, str, str], Any] = {}


def _dataset(kind: str, root: str, sub: str):
    key = (kind, root, sub)
    if key not in _OPEN:
        if kind == "synth":
            from ..synth.dataset import ShardDataset

            _OPEN[key] = ShardDataset(root, sub, cache_shards=1)
        else:
            _OPEN[key] = _dense_dataset(sub)
    return _OPEN[key]


# ------------------------------------------------------------------------------------------------
# Building
# ------------------------------------------------------------------------------------------------
def pack_channels(S: np.ndarray) -> np.ndarray:
    """(K, 2, H, W) complex -> (K, 4, H, W) float32, channels x_re, y_re, x_im, y_im."""
    return np.concatenate([S.real, S.imag], axis=1).astype(np.float32)


def signed_sqrt(v: np.ndarray) -> np.ndarray:
    """sign(v) sqrt(|v|): how raw values wait in float16 for their scales (no subnormals: see
    ``build_cache``); normalizing is then one multiplication, x = y / sqrt(s_k)."""
    return (np.sign(v) * np.sqrt(np.abs(v))).astype(np.float32)


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def _prepare_task(task: dict) -> dict:
    """Resize one run of items of one source into the (raw) cache arrays."""
    t0 = time.time()
    ds = _dataset(task["kind"], task["root"], task["sub"])
    W, H, K = task["width"], task["height"], task["num_freqs"]
    images = np.load(task["images"], mmap_mode="r+")
    volumes = np.load(task["volumes"], mmap_mode="r+")
    out = task["start"]
    for i in task["items"]:
        img, S = ds[i]
        S = np.asarray(S)
        if S.ndim != 4 or S.shape[0] != K or S.shape[1] != 2:
            raise ValueError(f"{task['root']} item {i}: spectral volume of shape {S.shape}, expected ({K}, 2, H, W)")
        if S.shape[-2:] != (H, W):
            S = resample_volume(S, W, H)
        img = np.asarray(img)
        if img.shape[:2] != (H, W):
            img = resample_image(img, W, H)
        volumes[out] = signed_sqrt(pack_channels(S)).astype(np.float16)
        images[out] = img
        out += 1
    volumes.flush()
    images.flush()
    del volumes, images
    return {"count": len(task["items"]), "seconds": time.time() - t0}


def _normalize_task(task: dict) -> dict:
    """Normalize rows [start, stop) of a raw volumes array in place; return value statistics."""
    vol = np.load(task["volumes"], mmap_mode="r+")
    s = np.asarray(task["scales"], dtype=np.float32).reshape(-1, 1, 1, 1)
    clip = task["clip"]
    K = s.shape[0]
    n_all = np.zeros(K, np.int64)
    n_nz = np.zeros(K, np.int64)
    n_gt1 = np.zeros(K, np.int64)
    vmax = np.zeros(K, np.float64)
    step = 64
    for a in range(task["start"], task["stop"], step):
        b = min(task["stop"], a + step)
        x = vol[a:b].astype(np.float32) / np.sqrt(s)  # sign(v) sqrt(|v| / s_k)
        if clip is not None:
            x = np.clip(x, -clip, clip)
        vol[a:b] = x.astype(np.float16)
        ax = np.abs(x)
        n_all += ax.size // K
        n_nz += (ax > 0).sum(axis=(0, 2, 3, 4))
        n_gt1 += (ax > 1).sum(axis=(0, 2, 3, 4))
        vmax = np.maximum(vmax, ax.max(axis=(0, 2, 3, 4)))
    vol.flush()
    del vol
    return {"n": n_all, "nonzero": n_nz, "gt1": n_gt1, "max": vmax}


def _raw_volumes(path: str, stride: int) -> Iterable[np.ndarray]:
    vol = np.load(path, mmap_mode="r")
    for i in range(0, vol.shape[0], stride):
        y = vol[i].astype(np.float32)
        v = np.sign(y) * y * y
        yield (v[:, 0:2] + 1j * v[:, 2:4]).astype(np.complex64)


def _map(fn, tasks: list, workers: int, bar=None) -> list:
    results = []
    if workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            r = fn(t)
            results.append(r)
            if bar is not None:
                bar.update(r.get("count", 1) if isinstance(r, dict) and "count" in r else 1)
        return results
    ctx = mp.get_context("spawn")  # fork can deadlock in OpenCV if the parent used its threads
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        for r in pool.imap(fn, tasks, chunksize=1):
            results.append(r)
            if bar is not None:
                bar.update(r.get("count", 1) if isinstance(r, dict) and "count" in r else 1)
    return results


def build_cache(
    data: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    resolution: tuple[int, int],
    *,
    num_freqs: int = 16,
    workers: int = 1,
    max_train: int | None = None,
    max_test: int | None = None,
    percentile: float = 95.0,
    scale_fit_pairs: int = 4000,
    max_samples: int = 200_000,
    seed: int = 0,
    task_size: int = 100,
    progress: bool = True,
    overwrite: bool = False,
    preset: str | None = None,
) -> dict:
    """Build the training cache at ``resolution`` = (W, H) from one or more datasets; returns cache.json."""
    from tqdm import tqdm

    t_start = time.time()
    W, H = int(resolution[0]), int(resolution[1])
    out_p = Path(out)
    if out_p.exists():
        if not overwrite:
            raise UserError(f"{out} already exists", "choose another --out, or pass --overwrite")
        shutil.rmtree(out_p)
    tmp = out_p.with_name(out_p.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    if not data:
        raise UserError("no data given", "pass --data DIR (a synthetic dataset or extracted shards)")
    sources = [_open_source(d) for d in data]
    limits = {"train": max_train, "test": max_test}
    plan: dict[str, list[tuple[int, int]]] = {}  # split -> [(source number, item)]
    for split in SPLITS:
        rows = [(si, i) for si, src in enumerate(sources) for i in src.items.get(split, [])]
        if limits[split] is not None:
            rows = rows[: max(0, int(limits[split]))]
        plan[split] = rows
    if not plan["train"]:
        raise UserError("the data has no training pairs")
    if not plan["test"]:
        raise UserError("the data has no held-out (test) pairs", "evaluation needs some: check --max-test or the data")

    for split in SPLITS:
        (tmp / split).mkdir(parents=True, exist_ok=True)
    paths = {s: {"images": str(tmp / s / "images.npy"), "volumes": str(tmp / s / "volumes.npy")} for s in SPLITS}
    group_of = [{sp: dict(zip(src.items.get(sp, []), src.groups.get(sp, []))) for sp in SPLITS} for src in sources]
    tasks = []
    for split in SPLITS:
        rows = plan[split]
        n = len(rows)
        np.lib.format.open_memmap(paths[split]["images"], mode="w+", dtype=np.uint8, shape=(n, H, W, 3)).flush()
        np.lib.format.open_memmap(
            paths[split]["volumes"], mode="w+", dtype=np.float16, shape=(n, num_freqs, 4, H, W)
        ).flush()
        np.save(tmp / split / "index.npy", np.array(rows, dtype=np.int64).reshape(n, 2))
        # tasks: runs of consecutive items of one source and one shard, at most task_size long
        start = 0
        while start < n:
            si, _ = rows[start]
            src = sources[si]
            stop = start
            group = group_of[si][split][rows[start][1]]
            while (stop < n and stop - start < task_size and rows[stop][0] == si
                   and group_of[si][split][rows[stop][1]] == group):
                stop += 1
            tasks.append({
                "kind": src.kind, "root": src.root, "sub": src.sub[split], "items": [r[1] for r in rows[start:stop]],
                "start": start, "width": W, "height": H, "num_freqs": num_freqs, **paths[split],
            })
            start = stop

    total = sum(len(t["items"]) for t in tasks)
    t0 = time.time()
    bar = tqdm(total=total, desc="cache: resize", unit="pair", disable=not progress, smoothing=0.05)
    _map(_prepare_task, tasks, workers, bar)
    bar.close()
    t_resize = time.time() - t0

    t0 = time.time()
    n_train = len(plan["train"])
    stride = max(1, -(-n_train // max(1, int(scale_fit_pairs))))
    fit_iter = _raw_volumes(paths["train"]["volumes"], stride)
    if progress:
        fit_iter = tqdm(fit_iter, total=-(-n_train // stride), desc="cache: fit scales", unit="pair")
    scales = fit_scales(fit_iter, percentile, max_samples=max_samples, seed=seed)
    scales.fit["pair_stride"] = stride
    scales.fit["split"] = "train"
    scales.fit["resolution"] = [W, H]
    t_fit = time.time() - t0

    t0 = time.time()
    norm_tasks = []
    for split in SPLITS:
        n = len(plan[split])
        for a in range(0, n, 500):
            norm_tasks.append({"volumes": paths[split]["volumes"], "start": a, "stop": min(n, a + 500),
                               "scales": [float(v) for v in scales.scales], "clip": scales.clip, "split": split})
    bar = tqdm(total=len(norm_tasks), desc="cache: normalize", unit="chunk", disable=not progress)
    results = _map(_normalize_task, norm_tasks, workers, bar)
    bar.close()
    t_norm = time.time() - t0
    stats = {}
    for split in SPLITS:
        rs = [r for r, t in zip(results, norm_tasks) if t["split"] == split]
        n = sum(r["n"] for r in rs)
        nz = sum(r["nonzero"] for r in rs)
        gt1 = sum(r["gt1"] for r in rs)
        mx = np.max([r["max"] for r in rs], axis=0)
        stats[split] = {
            "fraction_nonzero": [round(float(a / max(b, 1)), 5) for a, b in zip(nz, n)],
            "fraction_abs_gt_1": [round(float(a / max(b, 1)), 5) for a, b in zip(gt1, n)],
            "fraction_abs_gt_1_of_nonzero": [round(float(a / max(b, 1)), 5) for a, b in zip(gt1, nz)],
            "max_abs": [round(float(v), 4) for v in mx],
        }

    scales.save(tmp / "scales.json")
    info = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "resolution": [W, H],
        "num_freqs": num_freqs,
        "channel_order": ["x_re", "y_re", "x_im", "y_im"],
        "volume_dtype": "float16",
        "normalized": True,
        "preset": preset,
        "sources": [
            {"root": s.root, "kind": s.kind,
             "train": sum(1 for r in plan["train"] if r[0] == i), "test": sum(1 for r in plan["test"] if r[0] == i)}
            for i, s in enumerate(sources)
        ],
        "splits": {s: {"count": len(plan[s])} for s in SPLITS},
        "scales": scales.to_dict(),
        "normalized_stats": stats,
        "augmentation": "horizontal flip at read time (x_re, x_im negated), chosen by the item index",
        "seconds": {"resize": round(t_resize, 1), "fit_scales": round(t_fit, 1), "normalize": round(t_norm, 1),
                    "total": round(time.time() - t_start, 1)},
        "workers": workers,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (tmp / CACHE_JSON).write_text(json.dumps(info, indent=1))
    os.replace(tmp, out_p)
    return info


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------
class TrainingCache:
    """Read-only view of a cache folder: metadata, scales and lazily memory-mapped arrays."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        path = self.root / CACHE_JSON
        if not path.is_file():
            raise UserError(f"{root} is not a training cache ({CACHE_JSON} is missing)",
                            "build one with: image-dynamics train cache --data DIR --out DIR")
        self.info = json.loads(path.read_text())
        if self.info.get("format") != CACHE_FORMAT or self.info.get("version") != CACHE_VERSION:
            raise UserError(f"{root} is not a training cache of this version")
        self.scales = FrequencyScales.from_dict(self.info["scales"])
        self._arrays: dict[tuple[str, str], np.ndarray] = {}

    @property
    def resolution(self) -> tuple[int, int]:
        return tuple(self.info["resolution"])  # type: ignore[return-value]

    @property
    def num_freqs(self) -> int:
        return int(self.info["num_freqs"])

    def count(self, split: str) -> int:
        return int(self.info["splits"][split]["count"])

    def describe(self) -> dict[str, Any]:
        """The ``data`` section of a training run's config."""
        return {"cache": str(self.root.resolve()), "resolution": list(self.resolution),
                "train_pairs": self.count("train"), "test_pairs": self.count("test"),
                "scales": self.scales.to_dict()}

    def array(self, split: str, name: str) -> np.ndarray:
        key = (split, name)
        if key not in self._arrays:
            self._arrays[key] = np.load(self.root / split / f"{name}.npy", mmap_mode="r")
        return self._arrays[key]

    # -- precomputed latents -----------------------------------------------------------------
    def latents_dir(self, name: str) -> Path:
        return self.root / "latents" / name

    def latents_info(self, name: str) -> dict:
        path = self.latents_dir(name) / "latents.json"
        if not path.is_file():
            raise UserError(f"the cache {self.root} has no latents named {name!r}",
                            "encode them first: image-dynamics train latents --cache CACHE --vae VAE_RUN")
        return json.loads(path.read_text())

    def latents(self, split: str, name: str) -> np.ndarray:
        key = (split, f"latents/{name}")
        if key not in self._arrays:
            self._arrays[key] = np.load(self.latents_dir(name) / f"{split}.npy", mmap_mode="r")
        return self._arrays[key]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_arrays"] = {}  # memory maps are reopened in each process
        return state


def image_to_array(img: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [-1, 1] (as ``MotionPredictor.preprocess``)."""
    return (np.asarray(img, np.float32).transpose(2, 0, 1) / 127.5 - 1.0).astype(np.float32)


def flip_volume(x: np.ndarray) -> np.ndarray:
    """Mirror normalized slices (..., 4, H, W) left-right: W reversed, x_re and x_im negated."""
    y = np.array(x[..., ::-1], dtype=np.float32)
    y[..., 0, :, :] *= -1.0
    y[..., 2, :, :] *= -1.0
    return y


class _CacheDataset:
    def __init__(self, cache: TrainingCache | str | os.PathLike, split: str, flip: bool = True) -> None:
        self.cache = cache if isinstance(cache, TrainingCache) else TrainingCache(cache)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}")
        self.split = split
        self.flip = bool(flip)
        self.F = 2 if self.flip else 1
        self.K = self.cache.num_freqs
        self.N = self.cache.count(split)

    def _image(self, n: int, f: int) -> np.ndarray:
        img = self.cache.array(self.split, "images")[n]
        if f:
            img = img[:, ::-1]
        return image_to_array(img)

    def _slices(self, n: int, f: int, k: int | slice) -> np.ndarray:
        v = np.asarray(self.cache.array(self.split, "volumes")[n, k], dtype=np.float32)
        return flip_volume(v) if f else v


class _LatentMixin:
    def _setup_latents(self, latents: str | None) -> None:
        self.latents_name = latents
        if latents is None:
            return
        info = self.cache.latents_info(latents)
        if self.flip and not info.get("flip", False):
            raise ValueError(f"latents {latents!r} were encoded without flipped copies: disable flip augmentation")
        self.latent_mean = np.asarray(info["latent_mean"], np.float32).reshape(-1, 1, 1)
        self.latent_std = np.asarray(info["latent_std"], np.float32).reshape(-1, 1, 1)
        arr = self.cache.latents(self.split, latents)
        if arr.shape[0] < self.N:
            self.N = arr.shape[0]  # latents encoded for the first pairs only (--limit)

    def _latent(self, n: int, f: int, k: int | slice) -> np.ndarray:
        z = np.asarray(self.cache.latents(self.split, self.latents_name)[n, f, k], dtype=np.float32)
        return ((z - self.latent_mean) / self.latent_std).astype(np.float32)


class VAESliceDataset(_CacheDataset):
    """Single 4-channel frequency slices: item -> float32 (4, H, W). Index = (pair, freq, flip)."""

    def __len__(self) -> int:
        return self.N * self.K * self.F

    def __getitem__(self, i: int) -> np.ndarray:
        f, rest = i % self.F, i // self.F
        k, n = rest % self.K, rest // self.K
        return self._slices(n, f, k)


class SliceDataset(_CacheDataset, _LatentMixin):
    """Stage-1 denoiser items: (image (3, H, W), target slice, frequency k).

    The target is the normalized slice (4, H, W) (encoded on the fly by the trainer's frozen VAE)
    or, with ``latents``, the precomputed whitened latent (C, h, w).
    """

    def __init__(self, cache, split: str, flip: bool = True, latents: str | None = None) -> None:
        super().__init__(cache, split, flip)
        self._setup_latents(latents)

    def __len__(self) -> int:
        return self.N * self.K * self.F

    def __getitem__(self, i: int):
        f, rest = i % self.F, i // self.F
        k, n = rest % self.K, rest // self.K
        target = self._latent(n, f, k) if self.latents_name else self._slices(n, f, k)
        return self._image(n, f), target, np.int64(k)


class VolumeDataset(_CacheDataset, _LatentMixin):
    """Whole pairs: (image (3, H, W), volume (K, 4, H, W) | latents (K, C, h, w)).

    ``flat=True`` returns the volume as (K*4, H, W) (the regression baseline's 64-channel target).
    """

    def __init__(self, cache, split: str, flip: bool = True, latents: str | None = None, flat: bool = False) -> None:
        super().__init__(cache, split, flip)
        self.flat = bool(flat)
        self._setup_latents(latents)

    def __len__(self) -> int:
        return self.N * self.F

    def __getitem__(self, i: int):
        f, n = i % self.F, i // self.F
        if self.latents_name:
            target = self._latent(n, f, slice(None))
        else:
            target = self._slices(n, f, slice(None))
            if self.flat:
                target = target.reshape(-1, *target.shape[-2:])
        return self._image(n, f), target


class Subset:
    """A fixed list of items of a dataset (held-out evaluation)."""

    def __init__(self, dataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[self.indices[i]]


def evenly_spaced(n: int, size: int) -> list[int]:
    """``size`` indices spread evenly over range(n) (all of them if size >= n)."""
    if size >= n:
        return list(range(n))
    return [int(i) for i in np.linspace(0, n - 1, size).round().astype(np.int64)]
