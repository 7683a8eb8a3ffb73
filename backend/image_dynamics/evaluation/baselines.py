"""Baselines every score is compared with, measured in the same run as the model.

Each baseline has ``predict(image, size) -> S`` with ``size = (W, H)`` of the truth, returning a
canonical spectral volume (K, 2, H, W) complex64.

* ``ZeroMotion`` - nothing moves (S = 0).
* ``MeanPrior`` - the image-blind mean prior: per pixel p, frequency k and axis c, the mean over the
  training set of the complex modulus |S_kc(p)|, in pixels at the data resolution. As a volume it
  is that amplitude with phase 0 (every score is phase-invariant, so the phase is irrelevant to
  them; only the moving-region mask, which looks at motion over time, sees a phase, and for
  phase 0 all modes peak together at t = 0). ``fit_mean_prior`` streams the dataset once
  (float64 sums; nothing held), ``load_or_fit_mean_prior`` caches the result in a ``.npz``
  keyed by the dataset's manifest and the number of pairs used.
* ``RegressionBaseline`` - the direct-regression network of ``model/regression.py`` (a deterministic
  image -> volume net trained with the same data), loaded from a folder. The adapter needs only
  this from that module: some class with ``from_pretrained(folder)`` whose instances have
  ``predict(image)`` (or ``predict(image, size=(W, H))``) returning a complex (K, 2, H', W')
  volume in pixels of its own grid; it is resampled to the truth's size here when needed.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..motion.resample import resample_volume

__all__ = [
    "ZeroMotion",
    "MeanPrior",
    "fit_mean_prior",
    "load_or_fit_mean_prior",
    "RegressionBaseline",
    "BaselineError",
]

PRIOR_FORMAT = "image_dynamics.mean_prior"
PRIOR_VERSION = 1


class BaselineError(RuntimeError):
    """A baseline cannot be built or loaded (the message says why)."""


def _fit_size(S: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None:
        return S.astype(np.complex64, copy=False)
    W, H = int(size[0]), int(size[1])
    if S.shape[-2:] == (H, W):
        return S.astype(np.complex64, copy=False)
    return resample_volume(S, W, H)


class ZeroMotion:
    name = "zero"

    def __init__(self, num_freqs: int = 16) -> None:
        self.num_freqs = int(num_freqs)

    def predict(self, image: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        W, H = size if size is not None else (image.shape[1], image.shape[0])
        return np.zeros((self.num_freqs, 2, int(H), int(W)), np.complex64)


class MeanPrior:
    """Per-pixel, per-frequency, per-axis mean of |S_kc(p)| over the training set."""

    name = "mean_prior"

    def __init__(self, amplitude: np.ndarray, count: int, meta: dict | None = None) -> None:
        a = np.asarray(amplitude, dtype=np.float32)
        if a.ndim != 4 or a.shape[1] != 2:
            raise ValueError(f"mean amplitude must have shape (K, 2, H, W), got {a.shape}")
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise ValueError("mean amplitude must be finite and >= 0")
        self.amplitude = a
        self.count = int(count)
        self.meta = dict(meta or {})

    @property
    def volume(self) -> np.ndarray:
        """The prior as a spectral volume: the mean amplitude with phase 0, complex64."""
        return self.amplitude.astype(np.complex64)

    def predict(self, image: np.ndarray | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
        return _fit_size(self.volume, size)

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name[: -len(".npz")] + ".partial.npz") if path.name.endswith(".npz") else path
        np.savez_compressed(tmp, amplitude=self.amplitude, count=np.int64(self.count),
                            meta_json=np.array(json.dumps({"format": PRIOR_FORMAT, "version": PRIOR_VERSION, **self.meta},
                                                          sort_keys=True)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MeanPrior":
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta_json"]))
            if meta.get("format") != PRIOR_FORMAT or meta.get("version") != PRIOR_VERSION:
                raise BaselineError(f"{path} is not a mean-prior file of this version")
            return cls(z["amplitude"], int(z["count"]), meta)


def fit_mean_prior(pairs: Iterable, progress: Callable[[int], None] | None = None) -> MeanPrior:
    """Mean of |S| over a stream of (image, S) pairs (or bare volumes); float64 running sums."""
    total = None
    n = 0
    for item in pairs:
        S = item[1] if isinstance(item, tuple) else item
        a = np.abs(np.asarray(S))
        if total is None:
            total = np.zeros(a.shape, np.float64)
        elif a.shape != total.shape:
            raise BaselineError(f"volumes differ in shape: {a.shape} after {total.shape}")
        total += a
        n += 1
        if progress is not None:
            progress(n)
    if not n:
        raise BaselineError("no training pairs to fit the mean prior on")
    return MeanPrior(total / n, n)


def _dataset_key(dataset, split: str, count: int) -> str:
    root = Path(dataset.root).resolve()
    manifest = root / "manifest.json"
    h = hashlib.sha256()
    h.update(f"{root}|{split}|{count}".encode())
    if manifest.is_file():
        h.update(manifest.read_bytes())
    else:
        for p in dataset.paths:
            st = Path(p).stat()
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def load_or_fit_mean_prior(
    data_root: str | os.PathLike,
    cache_dir: str | os.PathLike,
    *,
    split: str = "train",
    limit: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> tuple[MeanPrior, Path, bool]:
    """The mean prior of ``data_root``'s ``split`` (first ``limit`` pairs), from cache or fitted.

    Returns (prior, cache path, loaded_from_cache).
    """
    from ..synth.dataset import ShardDataset

    ds = ShardDataset(data_root, split)
    n = len(ds) if limit is None else min(int(limit), len(ds))
    if n == 0:
        raise BaselineError(f"{data_root} has no {split} pairs")
    key = _dataset_key(ds, split, n)
    path = Path(cache_dir) / f"mean_prior_{split}_{n}_{key}.npz"
    if path.is_file():
        try:
            return MeanPrior.load(path), path, True
        except (OSError, ValueError, KeyError, BaselineError):
            pass  # stale or damaged: fit again
    if log:
        log(f"fitting the mean prior on {n} {split} pairs of {data_root} (cached to {path})")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="mean prior", unit="pair", leave=False)
    prior = fit_mean_prior((ds[i] for i in range(n)), progress=(lambda _k: bar.update(1)) if bar else None)
    if bar is not None:
        bar.close()
    prior.meta.update({"data": str(Path(data_root).resolve()), "split": split, "count": n, "key": key})
    prior.save(path)
    return prior, path, False


class RegressionBaseline:
    """Adapter for the direct-regression network (``image_dynamics.model.regression``)."""

    name = "regression"

    def __init__(self, net, folder: str | os.PathLike | None = None) -> None:
        if not callable(getattr(net, "predict", None)):
            raise BaselineError("the regression model has no predict(image) method")
        self.net = net
        self.folder = folder

    @classmethod
    def load(cls, folder: str | os.PathLike, device: str = "cpu") -> "RegressionBaseline":
        folder = Path(folder)
        if not folder.is_dir():
            raise BaselineError(f"no regression model folder at {folder}")
        try:
            module = importlib.import_module("image_dynamics.model.regression")
        except ImportError as exc:
            raise BaselineError(f"the direct-regression baseline is not available ({exc})") from exc
        loaders = []
        for attr in dir(module):
            obj = getattr(module, attr)
            if isinstance(obj, type) and callable(getattr(obj, "from_pretrained", None)) and obj.__module__ == module.__name__:
                loaders.append(obj)
        if callable(getattr(module, "from_pretrained", None)):
            loaders.insert(0, module)
        if not loaders:
            raise BaselineError("image_dynamics.model.regression has no from_pretrained loader")
        errors = []
        for loader in loaders:
            try:
                try:
                    net = loader.from_pretrained(folder, device=device)
                except TypeError:
                    net = loader.from_pretrained(folder)
                return cls(net, folder)
            except Exception as exc:  # try the next candidate class, report all if none fits
                errors.append(f"{getattr(loader, '__name__', loader)}: {exc}")
        raise BaselineError(f"cannot load the regression model in {folder}: " + "; ".join(errors))

    def predict(self, image: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        try:
            S = self.net.predict(image, size=size)
        except TypeError:
            S = self.net.predict(image)
        S = np.asarray(S)
        if S.ndim == 5 and S.shape[0] == 1:
            S = S[0]
        if S.ndim != 4 or S.shape[1] != 2 or not np.iscomplexobj(S):
            raise BaselineError(f"the regression model returned {S.dtype} {S.shape}, not a (K, 2, H, W) complex volume")
        return _fit_size(S, size)
