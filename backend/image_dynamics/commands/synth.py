"""``image-dynamics synth``: procedural training data with exact ground-truth motion.

    image-dynamics synth --count N --out DIR [--seed S] [--recipe NAME] [--preview PNG]
        writes DIR/clip_XXXXX.mkv (150 frames, 30 fps, lossless FFV1) + DIR/clip_XXXXX.npz
        (canonical spectral-volume file, image = frame 0)
    image-dynamics synth --dataset --train 20000 --test 500 --out DIR [--workers 2]
        writes the compact shard dataset DIR/{train,test}/shard_XXXX.npz + DIR/manifest.json
"""

from __future__ import annotations

import time

from ..errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("synth", help="generate synthetic clips / training pairs with exact motion",
                              description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--count", type=int, default=None, help="number of clips to write (clip mode)")
    p.add_argument("--seed", type=int, default=0, help="first seed (clip mode; default 0)")
    p.add_argument("--recipe", default=None, help="force one recipe (clip mode)")
    p.add_argument("--no-camera-effects", action="store_true", help="clips without camera noise and blur")
    p.add_argument("--dataset", action="store_true", help="write the sharded training/test dataset instead")
    p.add_argument("--train", type=int, default=20000, help="training pairs (dataset mode)")
    p.add_argument("--test", type=int, default=500, help="held-out test pairs, seeds from 10^9 (dataset mode)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (dataset mode)")
    p.add_argument("--shard-size", type=int, default=500, help="pairs per shard (dataset mode)")
    p.add_argument("--preview", default=None, help="also write a contact sheet PNG of frame 0 + motion overlay")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..synth import dataset
    from ..synth.scene import RECIPES

    t0 = time.time()
    if args.dataset:
        if args.train < 0 or args.test < 0 or args.train + args.test == 0:
            raise UserError("nothing to write", "give --train and/or --test a positive count")
        if args.workers < 1 or args.shard_size < 1:
            raise UserError("--workers and --shard-size must be at least 1")
        m = dataset.build_dataset(args.out, args.train, args.test, workers=args.workers, shard_size=args.shard_size)
        n_new = m["pairs_this_run"]
        dt = time.time() - t0
        print(f"wrote {n_new} new pairs ({m['shards_skipped']} complete shards skipped) to {args.out} "
              f"in {dt:.1f} s ({60.0 * n_new / max(dt, 1e-9):.0f} pairs/min with {args.workers} workers); "
              f"{m['bytes'] / 1e9:.2f} GB, {m['bytes_per_pair'] / 1e3:.0f} kB per pair")
        preview_seeds = range(0, min(24, args.train or args.test))
    else:
        if args.count is None or args.count < 1:
            raise UserError("--count must be a positive number of clips", "or use --dataset for training shards")
        if args.recipe is not None and args.recipe not in RECIPES:
            raise UserError(f"unknown recipe {args.recipe!r}", f"choose one of: {', '.join(RECIPES)}")
        try:
            dataset.write_clips(args.out, args.count, args.seed, recipe=args.recipe,
                                effects=not args.no_camera_effects)
        except RuntimeError as exc:
            raise UserError(str(exc), "this needs OpenCV built with FFmpeg (opencv-python-headless wheels are)") from exc
        dt = time.time() - t0
        print(f"wrote {args.count} clips to {args.out} in {dt:.1f} s "
              f"({60.0 * args.count / max(dt, 1e-9):.1f} clips/min, {dt / args.count:.2f} s per clip)")
        preview_seeds = range(args.seed, args.seed + min(24, args.count))
    if args.preview:
        dataset.preview_sheet(preview_seeds, args.preview)
        print(f"preview: {args.preview}")
    return 0
