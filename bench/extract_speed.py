"""Benchmark: optical-flow speed of each extraction method, and one full ``extract`` of a clip.

    .venv/bin/python bench/extract_speed.py [--size 256x160] [--pairs 8] [--methods all] [--no-full]

The test pair is a bundled real photo and the same photo moved by a smooth sway of a few pixels
(frame 0 -> frame t, as extraction does). Reports milliseconds per flow and flows per second (=
video frames per second of extraction, since one frame costs one flow), with the ratio against the
fastest method measured in this same run (the baseline: ratios compare like with like even on a
busy machine; absolute numbers depend on the machine and its load). Then times the full pipeline
(read the video, 149 flows with warm start and zero-motion gate, FFT) on a 150-frame clip with the
default method. Only 2 CPU cores here: keep --pairs small.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np


def _frames(size: tuple[int, int], count: int) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    from image_dynamics.extract.extractor import render_motion
    from image_dynamics.extract.video import convert_frame

    here = os.path.dirname(os.path.abspath(__file__))
    photo = os.path.join(here, "..", "backend", "image_dynamics", "assets", "photos", "dahlia.jpg")
    image = convert_frame(cv2.imread(photo), size)
    w, h = size
    x = np.arange(w, dtype=np.float32)
    mask = np.clip((0.6 * w - x) / (0.1 * w), 0.0, 1.0)
    t = np.arange(count, dtype=np.float32)
    motion = np.zeros((count, 2, h, w), np.float32)
    motion[:, 0] = (3.0 * w / 256) * np.sin(2 * np.pi * 3 * t / 150)[:, None, None] * mask
    motion[:, 1] = 0.3 * motion[:, 0]
    return render_motion(image, motion), motion


def main(argv: list[str] | None = None) -> int:
    from image_dynamics.extract.flow import DEFAULT_METHOD, METHODS, make_flow
    from image_dynamics.extract.video import parse_size

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="256x160")
    p.add_argument("--pairs", type=int, default=8, help="flows timed per method (default 8)")
    p.add_argument("--methods", default="all", help="comma-separated method names, or all")
    p.add_argument("--no-full", action="store_true", help="skip the full-clip extraction")
    args = p.parse_args(argv)
    size = parse_size(args.size)
    methods = list(METHODS) if args.methods == "all" else args.methods.split(",")

    frames, _ = _frames(size, 150)
    times = np.linspace(5, 149, args.pairs).round().astype(int)
    rows = []
    for name in methods:
        flow = make_flow(name)
        flow(frames[0], frames[1])  # warm-up (allocations, thread pools)
        t0 = time.perf_counter()
        for t in times:
            flow(frames[0], frames[t])
        per = (time.perf_counter() - t0) / len(times)
        rows.append((name, per))
        print(f"  {name:<14} {1000 * per:8.1f} ms/flow", file=sys.stderr, flush=True)

    base_name, base = min(rows, key=lambda r: r[1])
    print(f"\nflow speed at {size[0]}x{size[1]}, {args.pairs} pairs each, baseline = fastest ({base_name})")
    print(f"{'method':<15}{'ms/flow':>9}{'frames/s':>10}{'x baseline':>12}{'s per clip':>12}")
    for name, per in rows:
        mark = " (default)" if name == DEFAULT_METHOD else ""
        print(f"{name:<15}{1000 * per:>9.1f}{1 / per:>10.1f}{per / base:>12.1f}{149 * per:>12.1f}{mark}")

    if not args.no_full:
        from image_dynamics.extract.extractor import extract_volume
        from image_dynamics.extract.video import write_video

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "clip.mkv")
            write_video(path, frames)
            t0 = time.perf_counter()
            extract_volume(path, progress=False)
            full = time.perf_counter() - t0
        print(f"\nfull extract of one 150-frame clip ({DEFAULT_METHOD}, FFV1 .mkv, {size[0]}x{size[1]}): "
              f"{full:.2f} s = {150 / full:.1f} video frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
