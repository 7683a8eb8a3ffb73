"""``image-dynamics evaluate``: the model card's numbers, with their baselines, in one run.

    image-dynamics evaluate [--model DIR] [--data data/synth] [--limit N] [--steps N] [--seeds 2]
        [--regression DIR] [--mean-prior-from data/synth] [--json OUT.json]

Scores the model on the held-out (test) split of a shard dataset against three baselines
measured in the same run: zero motion, the image-blind mean prior (per pixel, frequency and axis,
the mean |S| of the training split; cached) and, with ``--regression DIR``, the direct-regression
network. Every score is defined in ``evaluation/metrics.py``: amplitude L1 in normalized space
(whole image and truly moving pixels), moving-region mask IoU (mean |D_t| > 0.5 px), power ratio
per frequency, loop closure for loops of other lengths than the 5 s window (with and without loop
guidance), and diversity across seeds. Ends with the bar check: whole-image L1 at least 40 %
below the better trivial baseline, moving-pixel L1 at least 40 % below the mean prior's, mask
IoU >= 0.7. The model's rows are means over all seeds.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..evaluation.report import default_dataset, write_json


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def _default_cache() -> str:
    return str(_repo_root() / "runs" / "eval_cache")


def _parse_seeds(text: str) -> list[int]:
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            n = int(text)
            if n < 1:
                raise ValueError
            seeds = list(range(n))
    except ValueError as exc:
        raise UserError(f"--seeds must be a count (e.g. 3) or a list (e.g. 0,5,9), got {text!r}") from exc
    if len(set(seeds)) != len(seeds) or not seeds:
        raise UserError(f"--seeds must name distinct seeds, got {text!r}")
    return seeds


def _parse_seconds(text: str) -> list[float]:
    try:
        values = [float(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise UserError(f"--loop-seconds must be a list of seconds like 2,3,4, got {text!r}") from exc
    if any(not (math.isfinite(v) and 0 < v <= 60) for v in values):
        raise UserError(f"--loop-seconds values must be in (0, 60], got {text!r}")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    from ..model.config import SAMPLER_NAMES

    p = sub.add_parser("evaluate", help="score the predictor on held-out data against baselines",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model folder (default: models/default, or $IMAGE_DYNAMICS_MODEL)")
    p.add_argument("--data", default=default_dataset(), help="shard dataset; its test split is scored (default data/synth)")
    p.add_argument("--limit", type=int, default=50, help="score the first N test pairs (default 50; 0 = all)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--sampler", choices=SAMPLER_NAMES, default="ddim")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance w (default: the model's)")
    p.add_argument("--seeds", default="2", help="seeds per image: a count (0..N-1) or a list (default 2)")
    p.add_argument("--loop-seconds", default="2,3,4", help="loop lengths to measure closure for (default 2,3,4)")
    p.add_argument("--loop-limit", type=int, default=8,
                   help="images sampled again with loop guidance, per loop length (default 8; 0 = none)")
    p.add_argument("--loop-strength", type=float, default=10.0, help="loop guidance strength u (default 10)")
    p.add_argument("--regression", default=None, metavar="DIR", help="direct-regression baseline folder (optional)")
    p.add_argument("--mean-prior-from", default=None, metavar="DATA",
                   help="shard dataset whose train split defines the mean prior (default: --data)")
    p.add_argument("--mean-prior-limit", type=int, default=None, help="use the first N train pairs (default all)")
    p.add_argument("--cache-dir", default=_default_cache(), help="where the mean prior is cached (default runs/eval_cache)")
    p.add_argument("--engine", choices=("torch", "onnx"), default="torch")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: usable cores not busy)")
    p.add_argument("--json", default=None, metavar="OUT", help="write every number to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _fmt(v: float, width: int = 10, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return f"{'n/a':>{width}}"
    return f"{v:>{width}.{digits}f}"


def run(args: argparse.Namespace) -> int:
    from .predict import default_threads, load_engine, resolve_model_dir

    seeds = _parse_seeds(args.seeds)
    loop_seconds = _parse_seconds(args.loop_seconds) if args.loop_seconds else []
    if args.limit < 0 or args.loop_limit < 0:
        raise UserError("--limit and --loop-limit must be >= 0")
    if args.steps is not None and not 1 <= args.steps <= 1000:
        raise UserError(f"--steps must be between 1 and 1000, got {args.steps}")
    if not (Path(args.data) / "manifest.json").is_file() and not (Path(args.data) / "test").is_dir():
        raise UserError(f"no shard dataset at {args.data}", "build one with: image-dynamics synth --dataset --out DIR")

    from tqdm import tqdm

    from ..evaluation import metrics as M
    from ..evaluation.baselines import BaselineError, RegressionBaseline, ZeroMotion, load_or_fit_mean_prior
    from ..synth.dataset import ShardDataset

    t_start = time.perf_counter()
    model_dir = resolve_model_dir(args.model)
    threads = args.threads or default_threads()
    engine = load_engine(model_dir, args.engine, args.device, threads)
    cfg = engine.config
    scales = engine.scales
    steps = args.steps if args.steps is not None else cfg.diffusion.num_sampling_steps
    guidance = cfg.diffusion.guidance_scale if args.guidance is None else args.guidance
    num_frames, fps = cfg.num_frames, cfg.fps

    test = ShardDataset(args.data, "test")
    n = len(test) if args.limit == 0 else min(args.limit, len(test))
    if n == 0:
        raise UserError(f"{args.data} has no test pairs")

    log = (lambda m: print(m, file=sys.stderr))
    regression = None
    if args.regression:
        try:
            regression = RegressionBaseline.load(args.regression)
        except BaselineError as exc:
            raise UserError(str(exc), "train it with the training scripts, or leave out --regression") from exc
    prior_data = args.mean_prior_from or args.data
    try:
        prior, prior_path, cached = load_or_fit_mean_prior(prior_data, args.cache_dir, split="train",
                                                           limit=args.mean_prior_limit, progress=not args.quiet, log=log)
    except BaselineError as exc:
        raise UserError(f"cannot build the mean prior: {exc}", "pass --mean-prior-from with a dataset that has a train split") from exc
    log(f"mean prior: {prior.count} train pairs ({'cached' if cached else 'fitted'}: {prior_path})")

    _, S0 = test[0]
    K, _, H, W = S0.shape
    if K != cfg.num_freqs:
        raise UserError(f"the data has {K} frequencies, the model {cfg.num_freqs}")
    zero = ZeroMotion(K)
    prior_volume = prior.predict(None, (W, H))
    prior_mask = M.moving_mask(prior_volume, num_frames=num_frames)
    zero_mask = np.zeros((H, W), bool)

    acc = {"model": M.ScoreAccumulator(scales, num_frames=num_frames),
           "zero": M.ScoreAccumulator(scales, num_frames=num_frames),
           "mean_prior": M.ScoreAccumulator(scales, num_frames=num_frames)}
    if regression is not None:
        acc["regression"] = M.ScoreAccumulator(scales, num_frames=num_frames)
    loop_frames = [s * fps for s in loop_seconds]
    closure = {name: {L: [] for L in loop_frames} for name in ("truth", "model", "model_guided")}
    div_amp, div_phase = [], []
    model_seconds = 0.0
    model_calls = 0

    bar = tqdm(total=n, desc="evaluate", unit="image", disable=args.quiet, file=sys.stderr)
    for i in range(n):
        image, S_true = test[i]
        true_mask = M.moving_mask(S_true, num_frames=num_frames)
        samples = []
        for seed in seeds:
            t0 = time.perf_counter()
            S = engine.predict(image, seed=seed, steps=steps, guidance=guidance, size=(W, H), sampler=args.sampler)
            model_seconds += time.perf_counter() - t0
            model_calls += 1
            acc["model"].add(S, S_true, true_mask)
            samples.append(S)
        if len(samples) > 1:
            div_amp.append(M.diversity(samples, scales))
            div_phase.append(M.diversity(samples, scales, phase_aware=True))
        acc["zero"].add(zero.predict(image, (W, H)), S_true, true_mask, zero_mask)
        acc["mean_prior"].add(prior_volume, S_true, true_mask, prior_mask)
        if regression is not None:
            acc["regression"].add(regression.predict(image, (W, H)), S_true, true_mask)
        for L, err in M.loop_closure_errors(S_true, loop_frames, num_frames).items():
            closure["truth"][L].append(err)
        for L, err in M.loop_closure_errors(samples[0], loop_frames, num_frames).items():
            closure["model"][L].append(err)
        if i < args.loop_limit:
            for L in loop_frames:
                S = engine.predict(image, seed=seeds[0], steps=steps, guidance=guidance, size=(W, H),
                                   sampler=args.sampler, loop_frames=L, loop_strength=args.loop_strength)
                closure["model_guided"][L].append(M.loop_closure_errors(S, [L], num_frames)[float(L)])
        bar.update(1)
    bar.close()

    methods = {name: a.summary() for name, a in acc.items()}
    bar_result = M.bar_check(methods["model"], methods["zero"], methods["mean_prior"])

    def mean_or_nan(v):
        return float(np.mean(v)) if v else float("nan")

    loop_table = {
        f"{s:g}s": {name: mean_or_nan(closure[name][L]) for name in closure} | {"frames": L,
                                                                                 "guided_images": len(closure["model_guided"][L])}
        for s, L in zip(loop_seconds, loop_frames)
    }
    result = {
        "format": "image_dynamics.evaluation",
        "version": 1,
        "model": str(model_dir),
        "preset": cfg.preset,
        "engine": args.engine,
        "provider": engine.provider if args.engine == "onnx" else str(engine.device),
        "data": str(Path(args.data).resolve()),
        "test_pairs": n,
        "resolution": [W, H],
        "steps": steps,
        "sampler": args.sampler,
        "guidance": guidance,
        "seeds": seeds,
        "loop_strength": args.loop_strength,
        "mean_prior": {"pairs": prior.count, "cache": str(prior_path)},
        "regression": str(args.regression) if args.regression else None,
        "definitions": {
            "l1": "mean over k, axis, pixels of |sqrt(|S_pred|/s_k) - sqrt(|S_true|/s_k)| (phase-invariant), "
                  "s_k = the model's frequency scales",
            "l1_moving": "the same over the pixels whose true mean_t |D_t| > 0.5 px (mean over images)",
            "mask_iou": "IoU of the masks mean_t |D_t| > 0.5 px (exact, all T frames); 1 if both empty",
            "power_ratio": "per k: sum over the test set of sum |S_k|^2 predicted / truth",
            "loop_closure": "mean over pixels of |D(L) - D(0)| px; truth = the ground-truth volumes",
            "diversity": "mean pairwise L1 between seeds (amplitude space; phase_aware: normalized complex)",
        },
        "methods": methods,
        "loop_closure_px": loop_table,
        "diversity": {"amplitude_l1": mean_or_nan(div_amp), "phase_aware_l1": mean_or_nan(div_phase)},
        "bar": bar_result,
        "seconds": {"total": time.perf_counter() - t_start,
                    "per_sample": model_seconds / max(model_calls, 1)},
        "host": {"python": platform.python_version(), "threads": threads},
    }

    _print_table(result, K)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, result)
        print(f"\nwrote {out}")
    return 0


def _print_table(r: dict, K: int) -> None:
    from ..motion.spectral import frequencies_hz

    print(f"\nmodel {r['model']} ({r['preset']}, {r['engine']} on {r['provider']}): {r['test_pairs']} test pairs at "
          f"{r['resolution'][0]}x{r['resolution'][1]}, {r['steps']} {r['sampler']} steps, w = {r['guidance']:g}, "
          f"seeds {r['seeds']}")
    print(f"\n{'method':<14}{'L1 all':>10}{'L1 moving':>11}{'mask IoU':>10}")
    for name, s in r["methods"].items():
        print(f"{name:<14}{_fmt(s['l1'])}{_fmt(s['l1_moving'], 11)}{_fmt(s['mask_iou'])}")
    freqs = frequencies_hz(K)
    cols = list(range(0, K, max(1, K // 8)))
    print("\npower ratio (predicted / true) at " + ", ".join(f"{freqs[k]:.1f}" for k in cols) + " Hz")
    for name, s in r["methods"].items():
        vals = s["power_ratio"]
        print(f"{name:<14}" + "".join("      n/a" if vals[k] is None or math.isnan(vals[k]) else f" {vals[k]:>8.3g}"
                                      for k in cols))
    if r["loop_closure_px"]:
        print("\nloop closure |D(L) - D(0)| (px)")
        print(f"{'loop':<8}{'truth':>10}{'model':>10}{'guided':>10}")
        for key, row in r["loop_closure_px"].items():
            print(f"{key:<8}{_fmt(row['truth'], 10, 3)}{_fmt(row['model'], 10, 3)}{_fmt(row['model_guided'], 10, 3)}"
                  f"   ({row['guided_images']} guided)")
    d = r["diversity"]
    print(f"\ndiversity across seeds: amplitude L1 {_fmt(d['amplitude_l1'], 0)}, phase-aware L1 {_fmt(d['phase_aware_l1'], 0)}")
    print("\nbar check")
    for key in ("whole_l1", "moving_l1", "mask_iou"):
        c = r["bar"][key]
        op = ">=" if key == "mask_iou" else "<="
        print(f"  {'PASS' if c['pass'] else 'FAIL'}  {c['rule']}: {_fmt(c['value'], 0)} {op} {_fmt(c['limit'], 0)}")
    print(f"  {'all PASS' if r['bar']['all_pass'] else 'not passed'}")
