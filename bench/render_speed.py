"""Frame-renderer speed: frames per second of the splat renderer (network) and of the raw
softmax-splat op, as ratios to the mesh-warp baseline measured in the same run.

Input: a procedural scene (seed 2000000000, motion x3 so that folds and holes occur) rendered
at each size; the photo is encoded once and ``--frames`` frames are drawn through the public
renderer interface (batched as in production). The raw op splats the photo's RGB by D_t with
the importance weights, nothing else. Timings exclude one warm-up call. CPU threads: ``--threads``
(default 1, the project's shared-machine rule).

    .venv/bin/python bench/render_speed.py [--sizes 256x160,512x288] [--frames 24] [--model models/renderer]
        [--device cpu|cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device, repeat: int = 1) -> float:
    fn()  # warm-up (allocations, kernel selection)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / repeat


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="256x160,512x288")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--model", default=None, help="splat renderer model (default models/renderer)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=2_000_000_000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import cv2

    cv2.setNumThreads(args.threads)
    from image_dynamics.render import make_renderer
    from image_dynamics.render.splat import motion_importance, softmax_splat
    from image_dynamics.synth import make_scene

    device = torch.device(args.device)
    splat = make_renderer("splat", args.model, device)
    mesh = make_renderer("mesh", device=device)
    backward = make_renderer("backward", device=device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    print(f"device {args.device} ({name}), torch {torch.__version__}, {args.threads} CPU thread(s), "
          f"{args.frames} frames per measurement")
    print(f"{'size':>9} | {'mesh fps':>9} | {'splat net fps':>13} {'x mesh':>7} | {'raw splat fps':>13} "
          f"{'x mesh':>7} | {'backward fps':>12} {'x mesh':>7}")
    for size in args.sizes.split(","):
        W, H = (int(x) for x in size.split("x"))
        scene = make_scene(args.seed, W, H)
        scene.A = scene.A * np.float32(3.0)
        image = scene.frame0()
        disp = scene.displacement_gt(np.linspace(0, 149, args.frames))
        fps = {}
        for key, r in (("mesh", mesh), ("splat", splat), ("backward", backward)):
            fps[key] = args.frames / _time(lambda r=r: r.render(image, disp), device)
        img = torch.from_numpy(image).permute(2, 0, 1)[None].float().to(device) / 255
        flow = torch.from_numpy(disp).to(device)
        z = motion_importance(flow)
        bs = splat.batch_size(H, W)

        @torch.no_grad()
        def raw():
            for s in range(0, len(flow), bs):
                f = flow[s:s + bs]
                softmax_splat(img.expand(len(f), -1, -1, -1), f, z)

        fps["raw"] = args.frames / _time(raw, device)
        m = fps["mesh"]
        print(f"{size:>9} | {m:>9.1f} | {fps['splat']:>13.1f} {fps['splat'] / m:>7.2f} | {fps['raw']:>13.1f} "
              f"{fps['raw'] / m:>7.2f} | {fps['backward']:>12.1f} {fps['backward'] / m:>7.2f}")


if __name__ == "__main__":
    main()
