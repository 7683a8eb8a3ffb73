"""Scores of predicted spectral volumes against the truth. Pure numpy, no torch.

Every volume is a canonical spectral volume S (K, 2, H, W) complex (``motion.spectral``). A
predicted volume must be at the truth's resolution (resample it first).

Definitions (the model card quotes these numbers, so they are spelled out exactly):

* **Normalized amplitude** ``a = sqrt(|S_kc(p)| / s_k)``: per frequency k, per axis c (x or y) and
  pixel p, the complex modulus of the coefficient, divided by the model's frequency scale s_k and
  passed through the same sign-keeping square root as the model space (``motion.normalize``; the
  modulus is >= 0, so the sign is always +). Taking the modulus first makes every score below
  **phase-invariant**: a sample whose oscillations have the right amplitudes but another timing
  scores perfectly, which is what a stochastic predictor can be asked for.
* **Amplitude L1** ``mean_{k, c, p} |a_pred - a_true|`` over all pixels (whole image) or over the
  truly moving pixels only (moving L1; undefined, NaN, when nothing moves).
* **Moving-region mask**: pixels whose mean displacement magnitude over the T frames of the
  window, ``mean_t |D_t(p)|`` with D from the modal sum (the same quantity as
  ``spectral.mean_motion_magnitude``), exceeds ``threshold`` = 0.5 px. Computed exactly (all T
  frames) in float32 matrix products, ~4x faster than the inverse-FFT path. **Mask IoU** is
  |A and B| / |A or B|, and 1 when both masks are empty.
* **Power per frequency** ``P_k = sum_{c, p} |S_kc(p)|^2``; the **power ratio** per k is the
  predicted power summed over the test set divided by the true power summed over the test set
  (ratio of totals, so images without motion at some k do not divide by zero).
* **Loop closure** for a loop of L frames: ``loops.loop_closure_error`` (mean over pixels of
  |D(L) - D(0)|, pixels).
* **Diversity**: mean over the pairs of samples (different seeds, same image) of their amplitude
  L1; the phase-aware variant uses the normalized complex values (sign-keeping square root of
  Re and Im / s_k) instead, so it also sees samples that differ only in timing.
"""

from __future__ import annotations

from itertools import combinations
from typing import Iterable, Sequence

import numpy as np

from ..motion.loops import loop_closure_error
from ..motion.spectral import NUM_FRAMES, time_basis

__all__ = [
    "MOVING_THRESHOLD_PX",
    "BAR",
    "scales_array",
    "normalized_amplitude",
    "amplitude_l1",
    "mean_motion_magnitude_fast",
    "moving_mask",
    "mask_iou",
    "power_per_frequency",
    "power_ratio",
    "loop_closure_errors",
    "diversity",
    "bar_check",
    "ScoreAccumulator",
]

MOVING_THRESHOLD_PX = 0.5
# The model card's bar: whole-image L1 at least 40 % below the better trivial baseline, moving L1
# at least 40 % below the mean prior's, mask IoU at least 0.7.
BAR = {"whole_l1_gain": 0.4, "moving_l1_gain": 0.4, "mask_iou": 0.7}


def _volume(S) -> np.ndarray:
    S = np.asarray(S)
    if S.ndim != 4 or S.shape[1] != 2:
        raise ValueError(f"spectral volume must have shape (K, 2, H, W), got {S.shape}")
    return S


def scales_array(scales, num_freqs: int | None = None) -> np.ndarray:
    """s_k (K,) float64 from a ``FrequencyScales`` or an array; checked positive."""
    s = np.asarray(getattr(scales, "scales", scales), dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError("frequency scales must be finite and > 0")
    if num_freqs is not None and s.shape[0] != num_freqs:
        raise ValueError(f"{s.shape[0]} frequency scales for a volume of {num_freqs} frequencies")
    return s


def normalized_amplitude(S, scales) -> np.ndarray:
    """``sqrt(|S_kc(p)| / s_k)`` (K, 2, H, W) float64: phase-invariant, in model-space units."""
    S = _volume(S)
    s = scales_array(scales, S.shape[0])
    return np.sqrt(np.abs(S).astype(np.float64) / s[:, None, None, None])


def _normalized_complex(S, scales) -> np.ndarray:
    S = _volume(S)
    s = scales_array(scales, S.shape[0])[:, None, None, None]
    re, im = S.real.astype(np.float64) / s, S.imag.astype(np.float64) / s
    return np.stack([np.sign(re) * np.sqrt(np.abs(re)), np.sign(im) * np.sqrt(np.abs(im))])


def amplitude_l1(S_pred, S_true, scales, mask=None) -> float:
    """Mean |a_pred - a_true| over k, axes and the pixels of ``mask`` (all pixels if None).

    An empty mask gives NaN (nothing to score).
    """
    S_pred, S_true = _volume(S_pred), _volume(S_true)
    if S_pred.shape != S_true.shape:
        raise ValueError(f"predicted volume {S_pred.shape} and truth {S_true.shape} differ in shape")
    diff = np.abs(normalized_amplitude(S_pred, scales) - normalized_amplitude(S_true, scales))
    if mask is None:
        return float(diff.mean())
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != S_true.shape[2:]:
        raise ValueError(f"mask {mask.shape} does not match the volume's pixels {S_true.shape[2:]}")
    if not mask.any():
        return float("nan")
    return float(diff[:, :, mask].mean())


def mean_motion_magnitude_fast(S, num_frames: int = NUM_FRAMES, chunk: int = 65536) -> np.ndarray:
    """``mean_t |D_t(p)|`` (H, W) float32 over all ``num_frames`` frames, exact, float32 products."""
    S = _volume(S)
    K, _, H, W = S.shape
    q = time_basis(np.arange(num_frames), K, num_frames)  # (T, K)
    qr, qi = q.real.astype(np.float32), q.imag.astype(np.float32)
    flat = S.reshape(K, 2, H * W)
    out = np.zeros(H * W, dtype=np.float32)
    if not np.any(S):
        return out.reshape(H, W)
    for p0 in range(0, H * W, chunk):
        sl = slice(p0, p0 + chunk)
        dx = qr @ flat[:, 0, sl].real.astype(np.float32) - qi @ flat[:, 0, sl].imag.astype(np.float32)
        dy = qr @ flat[:, 1, sl].real.astype(np.float32) - qi @ flat[:, 1, sl].imag.astype(np.float32)
        out[sl] = np.sqrt(dx * dx + dy * dy).mean(axis=0)
    return out.reshape(H, W)


def moving_mask(S, threshold: float = MOVING_THRESHOLD_PX, num_frames: int = NUM_FRAMES) -> np.ndarray:
    """Pixels whose mean displacement magnitude over the window exceeds ``threshold`` pixels."""
    return mean_motion_magnitude_fast(S, num_frames) > threshold


def mask_iou(a, b) -> float:
    """Intersection over union of two boolean masks; 1.0 when both are empty."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def power_per_frequency(S) -> np.ndarray:
    """``P_k = sum over axes and pixels of |S_kc(p)|^2`` (K,) float64 (phase-invariant)."""
    S = _volume(S)
    return (np.abs(S).astype(np.float64) ** 2).sum(axis=(1, 2, 3))


def power_ratio(power_pred, power_true) -> np.ndarray:
    """Elementwise predicted / true power (K,); NaN where the truth has no power."""
    p, t = np.asarray(power_pred, dtype=np.float64), np.asarray(power_true, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(t > 0, p / np.where(t > 0, t, 1.0), np.nan)


def loop_closure_errors(S, loop_frames: Iterable[float], num_frames: int = NUM_FRAMES) -> dict[float, float]:
    """{L: mean |D(L) - D(0)| in pixels} for each loop length L (frames)."""
    return {float(L): loop_closure_error(S, float(L), num_frames) for L in loop_frames}


def diversity(samples: Sequence, scales, phase_aware: bool = False) -> float:
    """Mean pairwise L1 between samples of one image (amplitude space, or normalized complex).

    NaN with fewer than two samples.
    """
    if len(samples) < 2:
        return float("nan")
    if phase_aware:
        reps = [_normalized_complex(s, scales) for s in samples]
    else:
        reps = [normalized_amplitude(s, scales) for s in samples]
    return float(np.mean([np.abs(a - b).mean() for a, b in combinations(reps, 2)]))


def bar_check(model: dict, zero: dict, mean_prior: dict) -> dict:
    """The model card's bar, from aggregated scores (``ScoreAccumulator.summary()`` dicts).

    Returns each criterion with the measured value, the limit and whether it passes.
    """
    best_trivial = min(zero["l1"], mean_prior["l1"])
    whole_limit = (1.0 - BAR["whole_l1_gain"]) * best_trivial
    moving_limit = (1.0 - BAR["moving_l1_gain"]) * mean_prior["l1_moving"]
    checks = {
        "whole_l1": {
            "value": model["l1"],
            "limit": whole_limit,
            "rule": "whole-image L1 at least 40% below the better trivial baseline",
            "pass": bool(model["l1"] <= whole_limit),
        },
        "moving_l1": {
            "value": model["l1_moving"],
            "limit": moving_limit,
            "rule": "moving-pixel L1 at least 40% below the mean prior's",
            "pass": bool(model["l1_moving"] <= moving_limit),
        },
        "mask_iou": {
            "value": model["mask_iou"],
            "limit": BAR["mask_iou"],
            "rule": "moving-region mask IoU >= 0.7",
            "pass": bool(model["mask_iou"] >= BAR["mask_iou"]),
        },
    }
    checks["all_pass"] = all(c["pass"] for c in checks.values())
    return checks


class ScoreAccumulator:
    """Per-method running scores over a test set.

    ``add(S_pred, S_true, true_mask=None, pred_mask=None)`` scores one prediction (the masks may be
    passed to avoid recomputing them, e.g. the truth's for every method, or an image-blind prior's). ``summary()`` gives the mean over images
    of the whole-image L1, of the moving L1 (images where nothing moves are skipped) and of the
    mask IoU, plus the ratio of total powers per frequency.
    """

    def __init__(self, scales, threshold: float = MOVING_THRESHOLD_PX, num_frames: int = NUM_FRAMES) -> None:
        self.scales = scales_array(scales)
        self.threshold = float(threshold)
        self.num_frames = int(num_frames)
        self.l1: list[float] = []
        self.l1_moving: list[float] = []
        self.iou: list[float] = []
        self.power_pred = np.zeros(self.scales.shape[0])
        self.power_true = np.zeros(self.scales.shape[0])

    def add(self, S_pred, S_true, true_mask=None, pred_mask=None) -> dict:
        if true_mask is None:
            true_mask = moving_mask(S_true, self.threshold, self.num_frames)
        if pred_mask is None:
            pred_mask = moving_mask(S_pred, self.threshold, self.num_frames)
        row = {
            "l1": amplitude_l1(S_pred, S_true, self.scales),
            "l1_moving": amplitude_l1(S_pred, S_true, self.scales, true_mask),
            "mask_iou": mask_iou(pred_mask, true_mask),
        }
        self.l1.append(row["l1"])
        if not np.isnan(row["l1_moving"]):
            self.l1_moving.append(row["l1_moving"])
        self.iou.append(row["mask_iou"])
        self.power_pred += power_per_frequency(S_pred)
        self.power_true += power_per_frequency(S_true)
        return row

    def __len__(self) -> int:
        return len(self.l1)

    def summary(self) -> dict:
        def mean(v):
            return float(np.mean(v)) if v else float("nan")

        return {
            "count": len(self.l1),
            "count_moving": len(self.l1_moving),
            "l1": mean(self.l1),
            "l1_moving": mean(self.l1_moving),
            "mask_iou": mean(self.iou),
            "power_ratio": [float(v) for v in power_ratio(self.power_pred, self.power_true)],
        }
