"""Predict latency per image at 256 x 160: torch vs ONNX Runtime, several step counts.

Every time is the median wall time of ``predict`` for one photo (image encoder + sampling with
classifier-free guidance + VAE decode + resampling to 256 x 160), after one warm-up call, and is
also given as a ratio to the 25-step torch CPU run measured in the same script. GPU rows (torch
CUDA, ONNX Runtime CUDA execution provider) are added when a GPU is present; the provider that
actually ran is printed, not the one asked for.

    .venv/bin/python bench/predict_latency.py [--model DIR | --preset tiny|small|paper]
        [--steps 10,25,50] [--repeats 3] [--threads N] [--exporter dynamo|torchscript] [--json OUT]

Without ``--model`` it uses ``models/default`` if that exists, else a randomly initialised model of
``--preset`` (default tiny) - random weights cost exactly what trained ones do, and the header
says which was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT_SIZE = (256, 160)


def _photo() -> np.ndarray:
    import cv2

    path = REPO / "backend" / "image_dynamics" / "assets" / "photos" / "dahlia.jpg"
    img = cv2.imread(str(path))
    if img is None:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, size=(OUT_SIZE[1], OUT_SIZE[0], 3), dtype=np.uint8)
    return np.ascontiguousarray(cv2.resize(img, OUT_SIZE, interpolation=cv2.INTER_AREA)[:, :, ::-1])


def _time(fn, repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up (allocations, ORT graph optimisation, cuDNN autotuning)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="saved model folder (default: models/default, else a random --preset)")
    ap.add_argument("--preset", default="tiny", help="preset of the random model when no trained one is used")
    ap.add_argument("--steps", default="10,25,50", help="step counts (25 is always measured: the reference)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch and ORT (default: free cores)")
    ap.add_argument("--sampler", default="ddim", choices=("ddim", "dpmpp_2m"))
    ap.add_argument("--exporter", default="dynamo", choices=("dynamo", "torchscript"),
                    help="exporter for a model without ONNX files (default dynamo)")
    ap.add_argument("--no-gpu", action="store_true", help="skip GPU rows even when a GPU is present")
    ap.add_argument("--json", default=None, help="also write the rows as JSON")
    args = ap.parse_args()

    import torch

    from image_dynamics.commands.predict import default_threads
    from image_dynamics.model.locate import default_model_dir
    from image_dynamics.model.onnx_engine import MANIFEST_NAME, OnnxMotionEngine, export_onnx, weights_digest
    from image_dynamics.model.pipeline import WEIGHTS_NAME, MotionPredictor

    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    steps = sorted({int(s) for s in args.steps.split(",") if s.strip()} | {25})

    tmp = tempfile.TemporaryDirectory(prefix="predict-latency-")
    if args.model:
        model_dir, what = Path(args.model), f"model {args.model}"
    elif (default_model_dir() / WEIGHTS_NAME).is_file():
        model_dir = default_model_dir()
        what = f"trained model {model_dir}"
    else:
        model_dir = Path(tmp.name) / "model"
        MotionPredictor.random_init(args.preset, seed=0).save_pretrained(model_dir)
        what = f"RANDOM-WEIGHT '{args.preset}' model (no trained model installed; same cost as trained weights)"
    predictor = MotionPredictor.from_pretrained(model_dir)
    cfg = predictor.config
    onnx_dir = model_dir / "onnx"
    if not (onnx_dir / MANIFEST_NAME).is_file():
        onnx_dir = Path(tmp.name) / "onnx"
        t0 = time.perf_counter()
        export_onnx(predictor, onnx_dir, exporter=args.exporter, weights_sha256=weights_digest(model_dir / WEIGHTS_NAME))
        print(f"(exported ONNX with {args.exporter} in {time.perf_counter() - t0:.1f} s)", file=sys.stderr)

    photo = _photo()
    configs = [("torch", "cpu")]
    gpu = torch.cuda.is_available() and not args.no_gpu
    import onnxruntime as ort

    configs.append(("onnx", "cpu"))
    if gpu:
        configs.append(("torch", "cuda"))
    if not args.no_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
        configs.append(("onnx", "cuda"))

    rows = []
    for engine_name, device in configs:
        if engine_name == "torch":
            engine = MotionPredictor.from_pretrained(model_dir, device=device)
            where = f"torch {device}" + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else f" {threads} threads")
        else:
            engine = OnnxMotionEngine(model_dir, onnx_dir, device=device, threads=threads)
            where = f"onnxruntime {engine.provider}" + (f" {threads} threads" if engine.provider.startswith("CPU") else "")
        for n in steps:
            def call(engine=engine, n=n):
                engine.predict(photo, seed=0, steps=n, size=OUT_SIZE, sampler=args.sampler)
                if device == "cuda" and engine_name == "torch":
                    torch.cuda.synchronize()

            med, times = _time(call, args.repeats)
            rows.append({"engine": engine_name, "device": device, "where": where, "steps": n,
                         "seconds": med, "times": times})
            print(f"  {where:<42} {n:>4} steps  {med:8.3f} s", file=sys.stderr)
    ref = next(r["seconds"] for r in rows if r["engine"] == "torch" and r["device"] == "cpu" and r["steps"] == 25)
    for r in rows:
        r["ratio_vs_torch_cpu_25"] = r["seconds"] / ref

    W, H = cfg.resolution
    print(f"\npredict latency per image, output {OUT_SIZE[0]}x{OUT_SIZE[1]}; {what}")
    print(f"preset {cfg.preset}, networks at {W}x{H}, {args.sampler}, CFG w = {cfg.diffusion.guidance_scale:g} "
          f"(2 volumes per step), median of {args.repeats} after 1 warm-up; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, {threads} threads")
    print(f"\n{'engine':<44}{'steps':>6}{'s/image':>10}{'ms/step':>9}{'vs torch 25':>13}")
    for r in rows:
        print(f"{r['where']:<44}{r['steps']:>6}{r['seconds']:>10.3f}{1000 * r['seconds'] / r['steps']:>9.1f}"
              f"{r['ratio_vs_torch_cpu_25']:>12.2f}x")
    if not gpu:
        print("(no GPU here: GPU rows skipped)")
    if args.json:
        Path(args.json).write_text(json.dumps({"what": what, "preset": cfg.preset, "threads": threads,
                                               "output_size": list(OUT_SIZE), "rows": rows}, indent=2))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
