"""``image-dynamics evaluate-extraction``: how well ``extract`` recovers known motion.

CLIPS_DIR holds pairs clip_XXXXX.mkv (150 frames at 30 fps) + clip_XXXXX.npz (the ground-truth
spectral volume, image = frame 0), as written by ``image-dynamics synth``. For every clip and flow
method: extract, rebuild D_t for all 150 frames from both volumes (``spectral_to_motion``), and
measure per pixel the endpoint error |D_t - D_t^gt| averaged over t. Reported, averaged over clips:

- EPE moving: over pixels whose ground-truth mean motion mean_t |D_t^gt| exceeds 0.05 px
  (``--moving-px``; a twentieth of a pixel is below what flow resolves, so such pixels count as still);
- EPE static: over the other pixels;
- EPE boundary: over pixels within 2 px of a ground-truth motion discontinuity (neighbouring pixels
  whose displacement differs by more than 0.5 px at some frame: occlusion edges and object
  outlines), moving or not, and EPE thin: over moving pixels of structures narrower than 5 px
  (the moving mask minus its 5x5 morphological opening): where classical flow falls short;
- amplitude error per frequency k: mean over moving pixels of | |c_k S_k| - |c_k S_k^gt| | in px;
- seconds per clip (extraction only: reading the video + 149 flows + FFT).

Pixel sets are pooled per clip (each clip's mean counts once), so one big clip does not dominate.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time

import numpy as np

MOVING_PX = 0.05
EDGE_JUMP_PX = 0.5
EDGE_BAND_PX = 2
THIN_PX = 5


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate-extraction", help="measure extract against ground-truth synthetic clips",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips_dir", metavar="CLIPS_DIR", help="folder of clip_XXXXX.mkv + clip_XXXXX.npz pairs")
    p.add_argument("--method", default=None, metavar="NAME|all",
                   help="flow method to evaluate, a comma-separated list, or 'all' (default: the extract default)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate only the first N clips")
    p.add_argument("--json", default=None, metavar="OUT", help="also write all numbers to this JSON file")
    p.add_argument("--moving-px", type=float, default=MOVING_PX, metavar="PX",
                   help=f"ground-truth mean motion above which a pixel is moving (default {MOVING_PX})")
    p.add_argument("--no-gate", action="store_true",
                   help="switch off the zero-motion gate (to measure what it does; see extract/extractor.py)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def find_clips(clips_dir: str) -> list[tuple[str, str]]:
    """Sorted (video, truth) pairs: every clip_*.npz with a video of the same stem beside it."""
    pairs = []
    for truth in sorted(glob.glob(os.path.join(clips_dir, "clip_*.npz"))):
        stem = truth[: -len(".npz")]
        if stem.endswith(".partial"):
            continue
        for ext in (".mkv", ".mp4", ".avi", ".mov", ".webm"):
            if os.path.isfile(stem + ext):
                pairs.append((stem + ext, truth))
                break
    return pairs


def region_masks(d_true: np.ndarray, moving_px: float = MOVING_PX) -> dict[str, np.ndarray]:
    """Boolean (H, W) masks: moving, static, boundary (near a motion discontinuity), thin."""
    import cv2

    mag = np.linalg.norm(d_true, axis=1).mean(axis=0)
    moving = mag > moving_px
    h, w = mag.shape
    jump = np.zeros((h, w), bool)
    dx = np.linalg.norm(d_true[:, :, :, 1:] - d_true[:, :, :, :-1], axis=1).max(axis=0) > EDGE_JUMP_PX
    dy = np.linalg.norm(d_true[:, :, 1:, :] - d_true[:, :, :-1, :], axis=1).max(axis=0) > EDGE_JUMP_PX
    jump[:, 1:] |= dx
    jump[:, :-1] |= dx
    jump[1:, :] |= dy
    jump[:-1, :] |= dy
    k = 2 * EDGE_BAND_PX + 1
    boundary = cv2.dilate(jump.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
    opened = cv2.morphologyEx(moving.astype(np.uint8), cv2.MORPH_OPEN, np.ones((THIN_PX, THIN_PX), np.uint8)) > 0
    thin = moving & ~opened
    return {"moving": moving, "static": ~moving, "boundary": boundary, "thin": thin}


def compare(truth_S: np.ndarray, est_S: np.ndarray, moving_px: float = MOVING_PX) -> dict:
    """Per-clip error numbers of an estimated spectral volume against the ground truth."""
    from ..motion.spectral import amplitude, spectral_to_motion

    d_true = spectral_to_motion(truth_S)
    d_est = spectral_to_motion(est_S)
    epe = np.linalg.norm(d_est - d_true, axis=1).mean(axis=0)  # (H, W), mean over the 150 frames
    masks = region_masks(d_true, moving_px)
    out: dict = {}
    for name, m in masks.items():
        out[f"epe_{name}"] = float(epe[m].mean()) if m.any() else None
        out[f"frac_{name}"] = float(m.mean())
    amp_err = np.abs(amplitude(est_S) - amplitude(truth_S))  # (K, H, W)
    mov = masks["moving"]
    out["amp_err_per_freq"] = [float(a[mov].mean()) if mov.any() else None for a in amp_err]
    out["true_amp_per_freq"] = [float(a[mov].mean()) if mov.any() else None for a in amplitude(truth_S)]
    true_mean = np.linalg.norm(d_true, axis=1).mean(axis=0)
    out["true_mean_motion_moving"] = float(true_mean[mov].mean()) if mov.any() else 0.0
    return out


def _mean(values):
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def summarize(rows: list[dict]) -> dict:
    keys = ("epe_moving", "epe_static", "epe_boundary", "epe_thin", "seconds", "true_mean_motion_moving")
    s = {k: _mean([r.get(k) for r in rows]) for k in keys}
    for k in ("frac_moving", "frac_boundary", "frac_thin"):
        s[k] = _mean([r.get(k) for r in rows])
    num_freqs = len(rows[0]["amp_err_per_freq"]) if rows else 0
    s["amp_err_per_freq"] = [_mean([r["amp_err_per_freq"][k] for r in rows]) for k in range(num_freqs)]
    s["true_amp_per_freq"] = [_mean([r["true_amp_per_freq"][k] for r in rows]) for k in range(num_freqs)]
    s["clips"] = len(rows)
    return s


def _fmt(v, width=9, digits=3):
    return f"{'-':>{width}}" if v is None else f"{v:>{width}.{digits}f}"


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..extract.extractor import extract_volume
    from ..extract.flow import DEFAULT_METHOD, METHODS
    from ..motion.volume_file import VolumeFileError, load_volume

    if not os.path.isdir(args.clips_dir):
        raise UserError(f"no such folder: {args.clips_dir}",
                        "make clips with: image-dynamics synth --count 8 --out DIR")
    if args.method in (None, ""):
        methods = [DEFAULT_METHOD]
    elif args.method == "all":
        methods = list(METHODS)
    else:
        methods = [m.strip() for m in args.method.split(",") if m.strip()]
        bad = [m for m in methods if m not in METHODS]
        if bad:
            raise UserError(f"unknown flow method(s): {', '.join(bad)}", "choose from: all, " + ", ".join(METHODS))
    clips = find_clips(args.clips_dir)
    if args.limit is not None:
        if args.limit < 1:
            raise UserError("--limit must be at least 1")
        clips = clips[: args.limit]
    if not clips:
        raise UserError(f"no clip_XXXXX.npz + clip_XXXXX.mkv pairs in {args.clips_dir}",
                        "make clips with: image-dynamics synth --count 8 --out DIR")

    truths = {}
    for video, truth_path in clips:
        try:
            truths[truth_path] = load_volume(truth_path)
        except VolumeFileError as exc:
            raise UserError(str(exc)) from None

    results: dict[str, dict] = {}
    for method in methods:
        rows = []
        for video, truth_path in clips:
            truth = truths[truth_path]
            t0 = time.perf_counter()
            est = extract_volume(video, start_frame=0, size=(truth.width, truth.height), method=method,
                                 progress=not args.no_progress, gate=not args.no_gate)
            seconds = time.perf_counter() - t0
            row = compare(truth.S, est.S, args.moving_px)
            row.update(clip=os.path.basename(video), seconds=seconds)
            rows.append(row)
            print(f"  {method:<14}{row['clip']:<18} EPE moving {_fmt(row['epe_moving'], 6)} px, "
                  f"static {_fmt(row['epe_static'], 6)} px, {seconds:5.1f} s", flush=True)
        results[method] = {"summary": summarize(rows), "clips": rows}

    first = next(iter(results.values()))["summary"]
    print()
    print(f"{len(clips)} clips; moving = ground-truth mean motion > {args.moving_px:g} px "
          f"({100 * first['frac_moving']:.1f}% of pixels, "
          f"true mean motion there {first['true_mean_motion_moving']:.2f} px); "
          f"boundary = within {EDGE_BAND_PX} px of a motion discontinuity ({100 * first['frac_boundary']:.1f}%); "
          f"thin = moving structures under {THIN_PX} px wide ({100 * first['frac_thin']:.1f}%)")
    print(f"{'method':<15}{'EPE moving':>11}{'static':>9}{'boundary':>10}{'thin':>9}{'s/clip':>9}")
    for method, res in results.items():
        s = res["summary"]
        print(f"{method:<15}{_fmt(s['epe_moving'], 11)}{_fmt(s['epe_static'])}{_fmt(s['epe_boundary'], 10)}"
              f"{_fmt(s['epe_thin'])}{_fmt(s['seconds'], 9, 1)}")
    print("\namplitude error per frequency k (mean | |c_k S_k| - |c_k S_k^gt| | over moving pixels, px)")
    num_freqs = len(first["amp_err_per_freq"])
    print(f"{'k':<15}" + "".join(f"{k:>6d}" for k in range(num_freqs)))
    print(f"{'true amplitude':<15}" + "".join(_fmt(v, 6, 2) for v in first["true_amp_per_freq"]))
    for method, res in results.items():
        print(f"{method:<15}" + "".join(_fmt(v, 6, 2) for v in res["summary"]["amp_err_per_freq"]))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"moving_px": args.moving_px, "methods": results}, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0
