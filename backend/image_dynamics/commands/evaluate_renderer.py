"""``image-dynamics evaluate-renderer``: rendered frames vs the true frames of held-out procedural clips.

    image-dynamics evaluate-renderer [--clips 8] [--model models/renderer] [--out runs/evaluate_renderer]
        [--renderers splat,mesh,backward] [--magnify 1] [--seed0 2000100000] [--device cpu]

For each held-out scene (seeds from ``--seed0``, disjoint from every training seed and from the
held-out scenes the trainer monitors) the generator renders the true 150-frame clip and gives the
exact motion D_t of frame 0's pixels; every renderer then draws all 150 frames from frame 0 and
that motion, in one run. Scores per frame (frames 1..149; frame 0 is the input itself):
PSNR and SSIM (``render.quality``) over the whole frame, and PSNR over the moving region (pixels
whose mean |D_t| over the clip exceeds 0.5 px). Writes ``per_frame.csv`` (means over clips per
frame), ``curves.png`` (those curves), ``summary.json``, and prints the summary table and whether
the splat renderer beats mesh warping on both PSNR and SSIM.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path

import numpy as np

from ..errors import UserError

MOVING_PX = 0.5
COLOURS = {"splat": (200, 40, 40), "mesh": (30, 110, 200), "backward": (40, 160, 60)}


def register(sub) -> None:
    p = sub.add_parser("evaluate-renderer", help="PSNR / SSIM of the frame renderers on held-out procedural clips",
                       description=__doc__.split("\n\n", 1)[0], epilog=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=8, help="held-out clips (default 8)")
    p.add_argument("--model", default=None, help="splat renderer model folder (default models/renderer)")
    p.add_argument("--renderers", default="splat,mesh,backward", help="comma list (default splat,mesh,backward)")
    p.add_argument("--out", default="runs/evaluate_renderer", help="folder for the CSV, plot and JSON")
    p.add_argument("--magnify", type=float, default=1.0, help="scale the true motion (default 1: as generated)")
    p.add_argument("--seed0", type=int, default=2_000_100_000, help="first held-out seed (default 2000100000)")
    p.add_argument("--size", default="256x160", help="clip size WxH (default 256x160)")
    p.add_argument("--device", default="cpu", help="torch device for the renderers (default cpu)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _score(frames: np.ndarray, truth: np.ndarray, moving: np.ndarray) -> dict[str, np.ndarray]:
    import torch

    from ..render.quality import psnr, ssim

    a = torch.from_numpy(frames).permute(0, 3, 1, 2).double() / 255.0
    b = torch.from_numpy(truth).permute(0, 3, 1, 2).double() / 255.0
    out = {"psnr": psnr(a, b).numpy(), "ssim": ssim(a, b).numpy()}
    if moving.any():
        err = ((a - b) ** 2).mean(dim=1)[:, torch.from_numpy(moving)]
        out["psnr_moving"] = (10 * torch.log10(1 / err.mean(dim=1).clamp_min(1e-12))).numpy()
    else:
        out["psnr_moving"] = np.full(len(frames), np.nan)
    return out


def _plot(curves: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    from ..viz import save_png, trajectory_plot

    panels = []
    for metric, title in (("psnr", "PSNR dB"), ("ssim", "SSIM x100"), ("psnr_moving", "moving PSNR dB")):
        data = {}
        for name, c in curves.items():
            v = c[metric] * (100.0 if metric == "ssim" else 1.0)
            if np.all(np.isfinite(v)):
                data[name] = (v, COLOURS.get(name, (0, 0, 0)))
        if data:
            panels.append(trajectory_plot(data, size=(760, 200), title=title + " vs frame (1..149)"))
    save_png(str(path), np.concatenate(panels, axis=0))


def run(args) -> int:
    import cv2
    import torch
    from tqdm import tqdm

    from ..render import RENDERERS, make_renderer
    from ..synth import make_scene

    torch.set_num_threads(max(1, torch.get_num_threads()))
    cv2.setNumThreads(1)
    names = [n.strip() for n in args.renderers.split(",") if n.strip()]
    if not names or any(n not in RENDERERS for n in names) or len(set(names)) != len(names):
        raise UserError(f"--renderers must list distinct names among {', '.join(RENDERERS)}, got {args.renderers!r}")
    if args.clips < 1:
        raise UserError("--clips must be at least 1")
    if not 0 < args.magnify <= 10:
        raise UserError("--magnify must be in (0, 10]")
    try:
        W, H = (int(x) for x in args.size.lower().split("x"))
    except ValueError:
        raise UserError(f"--size must look like 256x160, got {args.size!r}")
    if args.seed0 < 2_000_000_000:
        raise UserError("--seed0 must be at least 2000000000 (lower seeds are training seeds)")
    renderers = {n: make_renderer(n, model_dir=args.model if n == "splat" else None, device=args.device)
                 for n in names}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    scores: dict[str, dict[str, list[np.ndarray]]] = {n: {"psnr": [], "ssim": [], "psnr_moving": []} for n in names}
    seconds = {n: 0.0 for n in names}
    clips = []
    bar = tqdm(range(args.clips), desc="clips", unit="clip", disable=args.no_progress)
    for i in bar:
        seed = args.seed0 + i
        scene = make_scene(seed, W, H)
        if args.magnify != 1.0:
            scene.A = (scene.A * np.float32(args.magnify)).astype(np.complex64)
        truth = scene.render_clip()  # (150, H, W, 3)
        disp = scene.displacement_gt()  # (150, 2, H, W)
        mag = np.sqrt((disp ** 2).sum(axis=1))  # (150, H, W) |D_t| in pixels
        moving = mag.mean(axis=0) > MOVING_PX
        clips.append({"seed": seed, "recipe": scene.recipe, "moving_fraction": float(moving.mean()),
                      "max_motion_px": float(mag.max())})
        for n, r in renderers.items():
            t0 = time.perf_counter()
            frames = r.render(truth[0], disp)
            seconds[n] += time.perf_counter() - t0
            s = _score(frames[1:], truth[1:], moving)
            for k, v in s.items():
                scores[n][k].append(v)
            clips[-1][n] = {k: float(np.nanmean(v)) for k, v in s.items()}
    n_frames = len(scores[names[0]]["psnr"][0])
    curves = {n: {k: np.nanmean(np.stack(v), axis=0) if not np.all(np.isnan(np.stack(v))) else np.full(n_frames, np.nan)
                  for k, v in scores[n].items()} for n in names}
    summary = {}
    for n in names:
        summary[n] = {k: float(np.nanmean(np.stack(v))) if not np.all(np.isnan(np.stack(v))) else None
                      for k, v in scores[n].items()}
        summary[n]["fps"] = args.clips * (n_frames + 1) / max(seconds[n], 1e-9)

    with open(out / "per_frame.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame"] + [f"{k}_{n}" for n in names for k in ("psnr", "ssim", "psnr_moving")])
        for t in range(n_frames):
            w.writerow([t + 1] + [f"{curves[n][k][t]:.5f}" for n in names for k in ("psnr", "ssim", "psnr_moving")])
    _plot(curves, out / "curves.png")

    verdict = None
    if "splat" in names and "mesh" in names:
        dp = summary["splat"]["psnr"] - summary["mesh"]["psnr"]
        ds = summary["splat"]["ssim"] - summary["mesh"]["ssim"]
        verdict = {"psnr_gain_db": dp, "ssim_gain": ds, "beats_mesh": bool(dp > 0 and ds > 0)}
    model_meta = None
    if "splat" in renderers:
        model_meta = {"dir": str(renderers["splat"].model_dir),
                      "trained_steps": renderers["splat"].net.config.meta.get("trained_steps")}
    report = {"clips": clips, "summary": summary, "verdict": verdict, "seed0": args.seed0, "count": args.clips,
              "magnify": args.magnify, "size": [W, H], "frames_scored": "1..149", "moving_threshold_px": MOVING_PX,
              "model": model_meta, "device": args.device, "machine": platform.platform(),
              "torch_threads": torch.get_num_threads()}
    (out / "summary.json").write_text(json.dumps(report, indent=1))

    print(f"{args.clips} held-out clips (seeds {args.seed0}..{args.seed0 + args.clips - 1}), {W}x{H}, "
          f"magnify {args.magnify:g}, frames 1..149 vs the true frames")
    print(f"{'renderer':<10} {'PSNR dB':>8} {'SSIM':>7} {'moving PSNR':>12} {'fps':>7}")
    for n in names:
        s = summary[n]
        mv = f"{s['psnr_moving']:.2f}" if s["psnr_moving"] is not None else "n/a"
        print(f"{n:<10} {s['psnr']:>8.2f} {s['ssim']:>7.4f} {mv:>12} {s['fps']:>7.1f}")
    if verdict:
        word = "beats" if verdict["beats_mesh"] else "does NOT beat"
        print(f"splat {word} mesh warp: PSNR {verdict['psnr_gain_db']:+.2f} dB, SSIM {verdict['ssim_gain']:+.4f}")
    print(f"wrote {out / 'per_frame.csv'}, {out / 'curves.png'}, {out / 'summary.json'}")
    return 0
