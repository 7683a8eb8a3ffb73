"""``image-dynamics evaluate-ceilings``: the best scores any predictor of a kind could reach.

    image-dynamics evaluate-ceilings [--model models/default] [--vae RUN_OR_CHECKPOINT]
        [--data data/synth] [--limit 60] [--json OUT.json]

On the same held-out pairs and with the same scores as ``evaluate`` (``evaluation/metrics.py``),
scores oracles that see the true motion but lose one thing each (``evaluation/ceilings.py``):
the model's resolution (truth -> model grid -> back), the model's VAE (truth -> VAE -> back),
another VAE (``--vae``, e.g. a longer-trained run), and the scene's wind level, which no photo
shows (the truth rescaled by the median level, and by a level drawn from the generator). Zero
motion is scored alongside, and the bar's limits are printed, so the table says which parts of
the bar a model of this resolution, with this VAE, on this data, can reach at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate-ceilings", help="upper bounds on the predictor's scores (oracles on held-out pairs)",
                       description=__doc__.split("\n\n", 1)[0], epilog=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model folder (default: models/default): its grid, VAE and scales")
    p.add_argument("--vae", default=None, help="also score this VAE run or checkpoint folder")
    p.add_argument("--data", default=None, help="shard dataset with a test split (default data/synth)")
    p.add_argument("--limit", type=int, default=60, help="first N test pairs (0 = all; default 60)")
    p.add_argument("--wind-draws", type=int, default=20000, help="samples of the generator's wind levels (default 20000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the wind draws")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--json", default=None, metavar="OUT", help="write every number to this JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..evaluation import metrics as M
    from ..evaluation.ceilings import resolution_roundtrip, vae_roundtrip, wind_blind
    from ..model.locate import resolve_model_dir
    from ..model.pipeline import MotionPredictor
    from ..synth.dataset import ShardDataset
    from ..synth.scene import make_scene, wind_level_distribution
    from ..evaluation.report import default_dataset, write_json

    if args.limit < 0 or args.wind_draws < 1:
        raise UserError("--limit must be >= 0 and --wind-draws >= 1")
    torch.set_num_threads(max(1, args.threads))
    data = args.data or default_dataset()
    manifest = Path(data) / "manifest.json"
    if not manifest.is_file():
        raise UserError(f"no shard dataset at {data}", "build one with: image-dynamics synth --dataset --out DIR")
    info = json.loads(manifest.read_text())
    first_seed, size = int(info["test"]["seeds"][0]), (int(info["width"]), int(info["height"]))
    model_dir = resolve_model_dir(args.model)
    predictor = MotionPredictor.from_pretrained(model_dir).eval()
    cfg, scales = predictor.config, predictor.scales
    grid = tuple(cfg.resolution)
    vaes = {f"VAE of the model ({grid[0]}x{grid[1]})": predictor.vae}
    if args.vae:
        from ..training.latents import load_vae

        try:
            other, other_cfg, _ = load_vae(args.vae)
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"cannot load the VAE {args.vae}: {exc}") from exc
        if tuple(other_cfg.resolution) != grid:
            raise UserError(f"the VAE {args.vae} works at {other_cfg.resolution}, the model at {list(grid)}")
        vaes["VAE of --vae"] = other.eval()

    levels = {r: wind_level_distribution(np.random.default_rng(args.seed), args.wind_draws, r)
              for r in ("meadow", "candles")}  # every recipe but candles shares one distribution
    medians = {r: float(np.median(v)) for r, v in levels.items()}
    draw = np.random.default_rng(args.seed + 1)
    test = ShardDataset(data, "test")
    n = len(test) if args.limit == 0 else min(args.limit, len(test))
    names = ["zero", f"resolution {grid[0]}x{grid[1]}", *vaes, "wind-blind, median level",
             "wind-blind, sampled level"]
    acc = {name: M.ScoreAccumulator(scales, num_frames=cfg.num_frames) for name in names}
    for i in range(n):
        _, S = test[i]
        true_mask = M.moving_mask(S, num_frames=cfg.num_frames)
        scene = make_scene(first_seed + i, *size)  # the pair's own scene: its recipe and wind level
        level, kind = float(scene.info["level_px"]), ("candles" if scene.recipe == "candles" else "meadow")
        preds = {"zero": np.zeros_like(S), names[1]: resolution_roundtrip(S, grid)}
        for name, vae in vaes.items():
            preds[name] = vae_roundtrip(S, vae, scales, grid)
        preds["wind-blind, median level"] = wind_blind(S, level, medians[kind])
        preds["wind-blind, sampled level"] = wind_blind(S, level, float(draw.choice(levels[kind])))
        for name, P in preds.items():
            acc[name].add(P, S, true_mask)
        print(f"\r{i + 1}/{n} pairs", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    rows = {name: a.summary() for name, a in acc.items()}
    zero = rows["zero"]
    limits = {"whole_l1_vs_zero": (1 - M.BAR["whole_l1_gain"]) * zero["l1"], "mask_iou": M.BAR["mask_iou"]}
    print(f"\n{n} test pairs of {data} at {S.shape[-1]}x{S.shape[-2]}; median wind level {medians['meadow']:.2f} px "
          f"(candles: {medians['candles']:.2f} px)")
    if args.vae:
        print(f"--vae: {args.vae}")
    print(f"\n{'oracle':<34}{'L1 all':>10}{'L1 moving':>11}{'mask IoU':>10}")
    for name, s in rows.items():
        print(f"{name:<34}{s['l1']:>10.4f}{s['l1_moving']:>11.4f}{s['mask_iou']:>10.4f}")
    print(f"\nbar (evaluate checks it): L1 all <= 0.6 x the better of zero and the mean prior (0.6 x zero = "
          f"{limits['whole_l1_vs_zero']:.4f}), L1 moving <= 0.6 x the mean prior's, mask IoU >= {limits['mask_iou']}")
    if args.json:
        out = {"format": "image_dynamics.ceilings", "version": 1, "model": str(model_dir), "data": str(data),
               "vae": args.vae, "test_pairs": n, "median_wind_level_px": medians, "rows": rows, "limits": limits}
        write_json(args.json, out)
        print(f"wrote {args.json}")
    return 0
