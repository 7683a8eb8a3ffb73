"""``image-dynamics train``: build the training cache, train the VAE, the denoiser (two stages) and
the regression baseline, and export a model folder.

    image-dynamics train cache --data data/synth [--data MORE] --out runs/cache-cpu --preset cpu
    image-dynamics train vae --cache runs/cache-cpu --out runs/vae [--preset cpu] [--steps N ...]
    image-dynamics train latents --cache runs/cache-cpu --vae runs/vae [--name default]   (optional)
    image-dynamics train denoiser --stage 1 --cache runs/cache-cpu --vae runs/vae --out runs/den1
    image-dynamics train denoiser --stage 2 --cache runs/cache-cpu --init runs/den1 --out runs/den2
    image-dynamics train regression --cache runs/cache-cpu --out runs/reg [--preset cpu]
    image-dynamics train export --denoiser runs/den2 [--vae runs/vae] --out models/NAME
    image-dynamics train export --regression runs/reg --out models/NAME
    image-dynamics train renderer --out runs/renderer [--data data/render] [--steps N] [--export models/renderer]
    image-dynamics train export-renderer --run runs/renderer --out models/renderer

Several processes or machines: ``torchrun --nproc_per_node=N -m image_dynamics.cli train vae ...``
(DistributedDataParallel; gloo on CPU, nccl on CUDA; --batch-size is the global batch).
"""

from __future__ import annotations

import argparse
import json
import time

from ..errors import UserError

_DEFAULTS = {
    # steps, global batch, lr, warm-up, ema, eval/ckpt every
    # the VAE loss is summed per slice (gradient norms ~1e4): no clipping there, Adam normalizes
    "vae": dict(steps=3000, batch_size=8, lr=5e-4, warmup=100, ema=0.0, eval_every=500, ckpt_every=500,
                grad_clip=0.0),
    "denoiser1": dict(steps=8000, batch_size=8, lr=2e-4, warmup=200, ema=0.999, eval_every=1000, ckpt_every=500,
                      grad_clip=1.0),
    "denoiser2": dict(steps=1500, batch_size=2, lr=1e-4, warmup=100, ema=0.999, eval_every=500, ckpt_every=250,
                      grad_clip=1.0),
    "regression": dict(steps=4000, batch_size=8, lr=2e-4, warmup=100, ema=0.0, eval_every=1000, ckpt_every=500,
                       grad_clip=1.0),
    "renderer": dict(steps=2600, batch_size=8, lr=5e-4, warmup=100, ema=0.995, eval_every=500, ckpt_every=250,
                     grad_clip=1.0),
}


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train the motion predictor (cache, vae, denoiser, regression, export)",
                              description=__doc__.split("\n\n", 1)[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="train_command", metavar="STAGE")

    c = sub.add_parser("cache", help="preprocess datasets into a training cache at model resolution")
    c.add_argument("--data", action="append", required=True, help="synthetic dataset or extracted shards (repeatable)")
    c.add_argument("--out", required=True, help="cache folder to create")
    c.add_argument("--preset", default="cpu", help="model preset whose resolution the cache is for (default cpu)")
    c.add_argument("--resolution", default=None, help="WxH instead of the preset's, e.g. 128x80")
    c.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    c.add_argument("--max-train", type=int, default=None, help="use only the first N training pairs")
    c.add_argument("--max-test", type=int, default=None, help="use only the first N test pairs")
    c.add_argument("--percentile", type=float, default=95.0, help="percentile of the frequency scales (paper: 95)")
    c.add_argument("--scale-fit-pairs", type=int, default=4000, help="fit the scales on at most N training pairs")
    c.add_argument("--overwrite", action="store_true", help="replace an existing cache folder")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=run_cache)

    v = sub.add_parser("vae", help="train the KL-VAE over frequency slices")
    _common(v, "vae")
    v.add_argument("--preset", default="cpu", help="model preset (default cpu)")
    v.add_argument("--model-config", default=None, help="a model config.json instead of --preset")
    v.add_argument("--kl-weight", type=float, default=1e-6)
    v.add_argument("--grad-weight", type=float, default=0.2)
    v.add_argument("--mse-weight", type=float, default=1.0,
                   help="extra L2 reconstruction term (0 = the paper's loss; see training/train_vae.py)")
    v.set_defaults(func=run_vae)

    la = sub.add_parser("latents", help="precompute VAE latents of the cache (optional)")
    la.add_argument("--cache", required=True)
    la.add_argument("--vae", required=True, help="VAE run (its latest checkpoint) or checkpoint folder")
    la.add_argument("--name", default="default")
    la.add_argument("--no-flip", action="store_true", help="do not encode the mirrored pairs")
    la.add_argument("--sample", action="store_true", help="store one posterior sample instead of the mean")
    la.add_argument("--limit", type=int, default=None, help="encode only the first N pairs of each split")
    la.add_argument("--batch", type=int, default=64, help="slices per encoder batch")
    la.add_argument("--device", default="auto")
    la.add_argument("--overwrite", action="store_true")
    la.add_argument("--no-progress", action="store_true")
    la.set_defaults(func=run_latents)

    d = sub.add_parser("denoiser", help="train the denoiser (stage 1: slices; stage 2: frequency attention)")
    _common(d, None)
    d.add_argument("--stage", type=int, choices=(1, 2), required=True)
    d.add_argument("--vae", default=None, help="stage 1: the VAE run")
    d.add_argument("--init", default=None, help="stage 2: the stage-1 run")
    d.add_argument("--latents", default=None, help="use precomputed latents NAME (default: encode on the fly)")
    d.add_argument("--sample-latents", action="store_true", help="on-the-fly: posterior samples, not means")
    d.add_argument("--preset", default=None, help="stage 1: model preset (default: the VAE run's)")
    d.add_argument("--latent-stats-slices", type=int, default=2048,
                   help="on-the-fly: training slices used to fit the latent whitening statistics")
    d.set_defaults(func=run_denoiser)

    r = sub.add_parser("regression", help="train the direct-regression baseline")
    _common(r, "regression")
    r.add_argument("--preset", default="cpu", help="size it like this model preset (default cpu)")
    r.add_argument("--base-channels", type=int, default=None, help="override the matched width")
    r.add_argument("--mse-weight", type=float, default=0.0, help="add an L2 term to the L1 loss (default 0)")
    r.set_defaults(func=run_regression)

    e = sub.add_parser("export", help="write a model folder from trained runs")
    e.add_argument("--denoiser", default=None, help="denoiser run (stage 2, or stage 1) or checkpoint folder")
    e.add_argument("--vae", default=None, help="VAE run to check the denoiser's VAE against")
    e.add_argument("--regression", default=None, help="export the regression baseline of this run instead")
    e.add_argument("--out", required=True, help="model folder, e.g. models/NAME")
    e.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA")
    e.set_defaults(func=run_export)

    rr = sub.add_parser("renderer", help="train the frame renderer's synthesis network on procedural scenes")
    _common(rr, "renderer", cache=False)
    rr.add_argument("--data", default="data/render", help="scene folder, generated where missing (default data/render)")
    rr.add_argument("--scenes", type=int, default=400, help="training scenes, seeds 0.. (default 400)")
    rr.add_argument("--eval-scenes", type=int, default=16, help="held-out scenes, seeds 2e9.. (default 16)")
    rr.add_argument("--times", type=int, default=8, help="frames kept per scene (default 8)")
    rr.add_argument("--size", default="256x160", help="scene size WxH (default 256x160)")
    rr.add_argument("--crop", default="128x96", help="training crop WxH, or 'none' for whole frames (default 128x96)")
    rr.add_argument("--magnify", default="1,3", help="range of the per-scene motion magnification (default 1,3)")
    rr.add_argument("--channels", default="16,32,64", help="encoder channels at the three scales (default 16,32,64)")
    rr.add_argument("--moving-weight", type=float, default=4.0,
                    help="extra L1 weight near motion (mean |D| > 0.25 px, dilated 2 px; default 4)")
    rr.add_argument("--no-backward-input", action="store_true",
                    help="decoder without the backward-warped photo (plain splatted features only)")
    rr.add_argument("--export", default=None, help="after training, write the model folder here (e.g. models/renderer)")
    rr.set_defaults(func=run_renderer)

    er = sub.add_parser("export-renderer", help="write a renderer model folder from a training run")
    er.add_argument("--run", required=True, help="renderer run (its latest checkpoint) or checkpoint folder")
    er.add_argument("--out", required=True, help="model folder, e.g. models/renderer")
    er.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA")
    er.set_defaults(func=run_export_renderer)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _common(p, kind: str | None, cache: bool = True) -> None:
    dflt = _DEFAULTS.get(kind or "denoiser1")
    if cache:
        p.add_argument("--cache", required=True, help="training cache folder (image-dynamics train cache)")
    p.add_argument("--out", required=True, help="run folder (config, logs, checkpoints)")
    p.add_argument("--steps", type=int, default=None, help=f"optimizer steps (default {dflt['steps']})")
    p.add_argument("--batch-size", type=int, default=None, help=f"GLOBAL batch (default {dflt['batch_size']})")
    p.add_argument("--lr", type=float, default=None, help=f"Adam learning rate (default {dflt['lr']})")
    p.add_argument("--warmup", type=int, default=None, help="linear warm-up steps")
    p.add_argument("--lr-decay", choices=("constant", "cosine"), default="constant")
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--grad-clip", type=float, default=None,
                   help=f"max gradient norm, 0 = off (default {dflt['grad_clip']})")
    p.add_argument("--ema", type=float, default=None, help="EMA decay of the weights (0 = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="auto: bf16 (or fp16 + GradScaler) on CUDA, fp32 on CPU")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers per process")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0 = default)")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--eval-size", type=int, default=256, help="held-out items per evaluation")
    p.add_argument("--ckpt-every", type=int, default=None)
    p.add_argument("--keep", type=int, default=3, help="checkpoints kept")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    p.add_argument("--no-flip", action="store_true", help="no horizontal-flip augmentation")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--nondeterministic", action="store_true", help="allow non-deterministic (faster) kernels")


def _settings(args, kind: str):
    from ..training.loop import TrainSettings

    d = _DEFAULTS[kind]

    def pick(name):
        v = getattr(args, name)
        return d[name] if v is None else v

    return TrainSettings(
        out=args.out, steps=pick("steps"), batch_size=pick("batch_size"), lr=pick("lr"), warmup=pick("warmup"),
        lr_decay=args.lr_decay, min_lr_ratio=args.min_lr_ratio, weight_decay=args.weight_decay,
        grad_clip=pick("grad_clip"), ema=pick("ema"), seed=args.seed, device=args.device, precision=args.precision,
        workers=args.workers, threads=args.threads, log_every=args.log_every, eval_every=pick("eval_every"),
        eval_size=args.eval_size, ckpt_every=pick("ckpt_every"), keep=args.keep, resume=args.resume,
        progress=not args.no_progress, deterministic=not args.nondeterministic,
    )


def _model_config(preset: str | None, path: str | None = None):
    from ..model.config import ModelConfig

    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                return ModelConfig.from_json(fh.read())
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read the model config {path}: {exc}")
    try:
        return ModelConfig.preset(preset or "cpu")
    except ValueError as exc:
        raise UserError(str(exc))


def _report(result: dict, what: str) -> int:
    import os

    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return 130 if result.get("interrupted") else 0
    ev = result.get("last_eval") or {}
    ev_s = ", ".join(f"{k} {v:.5g}" for k, v in ev.items() if isinstance(v, float) and k not in ("seconds",))
    state = "interrupted" if result.get("interrupted") else "finished"
    print(f"{what} {state} at step {result['step']} in {result.get('seconds', 0):.0f} s; "
          f"checkpoint {result.get('checkpoint')}" + (f"; held-out: {ev_s}" if ev_s else ""))
    return 130 if result.get("interrupted") else 0


def run_cache(args) -> int:
    from ..training.data import build_cache

    if args.resolution:
        try:
            w, h = (int(x) for x in args.resolution.lower().split("x"))
        except ValueError:
            raise UserError(f"--resolution must look like 128x80, got {args.resolution!r}")
        preset = args.preset
    else:
        cfg = _model_config(args.preset)
        w, h = cfg.resolution
        preset = cfg.preset
    t0 = time.time()
    info = build_cache(args.data, args.out, (w, h), workers=args.workers, max_train=args.max_train,
                       max_test=args.max_test, percentile=args.percentile, scale_fit_pairs=args.scale_fit_pairs,
                       progress=not args.no_progress, overwrite=args.overwrite, preset=preset)
    print(f"cache {args.out}: {info['splits']['train']['count']} training + {info['splits']['test']['count']} "
          f"test pairs at {w}x{h} in {time.time() - t0:.0f} s; scales "
          + ", ".join(f"{s:.3g}" for s in info["scales"]["scales"]))
    return 0


def run_vae(args) -> int:
    from ..training.train_vae import train_vae

    result = train_vae(args.cache, _settings(args, "vae"), _model_config(args.preset, args.model_config),
                       grad_weight=args.grad_weight, kl_weight=args.kl_weight, mse_weight=args.mse_weight,
                       flip=not args.no_flip)
    return _report(result, "VAE training")


def run_latents(args) -> int:
    import torch

    from ..training.latents import encode_latents

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    info = encode_latents(args.cache, args.vae, args.name, flip=not args.no_flip, sample=args.sample,
                          limit=args.limit, batch=args.batch, device=device, progress=not args.no_progress,
                          overwrite=args.overwrite)
    print(f"latents {args.name}: {json.dumps(info['counts'])} pairs in {info['seconds']} s; "
          f"mean {[round(x, 3) for x in info['latent_mean']]} std {[round(x, 3) for x in info['latent_std']]}")
    return 0


def run_denoiser(args) -> int:
    from ..training.train_denoiser import train_denoiser

    kind = "denoiser1" if args.stage == 1 else "denoiser2"
    mc = _model_config(args.preset) if args.preset else None
    result = train_denoiser(args.cache, _settings(args, kind), stage=args.stage, vae_run=args.vae, init=args.init,
                            latents=args.latents, model_config=mc, flip=not args.no_flip,
                            sample_latents=args.sample_latents, latent_stats_slices=args.latent_stats_slices)
    return _report(result, f"denoiser stage {args.stage} training")


def run_regression(args) -> int:
    from ..model.regression import RegressionConfig
    from ..training.train_regression import train_regression

    mc = _model_config(args.preset)
    rc = RegressionConfig.matching(mc)
    if args.base_channels:
        rc.base_channels = args.base_channels
    result = train_regression(args.cache, _settings(args, "regression"), model_config=mc, regression_config=rc,
                              flip=not args.no_flip, mse_weight=args.mse_weight)
    return _report(result, "regression-baseline training")


def run_export(args) -> int:
    from ..training.export import export_predictor, export_regression

    if (args.denoiser is None) == (args.regression is None):
        raise UserError("export needs exactly one of --denoiser or --regression")
    if args.regression:
        folder = export_regression(args.regression, args.out, use_ema=not args.no_ema)
    else:
        folder = export_predictor(args.denoiser, args.out, vae_run=args.vae, use_ema=not args.no_ema)
    print(f"wrote {folder}")
    return 0


def _pair(text: str, sep: str, name: str, kind=int) -> tuple:
    try:
        a, b = (kind(x) for x in text.lower().split(sep))
    except ValueError:
        raise UserError(f"{name} must look like A{sep}B, got {text!r}")
    return a, b


def run_renderer(args) -> int:
    from ..render.synthesis import SynthesisConfig
    from ..render.train import export_renderer, train_renderer

    size = _pair(args.size, "x", "--size")
    crop = None if args.crop.lower() == "none" else _pair(args.crop, "x", "--crop")
    if crop is not None and (crop[0] > size[0] or crop[1] > size[1] or min(crop) < 16):
        raise UserError(f"--crop {args.crop} must be at least 16x16 and fit in --size {args.size}")
    magnify = _pair(args.magnify, ",", "--magnify", float)
    if not 0 < magnify[0] <= magnify[1]:
        raise UserError("--magnify must be two positive numbers, the smaller first")
    try:
        channels = tuple(int(c) for c in args.channels.split(","))
        config = SynthesisConfig(channels=channels, backward_input=not args.no_backward_input)
        SynthesisConfig.from_dict(config.to_dict())
    except ValueError:
        raise UserError(f"--channels must be three integers like 16,32,64, got {args.channels!r}")
    if args.moving_weight < 0:
        raise UserError("--moving-weight must be >= 0")
    if args.scenes < 1 or args.eval_scenes < 1 or not 1 <= args.times <= 149:
        raise UserError("--scenes and --eval-scenes must be at least 1 and --times in 1..149")
    result = train_renderer(args.data, _settings(args, "renderer"), config=config, train_scenes=args.scenes,
                            eval_scenes=args.eval_scenes, times_per_scene=args.times,
                            crop=(crop[1], crop[0]) if crop else None, magnify=magnify, size=size,
                            flip=not args.no_flip, moving_weight=args.moving_weight, progress=not args.no_progress)
    code = _report(result, "renderer training")
    if args.export and not result.get("interrupted"):
        print(f"wrote {export_renderer(args.out, args.export)}")
    return code


def run_export_renderer(args) -> int:
    from ..render.train import export_renderer

    print(f"wrote {export_renderer(args.run, args.out, use_ema=not args.no_ema)}")
    return 0
