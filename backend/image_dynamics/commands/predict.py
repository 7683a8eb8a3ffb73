"""``image-dynamics predict``: one photo -> a spectral volume file (and a preview picture).

    image-dynamics predict PHOTO --out FILE.npz [--model DIR] [--seed N] [--steps N]
        [--guidance W] [--sampler ddim|dpmpp_2m] [--loop [--loop-seconds S]]
        [--size WxH] [--device auto|cpu|cuda] [--engine torch|onnx] [--preview FILE.png]

Resize policy (nothing is ever cropped; the volume covers the whole photo):

* the networks see the photo stretched to the model's native resolution (128 x 80 for
  models/default);
* the volume is resampled to the output size with the vectors rescaled per axis
  (``motion.resample``), so its displacements are in pixels of the written resolution;
* the output size is ``--size WxH`` if given (the photo is stretched to it if the aspect differs),
  else the photo's aspect at the model's detail: the longer side equals the longer side of the
  model's resolution (128 px for models/default), never larger than the photo itself (and no
  side under 8 px). Upsampling the motion adds no detail, so the file stays small; ``animate``
  and the Blender add-on resample it to the photo or mesh they draw. The file's ``image`` is the
  photo at that size.

Reproducibility: on the CPU, the same photo, model, options, --seed and --threads give a
byte-identical file (same machine and software). The default --threads follows the current
load, so pass --threads N when the bytes must match; the file's meta records the threads used.

Inputs are checked before decoding: the format is recognised from the file's first bytes (PNG,
JPEG, BMP, WebP or TIFF, whatever the file is called) and the pixel size is read from the header,
so a 0 x 0 picture or a header claiming 100,000 px is refused without allocating it.

Exit status: 0 done; 2 bad input, a model that cannot be loaded or an output that cannot be
written (checked before sampling; nothing is written); 1 the volume was written but the preview
was not; 130 cancelled with Ctrl-C (nothing written). Files are written whole or not at all.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..devices import resolve_device
from ..model.locate import resolve_model_dir
from ..protocol.messages import MAX_SEED

MIN_SIDE = 8  # pixels: smaller is not a photo (also the least output side, as the server's min_output_side)
MAX_SIDE = 30_000  # pixels per side
MAX_PIXELS = 100_000_000  # 100 megapixels
MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_OUTPUT_PIXELS = 2048 * 2048  # a K = 16 volume is 256 bytes per pixel: 1 GiB at this size
DEFAULT_LOOP_SECONDS = 3.0
MAX_LOOP_STRENGTH = 1000.0  # u: the paper's 200 with room; the default is 10 (model/loop_guidance.py)
MAX_PREVIEW_TILE_ASPECT = 4  # a preview tile is at most 4x as wide as high (a 30000 x 8 output stays small)
SUPPORTED = "PNG, JPEG, BMP, WebP or TIFF"


# The model folder rule lives in model/locate.py (the backend service uses it too).


def default_threads(limit: int = 16) -> int:
    """CPU threads: the usable cores not already busy (1-minute load average), 1 .. ``limit``.

    Asking torch's OpenMP pool for cores that other processes occupy makes it spin-wait: on a busy
    2-core machine the tiny model ran 15x slower with 2 threads than with 1.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    return int(max(1, min(limit, usable, round(usable - busy))))


def load_engine(model_dir: Path, engine: str, device: str, threads: int | None = None, onnx_dir: str | None = None):
    """A ``MotionPredictor`` (torch) or ``OnnxMotionEngine`` (onnx), errors as ``UserError``."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    if engine == "torch":
        from ..model.pipeline import MotionPredictor

        dev = resolve_device(device)
        try:
            return MotionPredictor.from_pretrained(model_dir, device=dev)
        except Exception as exc:  # safetensors, JSON and torch errors alike: a damaged or partial model folder
            raise UserError(f"cannot load the model in {model_dir}: {_reason(exc)}", DAMAGED_MODEL_HINT) from exc
    if engine == "onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise UserError("--engine onnx needs onnxruntime", "pip install onnxruntime (or onnxruntime-gpu)") from exc
        from ..model.onnx_engine import OnnxExportError, OnnxMotionEngine

        import warnings

        dev = (device or "auto").lower()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                eng = OnnxMotionEngine(model_dir, onnx_dir, device=dev, threads=threads)
        except OnnxExportError as exc:
            raise UserError(str(exc), f"run: image-dynamics export-onnx --model {model_dir}") from exc
        except Exception as exc:  # config.json / scales.json / onnxruntime errors outside the export check
            raise UserError(f"cannot load the model in {model_dir}: {_reason(exc)}", DAMAGED_MODEL_HINT) from exc
        if dev == "cuda" and eng.provider != "CUDAExecutionProvider":
            print(f"note: --device cuda asked for, but ONNX Runtime runs on {eng.provider} (onnxruntime-gpu is "
                  "missing or its CUDA libraries did not load)", file=sys.stderr)
        return eng
    raise UserError(f"unknown engine {engine!r}", "choose torch or onnx")


DAMAGED_MODEL_HINT = ("the model files are damaged or incomplete: download the model again, or save it again "
                      "from training (MotionPredictor.save_pretrained)")


def _reason(exc: BaseException) -> str:
    """One line naming what went wrong, for messages; library errors get their type too."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f": {exc.filename}" if exc.filename else "")
    text = " ".join(str(exc).split())[:300]
    return text if isinstance(exc, (ValueError, FileNotFoundError)) and text else f"{type(exc).__name__}: {text}"


# -- reading photos safely ------------------------------------------------------------------------------
def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        seg_len = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if i + 9 > n:
                return None
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        if seg_len < 2:
            return None
        i += 2 + seg_len
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    end = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        return None
    (ifd,) = struct.unpack(end + "I", data[4:8])
    if ifd + 2 > len(data):
        return None
    (count,) = struct.unpack(end + "H", data[ifd : ifd + 2])
    dims = {}
    for j in range(count):
        off = ifd + 2 + 12 * j
        if off + 12 > len(data):
            break
        tag, typ = struct.unpack(end + "HH", data[off : off + 4])
        if tag in (256, 257):
            value = struct.unpack(end + ("H" if typ == 3 else "I"), data[off + 8 : off + 10 if typ == 3 else off + 12])[0]
            dims[tag] = value
    if 256 in dims and 257 in dims:
        return dims[256], dims[257]
    return None


def image_header(data: bytes) -> tuple[str, tuple[int, int] | None]:
    """(format, (width, height) or None) from a file's first bytes; format "" if not recognised."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) >= 24 and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return "PNG", (w, h)
        return "PNG", None
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG", _jpeg_size(data)
    if data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return "BMP", (abs(w), abs(h))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return "WebP", (w & 0x3FFF, h & 0x3FFF)
        if chunk == b"VP8L":
            (bits,) = struct.unpack("<I", data[21:25])
            return "WebP", (1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF))
        if chunk == b"VP8X":
            w = 1 + int.from_bytes(data[24:27], "little")
            h = 1 + int.from_bytes(data[27:30], "little")
            return "WebP", (w, h)
        return "WebP", None
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF", _tiff_size(data)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF", None
    return "", None


def check_photo_size(width: int, height: int, name: str) -> None:
    if width == 0 or height == 0:
        raise UserError(f"{name} has no pixels ({width} x {height})", "give a real photo")
    if width < MIN_SIDE or height < MIN_SIDE:
        raise UserError(f"{name} is too small to predict motion from ({width} x {height} px)",
                        f"photos need at least {MIN_SIDE} px per side")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise UserError(f"{name} is too large ({width} x {height} px)",
                        f"scale it down to at most {MAX_SIDE} px per side and {MAX_PIXELS // 1_000_000} megapixels")


def read_photo(path: str | os.PathLike) -> np.ndarray:
    """A photo file -> RGB uint8 (H, W, 3), or a ``UserError`` naming the problem.

    The header is read first (format by content, not by name; size checked before decoding); 16-bit,
    grey and alpha images become 8-bit RGB; EXIF orientation is applied by OpenCV.
    """
    import cv2

    path = Path(path)
    name = path.name or str(path)
    if not path.exists():
        raise UserError(f"no such file: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a photo")
    try:
        size = path.stat().st_size
        if size == 0:
            raise UserError(f"{name} is empty (0 bytes)", f"give a {SUPPORTED} photo")
        if size > MAX_FILE_BYTES:
            raise UserError(f"{name} is too large a file ({size / 2**20:.0f} MiB)", "photos up to 512 MiB are read")
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from exc
    fmt, dims = image_header(data)
    if fmt == "":
        raise UserError(f"{name} is not an image (its content is not {SUPPORTED})", f"give a {SUPPORTED} photo")
    if fmt == "GIF":
        raise UserError(f"{name} is a GIF, which is not supported", "convert it to PNG or JPEG")
    if dims is None:
        raise UserError(f"{name} is a damaged {fmt} file (no readable size in its header)")
    check_photo_size(dims[0], dims[1], name)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise UserError(f"{name} could not be decoded as {fmt} (damaged or truncated?)")
    check_photo_size(bgr.shape[1], bgr.shape[0], name)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def parse_size(text: str | None) -> tuple[int, int] | None:
    """"WxH" -> (W, H), checked; None stays None."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[xX\u00d7]\s*(\d+)\s*", text)
    if not m:
        raise UserError(f"--size must look like WIDTHxHEIGHT (e.g. 512x320), got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if w < 1 or h < 1:
        raise UserError(f"--size {w}x{h} has no pixels")
    if w < MIN_SIDE or h < MIN_SIDE:
        raise UserError(f"--size {w}x{h} is too small", f"sides need at least {MIN_SIDE} px")
    if w * h > MAX_OUTPUT_PIXELS or max(w, h) > MAX_SIDE:
        raise UserError(f"--size {w}x{h} is too large for a spectral volume",
                        f"at most {MAX_OUTPUT_PIXELS} pixels (a 16-frequency volume takes 256 bytes per pixel)")
    return w, h


def default_output_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The photo's size, scaled down (never up), aspect kept, so the longer side is <= ``max_side``;
    no side under ``MIN_SIDE`` (a 30000 x 8 photo gives 128 x 8, not 128 x 1)."""
    f = min(1.0, max_side / max(width, height))
    return max(MIN_SIDE, int(round(width * f))), max(MIN_SIDE, int(round(height * f)))


# -- the preview picture ---------------------------------------------------------------------------------
def power_chart(power: np.ndarray, freqs_hz: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bar chart of the power per frequency (share of the total, %), RGB uint8 of ``size`` (W, H)."""
    import cv2

    w, h = size
    canvas = np.full((h, w, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    total = float(power.sum())
    share = power / total if total > 0 else np.zeros_like(power)
    pad_l, pad_r, pad_t, pad_b = 34, 8, 10, 30
    top = max(float(share.max()), 1e-9)
    K = len(power)
    span = w - pad_l - pad_r
    bar_w = span / K
    base = h - pad_b
    cv2.line(canvas, (pad_l, base), (w - pad_r, base), (0, 0, 0), 1)
    cv2.line(canvas, (pad_l, pad_t), (pad_l, base), (0, 0, 0), 1)
    for frac in (0.0, 0.5, 1.0):
        y = int(round(base - frac * (base - pad_t)))
        cv2.putText(canvas, f"{100 * frac * top:.0f}%", (1, y + 4), font, 0.32, (90, 90, 90), 1, cv2.LINE_AA)
    for k in range(K):
        x0 = int(round(pad_l + k * bar_w + 1))
        x1 = int(round(pad_l + (k + 1) * bar_w - 1))
        y = int(round(base - share[k] / top * (base - pad_t)))
        cv2.rectangle(canvas, (x0, min(y, base - 1)), (max(x1, x0), base - 1), (220, 90, 40), -1)
    for k in range(0, K, max(1, K // 4)):
        x = int(round(pad_l + (k + 0.5) * bar_w))
        cv2.putText(canvas, f"{freqs_hz[k]:.1f}", (x - 8, base + 12), font, 0.32, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(canvas, "Hz", (w - 24, base + 24), font, 0.35, (60, 60, 60), 1, cv2.LINE_AA)
    return canvas


def preview_figure(image: np.ndarray, S: np.ndarray, num_frames: int, fps: float, tile_height: int = 240) -> np.ndarray:
    """Photo | mean motion magnitude heat map | power per frequency, one row with captions.

    Tiles are ``tile_height`` high and keep the photo's aspect up to ``MAX_PREVIEW_TILE_ASPECT``
    (wider photos are squeezed), so the figure's size is bounded whatever the output size."""
    import cv2

    from ..evaluation.metrics import mean_motion_magnitude_fast, power_per_frequency
    from ..motion.spectral import frequencies_hz
    from ..viz import labelled, magnitude_heatmap

    H, W = image.shape[:2]
    scale = tile_height / H
    tw = min(max(48, int(round(W * scale))), MAX_PREVIEW_TILE_ASPECT * tile_height)
    mag = mean_motion_magnitude_fast(S, num_frames)
    vmax = max(float(np.percentile(mag, 99.5)), 0.5)
    photo = cv2.resize(image, (tw, tile_height), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    heat = cv2.resize(magnitude_heatmap(mag, vmax), (tw, tile_height), interpolation=cv2.INTER_NEAREST)
    power = power_per_frequency(S)
    chart = power_chart(power, frequencies_hz(S.shape[0], num_frames, fps), (max(240, tile_height), tile_height))
    tiles = [
        labelled(photo, f"photo {W}x{H}", scale=1),
        labelled(heat, f"mean |D| 0-{vmax:.1f} px (max {float(mag.max()):.1f})", scale=1),
        labelled(chart, "power per frequency (% of total)", scale=1),
    ]
    gap = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
    row = [tiles[0], gap, tiles[1], gap, tiles[2]]
    return np.concatenate(row, axis=1)


# -- the command ------------------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    from ..model.config import SAMPLER_NAMES

    p = sub.add_parser("predict", help="predict the motion of a photo (spectral volume file)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", help=f"the photo ({SUPPORTED})")
    p.add_argument("--out", required=True, help="output spectral-volume file (.npz)")
    p.add_argument("--model", default=None, help="model folder (default: models/default, or $IMAGE_DYNAMICS_MODEL)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed, 0 to 2**63-1: same seed (and --threads), same motion (default 0)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's, 25)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance weight w (default: the model's, 1.75)")
    p.add_argument("--sampler", choices=SAMPLER_NAMES, default="ddim", help="sampler (default ddim)")
    p.add_argument("--loop", action="store_true", help="guide the sample towards a seamless loop of --loop-seconds")
    p.add_argument("--loop-seconds", type=float, default=DEFAULT_LOOP_SECONDS,
                   help=f"loop length for --loop (default {DEFAULT_LOOP_SECONDS:g} s)")
    p.add_argument("--loop-strength", type=float, default=10.0,
                   help=f"loop guidance strength u, 0 to {MAX_LOOP_STRENGTH:g} (default 10)")
    p.add_argument("--size", default=None, metavar="WxH",
                   help="output resolution, sides of at least 8 px (default: the photo's aspect, longer side = "
                        "the model's, 128 px for models/default, never more than the photo's)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run (default auto)")
    p.add_argument("--engine", choices=("torch", "onnx"), default="torch", help="inference engine (default torch)")
    p.add_argument("--onnx-dir", default=None, help="ONNX files (default MODEL/onnx; see export-onnx)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: the usable cores not busy right now, so it varies with the load; "
                        "identical bytes need the same seed AND the same --threads; the file records it)")
    p.add_argument("--preview", default=None, metavar="PNG", help="also draw photo | motion heat map | power per frequency")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _check_args(args) -> None:
    if not str(args.out).endswith(".npz"):
        raise UserError(f"--out must name a .npz file, got {args.out!r}")
    if args.preview is not None and not str(args.preview).lower().endswith(".png"):
        raise UserError(f"--preview must name a .png file, got {args.preview!r}")
    if args.steps is not None and not 1 <= args.steps <= 1000:
        raise UserError(f"--steps must be between 1 and 1000, got {args.steps}")
    if args.guidance is not None and not (np.isfinite(args.guidance) and 0 <= args.guidance <= 50):
        raise UserError(f"--guidance must be between 0 and 50, got {args.guidance}")
    if args.loop and not (np.isfinite(args.loop_seconds) and 0 < args.loop_seconds <= 60):
        raise UserError(f"--loop-seconds must be in (0, 60], got {args.loop_seconds}")
    if args.threads is not None and args.threads < 1:
        raise UserError("--threads must be at least 1")
    if not 0 <= args.seed <= MAX_SEED:  # torch's generator takes no more; negative seeds would alias others
        raise UserError(f"--seed must be from 0 to 2**63-1, got {args.seed}")
    if not (np.isfinite(args.loop_strength) and 0 <= args.loop_strength <= MAX_LOOP_STRENGTH):
        raise UserError(f"--loop-strength must be from 0 to {MAX_LOOP_STRENGTH:g}, got {args.loop_strength}")
    # The outputs are checked now, not after minutes of sampling.
    check_writable(args.out, "--out", ".partial.npz")
    if args.preview is not None:
        check_writable(args.preview, "--preview", ".partial.png")


def check_writable(path_text: str, flag: str, temp_suffix: str) -> None:
    """``path_text`` can be written later: not a folder, its folder exists or can be made, and takes
    new files. Probed by creating (and removing) a temp file there, as the write itself will, so
    permissions, read-only file systems and places like /proc answer now as they would then."""
    from ..motion.volume_file import create_temp_beside

    path = Path(os.path.abspath(path_text))
    if path.is_dir():
        example = Path(path_text) / ("motion" + path.suffix)
        raise UserError(f"{flag} {path_text} is a folder", f"name a file in it, e.g. {example}")
    folder = path.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot write {path_text}: {existing} is not a folder")
    try:
        fd, tmp = create_temp_beside(str(existing / path.name), temp_suffix)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UserError(f"cannot write {path_text}: cannot create files in {existing} ({exc.strerror or exc})",
                        "choose a folder you can write to") from None


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    size = parse_size(args.size)
    photo = read_photo(args.image)
    model_dir = resolve_model_dir(args.model)
    threads = args.threads or default_threads()
    engine = load_engine(model_dir, args.engine, args.device, threads, args.onnx_dir)
    cfg = engine.config
    out_w, out_h = size if size is not None else default_output_size(photo.shape[1], photo.shape[0], max(cfg.resolution))
    loop_frames = args.loop_seconds * cfg.fps if args.loop else None
    if loop_frames is not None and loop_frames < 2:
        raise UserError(f"--loop-seconds {args.loop_seconds:g} is shorter than two frames")

    from tqdm import tqdm

    from ..model.errors import SamplingCancelled
    from ..model.onnx_engine import OnnxExportError
    from ..motion.resample import resample_image
    from ..motion.volume_file import SpectralVolume, VolumeFileError, save_volume

    steps = args.steps if args.steps is not None else cfg.diffusion.num_sampling_steps
    where = engine.provider if args.engine == "onnx" else str(engine.device)
    print(f"model {model_dir} ({cfg.preset}, {cfg.resolution[0]}x{cfg.resolution[1]}), engine {args.engine} on {where}, "
          f"{steps} {args.sampler} steps, seed {args.seed}" + (f", loop {args.loop_seconds:g} s" if args.loop else ""),
          file=sys.stderr)
    # Ctrl-C during sampling sets a flag the sampler polls before every model call (a clean stop,
    # nothing written); a second Ctrl-C interrupts at once.
    stop = threading.Event()

    def on_sigint(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    in_main = threading.current_thread() is threading.main_thread()
    old_handler = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    bar = tqdm(total=steps, desc="sampling", unit="step", disable=args.quiet, file=sys.stderr, leave=False)

    def on_step(i, n, _x0):
        bar.update(1)

    t0 = time.perf_counter()
    try:
        S = engine.predict(photo, seed=args.seed, steps=steps, guidance=args.guidance, loop_frames=loop_frames,
                           loop_strength=args.loop_strength, size=(out_w, out_h), sampler=args.sampler,
                           callback=on_step, should_stop=stop.is_set)
    except OnnxExportError as exc:  # ONNX engine: the torch VAE weights for loop guidance
        raise UserError(str(exc), DAMAGED_MODEL_HINT) from None
    except SamplingCancelled as exc:
        bar.close()
        print(f"image-dynamics predict: cancelled after {exc.step} of {exc.total} steps; nothing written",
              file=sys.stderr)
        return 130
    finally:
        bar.close()
        if in_main:
            signal.signal(signal.SIGINT, old_handler)
    seconds = time.perf_counter() - t0
    bad = int(np.count_nonzero(~np.isfinite(S)))
    if bad:
        raise UserError(f"the predicted motion has {bad} NaN or Inf values; nothing written",
                        "lower --loop-strength or --guidance; if plain predictions do it too, the model is damaged")

    image = resample_image(photo, out_w, out_h)
    guidance = cfg.diffusion.guidance_scale if args.guidance is None else args.guidance
    meta = {
        "seed": args.seed,
        "steps": steps,
        "sampler": args.sampler,
        "guidance": guidance,
        "loop_seconds": args.loop_seconds if args.loop else None,
        "loop_frames": loop_frames,
        "loop_strength": args.loop_strength if args.loop else None,
        "engine": args.engine,
        "provider": where,
        "threads": int(threads),  # identical bytes need the same thread count (see --threads)
        "model": str(model_dir),
        "preset": cfg.preset,
        "model_resolution": list(cfg.resolution),
        "input": Path(args.image).name,
        "input_size": [int(photo.shape[1]), int(photo.shape[0])],
        "resize_policy": "photo stretched to the model resolution; volume resampled to the output size "
                         "with vectors rescaled per axis; no crop",
    }
    vol = SpectralVolume(S=S, fps=cfg.fps, num_frames=cfg.num_frames, image=image, source="predict", meta=meta)
    figure = preview_figure(image, S, cfg.num_frames, cfg.fps) if args.preview else None  # before anything is written
    try:
        save_volume(args.out, vol)
    except (OSError, VolumeFileError) as exc:
        raise UserError(f"cannot write {args.out}: {_reason(exc)}; nothing written",
                        "choose a folder you can write to, with free space") from None
    print(f"wrote {args.out}: {S.shape[0]} frequencies, {out_w}x{out_h} px, in {seconds:.1f} s")
    if figure is not None:
        from ..viz import save_png

        try:
            os.makedirs(os.path.dirname(os.path.abspath(args.preview)), exist_ok=True)
            save_png(args.preview, figure)
        except OSError as exc:
            err = UserError(f"cannot write the preview {args.preview}: {_reason(exc)}",
                            f"the volume {args.out} was written and is complete; only the preview is missing")
            err.exit_code = 1  # not 2: the main output exists (see "Exit status" in --help)
            raise err from None
        print(f"preview: {args.preview}")
    return 0
