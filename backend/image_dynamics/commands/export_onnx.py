"""``image-dynamics export-onnx``: write the ONNX graphs that ``predict --engine onnx`` runs.

    image-dynamics export-onnx [--model DIR] [--out DIR/onnx] [--opset 18] [--exporter dynamo|torchscript]

Writes image_encoder.onnx, denoiser.onnx and vae_decoder.onnx (each with its ``.onnx.data``
weights file when the dynamo exporter is used: keep each folder whole) plus ``onnx.json``, the
manifest tying them to the exact ``model.safetensors`` they came from. Every graph is checked
against torch on a random input before the folder is replaced. See ``model/onnx_engine.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-onnx", help="export the predictor to ONNX (for --engine onnx)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model folder (default: models/default, or $IMAGE_DYNAMICS_MODEL)")
    p.add_argument("--out", default=None, help="output folder (default: MODEL/onnx)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, 17 or newer (default 18)")
    p.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo",
                   help="torch exporter: dynamo (default, torch's current one) or torchscript (legacy tracer, faster)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: usable cores not busy)")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs torch check of each graph")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .predict import default_threads, resolve_model_dir

    if args.opset < 17:
        raise UserError(f"--opset must be 17 or newer, got {args.opset}")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise UserError(f"exporting needs the onnx packages ({exc.name} is missing)",
                        "pip install 'numpy<2' onnx onnxscript onnxruntime") from exc
    if args.exporter == "dynamo":
        try:
            import onnxscript  # noqa: F401
        except ImportError as exc:
            raise UserError("the dynamo exporter needs onnxscript", "pip install 'numpy<2' onnxscript, "
                            "or use --exporter torchscript") from exc
    model_dir = resolve_model_dir(args.model)
    out = Path(args.out) if args.out else model_dir / "onnx"
    import torch

    torch.set_num_threads(args.threads or default_threads())

    from ..model.onnx_engine import OnnxExportError, export_onnx, weights_digest
    from ..model.pipeline import WEIGHTS_NAME, MotionPredictor

    try:
        predictor = MotionPredictor.from_pretrained(model_dir, device="cpu")
    except (OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"cannot load the model in {model_dir}: {exc}") from exc
    t0 = time.perf_counter()
    try:
        manifest = export_onnx(predictor, out, opset=args.opset, exporter=args.exporter,
                               weights_sha256=weights_digest(model_dir / WEIGHTS_NAME), check=not args.no_check,
                               log=lambda m: print(m, file=sys.stderr))
    except OnnxExportError as exc:
        raise UserError(str(exc), "try --exporter torchscript, or report the failing part") from exc
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc}") from exc
    files = sorted(f for part in manifest["parts"].values() for f in part["files"])
    worst = max((p.get("check_max_abs_error", 0.0) for p in manifest["parts"].values()), default=0.0)
    print(f"exported {len(manifest['parts'])} graphs (opset {manifest['opset']}, {args.exporter}) to {out} "
          f"in {time.perf_counter() - t0:.1f} s: {', '.join(files)}"
          + ("" if args.no_check else f"; max |onnx - torch| {worst:.2g}"))
    return 0
