"""Speed of the procedural scene generator, single process.

Prints pairs per minute (scene build + frame 0 + modal description, what a training pair costs),
clips per minute (full 150-frame render), and ratios to trivial baselines measured in the same
run: compressing the pair's arrays into an npz (the storage step every pair also pays) and
rendering frame 0 only.

    .venv/bin/python bench/synth_speed.py [--pairs 20] [--clips 3]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np

from image_dynamics.synth.scene import make_scene


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--seed", type=int, default=500)
    args = ap.parse_args()

    make_scene(0)  # warm the photo caches (paid once per worker process)
    t_pair, t_store, t_frame0, sizes = [], [], [], []
    for s in range(args.seed, args.seed + args.pairs):
        t0 = time.perf_counter()
        scene = make_scene(s)
        img = scene.frame0()
        idx, u, A = scene.modal()
        t1 = time.perf_counter()
        buf = io.BytesIO()
        np.savez_compressed(buf, images=img, idx=idx, u=u.astype(np.float16), A=A)
        t2 = time.perf_counter()
        scene.frame0()
        t3 = time.perf_counter()
        t_pair.append(t1 - t0)
        t_store.append(t2 - t1)
        t_frame0.append(t3 - t2)
        sizes.append(buf.getbuffer().nbytes)
    t_clip = []
    for s in range(args.seed, args.seed + args.clips):
        scene = make_scene(s)
        t0 = time.perf_counter()
        scene.render_clip()
        t_clip.append(time.perf_counter() - t0)

    pair, store, f0, clip = (float(np.mean(x)) for x in (t_pair, t_store, t_frame0, t_clip))
    rows = [
        ("pair: scene + frame 0 + modal", pair, 60 / pair, "1.00"),
        ("baseline: npz-compress the pair", store, 60 / store, f"{pair / store:.2f}x"),
        ("baseline: composite frame 0 again", f0, 60 / f0, f"{pair / f0:.1f}x"),
        ("clip: 150 warped frames", clip, 60 / clip, f"{clip / f0:.0f}x frame0"),
    ]
    print(f"{'step':38s} {'s/item':>8s} {'per min':>9s} {'ratio':>12s}")
    for name, sec, per_min, ratio in rows:
        print(f"{name:38s} {sec:8.3f} {per_min:9.1f} {ratio:>12s}")
    total = pair + store
    print(f"\npairs: {args.pairs}, clips: {args.clips}; compressed pair {np.mean(sizes) / 1e3:.0f} kB;"
          f" 20,500 pairs on 2 workers ~ {20500 * total / 2 / 60:.0f} min (one core each)")


if __name__ == "__main__":
    main()
