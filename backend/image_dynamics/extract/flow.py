"""Dense optical flow methods for motion extraction: one registry, one signature.

``make_flow(name)`` returns a callable ``flow(frame0, frame_t, init=None) -> (H, W, 2) float32``
(x, y) such that the point at pixel p in ``frame0`` is at ``p + flow[p]`` in ``frame_t``. Frames
are RGB uint8 (H, W, 3) or grey uint8 (H, W). ``init`` is an optional initial guess of the same
flow (used by the methods that accept one; ignored by the others).

Default: ``dis_fine`` (DIS, the medium preset run down to full resolution with 10 variational
refinement iterations), chosen by measured accuracy, speed as tie-break.

Measured with ``image-dynamics evaluate-extraction`` (long-range flow 0->t with warm start, zero-
motion gate on, K = 16 reconstruction of all 150 frames vs the ground truth), 8 held-out synthetic
clips (``image-dynamics synth --count 8 --seed 1000``: laundry, flags, garden, trees, 3 meadows,
reeds; 256x160, camera blur and sensor noise on; 11.6 % of pixels move, mean 0.61 px there).
EPE = endpoint error in px, mean over t; "moving" = true mean motion > 0.05 px; s/clip on 2 busy
shared cores (the load varied: compare within a column block, and see ``bench/extract_speed.py``):

    method          EPE moving  static  boundary  thin   s/clip
    dis_fine  *        0.238    0.078    0.271    0.247     4.3
    tvl1_fast          0.240    0.068    0.253    0.244    34.2
    deepflow           0.276    0.056    0.229    0.279    19.6
    dis_medium         0.284    0.067    0.258    0.281     1.5
    pcaflow            0.291    0.059    0.250    0.281     5.3
    rlof               0.310    0.059    0.246    0.297    19.0
    farneback          0.331    0.096    0.374    0.314     3.1
    dis_ultrafast      0.344    0.060    0.268    0.315     1.2
    dis_fast           0.349    0.052    0.246    0.319     1.0
    tvl1 (OpenCV defaults; tuning set only, 8 other clips)   0.187 / 0.017 at 213 s/clip, vs
        dis_fine 0.222 / 0.033 and deepflow 0.218 / 0.018 on that set: too slow for batch use.

Amplitude error per frequency (mean | |c_k S_k| - |c_k S_k^gt| |, moving pixels), dis_fine,
k = 0..15: 0.16 0.10 0.09 0.06 0.05 0.04 0.03 0.02 0.02 0.02 0.02 0.01 0.01 0.01 0.01 0.01
(true mean amplitudes 0.53 0.26 0.28 0.18 0.12 0.16 0.17 0.06 0.03 0.02 ...).

Real photos warped by a known smooth band-limited field (no occlusions, mean 1.45 px on the moving
30 %), 128x80, 10 photo/seed pairs: dis_fine 0.135-0.27 px moving (mean 0.18), < 0.01 static;
dis_medium 0.28-0.46 px: at small sizes DIS needs the full-resolution scale. At 256x160 (2 clips,
up to 10 px sway) dis_fine 0.24 / 0.10, deepflow 0.18 / 0.10 at 6x the time, dis_medium 0.42 / 0.20,
farneback 1.29 / 0.99 (OpenCV defaults).

What helped and what did not (dis_fine unless said):
- zero-motion gate (``extractor.ZeroMotionGate``): static 0.278 -> 0.078 px on the held-out clips,
  moving 0.234 -> 0.238. Without it flat sky and walls pick up noise-driven flow (0.4-0.6 px).
- warm start from the flow 0->(t-1): 0.243 -> 0.237 moving on a 10 px sway; never worse. Kept.
- 5x5 median filter of each flow: 0.237 -> 0.234; not worth a default.
- the K = 16 truncation itself: 0.26 -> 0.24 (flow errors are mostly systematic, not white).
- DIS tuning (patch 6, no mean normalisation, more refinement): +-0.02, not consistent.
- edge-aware filling of low-confidence flow from confident neighbours: static 2x worse. Dropped.
- TV-L1 wins on large piecewise-rigid motion (laundry in a storm: 0.53 vs 0.66) and loses on
  smooth deformation (yellow-flower warp: 0.51-0.66 vs 0.30); ``tvl1_fast`` (0.240 held-out) runs
  at ~1/3 of the default TV-L1's cost.

Where extraction falls short (dis_fine, held-out set): pixels within 2 px of a motion
discontinuity 0.27 px, thin (< 5 px) moving structures 0.25 px; windy trees (clip 1003, 2.1 px mean
motion) 0.40 px moving and 0.20 px static (background next to swaying branches that cover and
uncover it: flow follows the occluder); a windy meadow of thin blades 0.45 px. Motion below about
0.1 px in flat texture is under the sensor noise and reads as 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# cv2 is imported where a flow is made or run, not here: the CLI reads METHODS to register its
# options, and importing OpenCV costs ~150 ms at every start of every command.

FlowFn = Callable[..., np.ndarray]


@dataclass(frozen=True)
class FlowMethod:
    name: str
    description: str
    factory: Callable[[], FlowFn]
    uses_init: bool  # whether ``init`` is used as a starting point


def _gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    frame = np.asarray(frame)
    if frame.ndim == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frame)


def _as_flow(flow: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(flow, dtype=np.float32)


def _dis(preset: str, finest_scale: int | None = None, vr_iters: int | None = None) -> Callable[[], FlowFn]:
    """``preset``: the name of an OpenCV ``DISOpticalFlow_PRESET_*`` constant."""

    def factory() -> FlowFn:
        import cv2

        dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOpticalFlow_PRESET_{preset}"))
        if finest_scale is not None:
            dis.setFinestScale(finest_scale)
        if vr_iters is not None:
            dis.setVariationalRefinementIterations(vr_iters)

        def flow(frame0: np.ndarray, frame_t: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
            g0, g1 = _gray(frame0), _gray(frame_t)
            # DIS starts from the flow passed in whenever it has the right size and type.
            buf = _as_flow(init).copy() if init is not None else None
            return _as_flow(dis.calc(g0, g1, buf))

        return flow

    return factory


def _deepflow() -> FlowFn:
    import cv2

    df = cv2.optflow.createOptFlow_DeepFlow()

    def flow(frame0: np.ndarray, frame_t: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        return _as_flow(df.calc(_gray(frame0), _gray(frame_t), None))

    return flow


def _farneback() -> FlowFn:
    import cv2

    def flow(frame0: np.ndarray, frame_t: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        g0, g1 = _gray(frame0), _gray(frame_t)
        flags = cv2.OPTFLOW_FARNEBACK_GAUSSIAN
        buf = None
        if init is not None:
            buf = _as_flow(init).copy()
            flags |= cv2.OPTFLOW_USE_INITIAL_FLOW
        return _as_flow(cv2.calcOpticalFlowFarneback(g0, g1, buf, 0.5, 5, 15, 5, 7, 1.5, flags))

    return flow


def _tvl1(fast: bool = False) -> FlowFn:
    import cv2

    tv = cv2.optflow.DualTVL1OpticalFlow_create()
    if fast:  # 4 scales x 3 warps x 5 x 15 iterations instead of 5 x 5 x 10 x 30: ~2.7x faster
        tv.setScalesNumber(4)
        tv.setWarpingsNumber(3)
        tv.setOuterIterations(5)
        tv.setInnerIterations(15)
        tv.setEpsilon(0.02)

    def flow(frame0: np.ndarray, frame_t: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        g0, g1 = _gray(frame0), _gray(frame_t)
        if init is not None:
            tv.setUseInitialFlow(True)
            return _as_flow(tv.calc(g0, g1, _as_flow(init).copy()))
        tv.setUseInitialFlow(False)
        return _as_flow(tv.calc(g0, g1, None))

    return flow


def _pcaflow() -> FlowFn:
    import cv2

    pca = cv2.optflow.createOptFlow_PCAFlow()

    def flow(frame0: np.ndarray, frame_t: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        return _as_flow(pca.calc(_gray(frame0), _gray(frame_t), None))

    return flow


def _rlof() -> FlowFn:
    import cv2

    def flow(frame0: np.ndarray, frame_t: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        f0 = frame0 if np.ndim(frame0) == 3 else cv2.cvtColor(frame0, cv2.COLOR_GRAY2RGB)
        f1 = frame_t if np.ndim(frame_t) == 3 else cv2.cvtColor(frame_t, cv2.COLOR_GRAY2RGB)
        return _as_flow(cv2.optflow.calcOpticalFlowDenseRLOF(np.ascontiguousarray(f0), np.ascontiguousarray(f1), None))

    return flow


METHODS: dict[str, FlowMethod] = {
    m.name: m
    for m in (
        FlowMethod("dis_ultrafast", "DIS, ultrafast preset (no variational refinement)",
                   _dis("ULTRAFAST"), True),
        FlowMethod("dis_fast", "DIS, fast preset (coarse-to-fine patches + variational refinement)",
                   _dis("FAST"), True),
        FlowMethod("dis_medium", "DIS, medium preset (denser patches, finer scale, variational refinement)",
                   _dis("MEDIUM"), True),
        FlowMethod("dis_fine", "DIS, medium preset down to full resolution with 10 refinement iterations",
                   _dis("MEDIUM", finest_scale=0, vr_iters=10), True),
        FlowMethod("deepflow", "DeepFlow (Weinzaepfel et al. 2013): variational coarse-to-fine",
                   _deepflow, False),
        FlowMethod("farneback", "Farneback polynomial expansion, 5 pyramid levels", _farneback, True),
        FlowMethod("tvl1", "Dual TV-L1 (Zach et al. 2007), OpenCV defaults", _tvl1, True),
        FlowMethod("tvl1_fast", "Dual TV-L1 with fewer scales, warps and iterations (relies on the warm start)",
                   lambda: _tvl1(fast=True), True),
        FlowMethod("pcaflow", "PCA-Flow (Wulff & Black 2015), sparse matches + learned PCA basis", _pcaflow, False),
        FlowMethod("rlof", "Dense RLOF (robust local optical flow, interpolated)", _rlof, False),
    )
}

DEFAULT_METHOD = "dis_fine"


def method_names() -> list[str]:
    return list(METHODS)


def make_flow(name: str) -> FlowFn:
    """A fresh flow callable for method ``name`` (methods keep state; use one per thread)."""
    from ..errors import UserError

    if name not in METHODS:
        raise UserError(f"unknown flow method {name!r}", "choose one of: " + ", ".join(METHODS))
    return METHODS[name].factory()
