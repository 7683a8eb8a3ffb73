"""Frequency-adaptive normalization of spectral volumes (paper Eq. 4), numpy only.

The network sees each frequency k of a spectral volume S (K, 2, H, W) complex as four real
channels, in the official demo's order ``(x_re, y_re, x_im, y_im)``. Raw coefficients shrink
fast with frequency, so every value v of frequency k is divided by its own scale s_k and then
passed through a sign-keeping square root:

    x = sign(v / s_k) * sqrt(|v / s_k|),        v = sign(x) * x^2 * s_k   (``denormalize``)

with s_k the 95th percentile of the coefficient magnitudes of bin k over the training set.

Open choices (the paper is silent); each is also stored as a field of ``FrequencyScales`` and so
travels with the scales into the model card / safetensors metadata:

* ``magnitude = "per_real_value"`` (default): the percentile is taken over |Re| and |Im|
  separately, pooled over x and y - i.e. over exactly the real values the network outputs, so
  after division 95 % of all channel values lie in [-1, 1] (and stay there after the square root).
  The complex modulus (``"complex_modulus"``, |S_kx| and |S_ky| per pixel) is also supported but
  is ~sqrt(2) larger for random phases, so it would leave the real channels using only part of
  [-1, 1]. Consequence for the DC bin: its imaginary parts are identically 0 for real motion, so
  pooling makes its s_0 roughly the 90th percentile of |Re S_0|; DC is otherwise handled like any
  other bin.
* ``clip = None`` (default): no clipping; values beyond the 95th percentile map to |x| > 1 and
  ``denormalize`` inverts ``normalize`` exactly. A clip level c may be set (outputs limited to
  [-c, c]); clipped values are then not recoverable.
* ``min_scale``: every s_k is floored, s_k = max(percentile_k, min_scale) (default 1e-4 px,
  far below a visible displacement), so a frequency with no motion in the data never divides by
  zero. The unfloored percentiles are kept in ``raw_scales``.
* Fitting streams: ``fit_scales`` never holds the dataset. Per frequency it keeps a uniform random
  subsample of at most ``max_samples`` magnitudes (bottom-k sampling: each value draws a uniform
  key from a seeded generator and the ``max_samples`` smallest keys are kept, which is a uniform
  sample without replacement of everything seen). While fewer values than ``max_samples`` have
  been seen the sample is the whole data and the percentile exact; beyond, the percentile's rank
  error is about sqrt(p (1 - p) / max_samples) (~5e-4 at the default 200,000). The percentile is
  numpy's default (linear interpolation).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

__all__ = [
    "CHANNEL_ORDER",
    "FrequencyScales",
    "fit_scales",
    "normalize",
    "denormalize",
]

CHANNEL_ORDER = ("x_re", "y_re", "x_im", "y_im")
FORMAT = "image_dynamics.frequency_scales"
FORMAT_VERSION = 1
MAGNITUDES = ("per_real_value", "complex_modulus")
TRANSFORMS = ("signed_sqrt",)


@dataclass
class FrequencyScales:
    """Per-frequency scales s_k (K,) plus every choice needed to reproduce the normalization."""

    scales: np.ndarray
    percentile: float = 95.0
    magnitude: str = "per_real_value"
    transform: str = "signed_sqrt"
    channel_order: tuple[str, ...] = CHANNEL_ORDER
    clip: float | None = None
    min_scale: float = 1e-4
    raw_scales: np.ndarray | None = None
    fit: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        s = np.asarray(self.scales, dtype=np.float64)
        if s.ndim != 1 or s.shape[0] < 1:
            raise ValueError(f"scales must have shape (K,), got {s.shape}")
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError("scales must be finite and > 0")
        self.scales = s
        if self.raw_scales is not None:
            r = np.asarray(self.raw_scales, dtype=np.float64)
            if r.shape != s.shape:
                raise ValueError(f"raw_scales must have shape {s.shape}, got {r.shape}")
            self.raw_scales = r
        if not 0 < float(self.percentile) <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile}")
        self.percentile = float(self.percentile)
        if self.magnitude not in MAGNITUDES:
            raise ValueError(f"magnitude must be one of {MAGNITUDES}, got {self.magnitude!r}")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {self.transform!r}")
        self.channel_order = tuple(self.channel_order)
        if self.channel_order != CHANNEL_ORDER:
            raise ValueError(f"only channel order {CHANNEL_ORDER} is supported, got {self.channel_order}")
        if self.clip is not None:
            self.clip = float(self.clip)
            if not self.clip > 0:
                raise ValueError(f"clip must be > 0 or None, got {self.clip}")
        self.min_scale = float(self.min_scale)

    @property
    def num_freqs(self) -> int:
        return self.scales.shape[0]

    # -- serialization -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "scales": [float(v) for v in self.scales],
            "raw_scales": None if self.raw_scales is None else [float(v) for v in self.raw_scales],
            "percentile": self.percentile,
            "magnitude": self.magnitude,
            "transform": self.transform,
            "channel_order": list(self.channel_order),
            "clip": self.clip,
            "min_scale": self.min_scale,
            "fit": dict(self.fit),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FrequencyScales":
        if d.get("format") != FORMAT:
            raise ValueError(f"not a frequency-scales record (format {d.get('format')!r})")
        if d.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported frequency-scales version {d.get('version')!r}")
        return cls(
            scales=np.asarray(d["scales"], dtype=np.float64),
            percentile=d["percentile"],
            magnitude=d["magnitude"],
            transform=d["transform"],
            channel_order=tuple(d["channel_order"]),
            clip=d.get("clip"),
            min_scale=d["min_scale"],
            raw_scales=None if d.get("raw_scales") is None else np.asarray(d["raw_scales"], dtype=np.float64),
            fit=dict(d.get("fit") or {}),
        )

    def to_json(self) -> str:
        """JSON text (float64 values written with full precision: the round trip is exact)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FrequencyScales":
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FrequencyScales":
        with open(path, encoding="utf-8") as fh:
            return cls.from_json(fh.read())


class _BottomK:
    """Uniform random subsample (without replacement) of at most ``capacity`` values, streaming."""

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.capacity = capacity
        self.rng = rng
        self.values = np.empty(0, dtype=np.float64)
        self.keys = np.empty(0, dtype=np.float64)
        self.seen = 0

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        self.seen += values.shape[0]
        keys = self.rng.random(values.shape[0])
        if self.keys.shape[0] >= self.capacity:
            keep = keys < self.keys.max()  # cannot enter the bottom-k otherwise
            values, keys = values[keep], keys[keep]
        if values.shape[0] == 0:
            return
        self.values = np.concatenate([self.values, values])
        self.keys = np.concatenate([self.keys, keys])
        if self.keys.shape[0] > self.capacity:
            idx = np.argpartition(self.keys, self.capacity - 1)[: self.capacity]
            self.values, self.keys = self.values[idx], self.keys[idx]


def _magnitudes(S_k: np.ndarray, magnitude: str) -> np.ndarray:
    """The magnitudes bin k contributes, from S_k (..., 2, H, W) complex."""
    if magnitude == "per_real_value":
        return np.concatenate([np.abs(S_k.real).ravel(), np.abs(S_k.imag).ravel()])
    return np.abs(S_k).ravel()


def _as_volume(v) -> np.ndarray:
    S = np.asarray(getattr(v, "S", v))
    if S.ndim == 4:
        S = S[None]
    if S.ndim != 5 or S.shape[2] != 2 or not np.iscomplexobj(S):
        raise ValueError(f"volumes must be complex (K, 2, H, W) or (B, K, 2, H, W), got {S.dtype} {S.shape}")
    return S


def fit_scales(
    volumes: Iterable,
    percentile: float = 95.0,
    *,
    magnitude: str = "per_real_value",
    max_samples: int = 200_000,
    seed: int = 0,
    min_scale: float = 1e-4,
    clip: float | None = None,
) -> FrequencyScales:
    """Fit s_k = ``percentile`` of bin k's coefficient magnitudes over a stream of volumes.

    ``volumes`` yields complex (K, 2, H, W) arrays, (B, K, 2, H, W) batches or objects with an
    ``.S`` attribute (``SpectralVolume``); it is consumed once and never held (see module doc).
    """
    if magnitude not in MAGNITUDES:
        raise ValueError(f"magnitude must be one of {MAGNITUDES}, got {magnitude!r}")
    if max_samples < 1:
        raise ValueError("max_samples must be >= 1")
    rng = np.random.default_rng(seed)
    samplers: list[_BottomK] | None = None
    num_volumes = 0
    for item in volumes:
        S = _as_volume(item)
        K = S.shape[1]
        if samplers is None:
            samplers = [_BottomK(max_samples, rng) for _ in range(K)]
        elif K != len(samplers):
            raise ValueError(f"all volumes must have the same number of frequencies ({len(samplers)}), got {K}")
        if not np.all(np.isfinite(S)):
            raise ValueError("volumes contain NaN or Inf")
        for k in range(K):
            samplers[k].add(_magnitudes(S[:, k], magnitude))
        num_volumes += S.shape[0]
    if samplers is None:
        raise ValueError("fit_scales needs at least one volume")
    raw = np.array([np.percentile(s.values, percentile) for s in samplers], dtype=np.float64)
    exact = all(s.seen <= max_samples for s in samplers)
    return FrequencyScales(
        scales=np.maximum(raw, min_scale),
        percentile=percentile,
        magnitude=magnitude,
        clip=clip,
        min_scale=min_scale,
        raw_scales=raw,
        fit={
            "method": "exact" if exact else "bottom_k_subsample",
            "max_samples": int(max_samples),
            "seed": int(seed),
            "num_volumes": int(num_volumes),
            "num_values_per_freq": int(samplers[0].seen),
            "percentile_interpolation": "linear",
        },
    )


def _scales_of(scales) -> FrequencyScales:
    return scales if isinstance(scales, FrequencyScales) else FrequencyScales(np.asarray(scales, dtype=np.float64))


def normalize(S, scales) -> np.ndarray:
    """Spectral volume (..., K, 2, H, W) complex -> network channels (..., K, 4, H, W) float32.

    Channels per frequency are (x_re, y_re, x_im, y_im); each is sign(v/s_k) sqrt(|v/s_k|),
    clipped to [-clip, clip] only if ``scales.clip`` is set (default: no clipping).
    """
    sc = _scales_of(scales)
    S = np.asarray(S)
    K = sc.num_freqs
    if S.ndim < 4 or S.shape[-3] != 2 or S.shape[-4] != K:
        raise ValueError(f"spectral volume must have shape (..., {K}, 2, H, W), got {S.shape}")
    S = S.astype(np.complex128, copy=False)
    v = np.concatenate([S.real, S.imag], axis=-3) / sc.scales.reshape(K, 1, 1, 1)
    x = np.sign(v) * np.sqrt(np.abs(v))
    if sc.clip is not None:
        x = np.clip(x, -sc.clip, sc.clip)
    return x.astype(np.float32)


def denormalize(x, scales) -> np.ndarray:
    """Network channels (..., K, 4, H, W) -> spectral volume (..., K, 2, H, W) complex64.

    The exact inverse of ``normalize`` (up to float32 rounding) for unclipped values.
    """
    sc = _scales_of(scales)
    x = np.asarray(x, dtype=np.float64)
    K = sc.num_freqs
    if x.ndim < 4 or x.shape[-3] != 4 or x.shape[-4] != K:
        raise ValueError(f"normalized volume must have shape (..., {K}, 4, H, W), got {x.shape}")
    v = np.sign(x) * x * x * sc.scales.reshape(K, 1, 1, 1)
    return (v[..., 0:2, :, :] + 1j * v[..., 2:4, :, :]).astype(np.complex64)
