"""``image-dynamics animate``: a photo and its motion -> a video (MP4 / GIF) or a folder of PNGs.

    image-dynamics animate PHOTO --out OUT.mp4|OUT.gif|DIR/ [--motion FILE.npz]
        [--seconds S] [--fps F] [--loop] [--magnify A] [--speed X]
        [--renderer splat|mesh|backward] [--renderer-model DIR] [--size WxH] [--crf N]
        [--model DIR] [--seed N] [--steps N] [--device auto|cpu|cuda]

Without ``--motion`` the motion is predicted first (the motion model ``--model``, default
models/default; ``--seed`` / ``--steps`` as in ``predict``). A motion file of another resolution
is resampled to the output size (vectors rescaled with the grid, ``motion.resample``). The output
size is the photo's, or ``--size``.

Timing (``motion.playback``): frame n shows the motion at n * speed / fps seconds, so it plays in
real time at any ``--fps``; ``--speed 0.5`` is slow motion, ``--magnify 2`` doubles every
displacement. ``--loop`` makes the whole clip one seamless loop: the frequencies are snapped so the
motion closes after ``--seconds`` and it starts at rest, so the frame after the last is the first
frame again (a GIF, or a player on repeat, shows no seam). Without ``--loop`` the motion is the
volume's own, which repeats every 5 s (its 150-frame window) anyway.

Renderers (``render``): ``splat`` is the trained softmax-splatting network (models/renderer, or
``--renderer-model``); ``mesh`` warps the photo as a mesh (what the Blender plane shows);
``backward`` samples the photo backwards along the motion (fast, smears at motion edges).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..protocol.messages import MAX_SEED

DEFAULT_FPS = 30.0
MAX_SECONDS = 600.0
MAX_WORK_BYTES = 8 * 2**30  # displacements (8 B / px) + frames (3 B / px) held at once


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("animate", help="render a photo's motion as MP4, GIF or PNG frames", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", help="the photo (PNG, JPEG, BMP, WebP or TIFF)")
    p.add_argument("--out", required=True, help="OUT.mp4 (H.264), OUT.gif, or DIR/ for PNG frames")
    p.add_argument("--motion", default=None, metavar="NPZ", help="a spectral-volume file (default: predict it now)")
    p.add_argument("--seconds", type=float, default=None,
                   help="clip length (default: the volume's window, 5 s)")
    p.add_argument("--fps", type=float, default=DEFAULT_FPS, help=f"frames per second (default {DEFAULT_FPS:g})")
    p.add_argument("--loop", action="store_true", help="make the clip one seamless loop (last frame flows into the first)")
    p.add_argument("--magnify", type=float, default=1.0, help="scale the motion (default 1)")
    p.add_argument("--speed", type=float, default=1.0, help="play the motion faster (>1) or slower (<1) (default 1)")
    p.add_argument("--renderer", choices=("splat", "mesh", "backward"), default="splat",
                   help="splat: trained network (default); mesh: mesh warp; backward: backward warp")
    p.add_argument("--renderer-model", default=None, metavar="DIR", help="splat network folder (default models/renderer)")
    p.add_argument("--size", default=None, metavar="WxH", help="output size (default: the photo's)")
    p.add_argument("--crf", type=int, default=18, help="MP4 quality, x264 constant rate factor 0-51 (default 18)")
    g = p.add_argument_group("prediction (without --motion)")
    g.add_argument("--model", default=None, help="motion model folder (default: models/default, or $IMAGE_DYNAMICS_MODEL)")
    g.add_argument("--seed", type=int, default=0, help="random seed of the prediction (default 0)")
    g.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run (default auto)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: usable cores not busy)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _check_args(args) -> None:
    from ..video import output_kind

    output_kind(args.out)  # the extension, before any work
    if not (np.isfinite(args.fps) and 1 <= args.fps <= 240):
        raise UserError(f"--fps must be from 1 to 240, got {args.fps:g}")
    if args.seconds is not None and not (np.isfinite(args.seconds) and 0 < args.seconds <= MAX_SECONDS):
        raise UserError(f"--seconds must be in (0, {MAX_SECONDS:g}], got {args.seconds:g}")
    if not (np.isfinite(args.speed) and 0.01 <= args.speed <= 100):
        raise UserError(f"--speed must be from 0.01 to 100, got {args.speed:g}")
    if not (np.isfinite(args.magnify) and -100 <= args.magnify <= 100):
        raise UserError(f"--magnify must be from -100 to 100, got {args.magnify:g}")
    if not 0 <= args.crf <= 51:
        raise UserError(f"--crf must be from 0 to 51, got {args.crf}", "18 is visually lossless, 23 x264's default")
    if args.steps is not None and not 1 <= args.steps <= 1000:
        raise UserError(f"--steps must be between 1 and 1000, got {args.steps}")
    if not 0 <= args.seed <= MAX_SEED:  # as predict: torch's generator takes no more
        raise UserError(f"--seed must be from 0 to {MAX_SEED}, got {args.seed}")
    if args.threads is not None and args.threads < 1:
        raise UserError("--threads must be at least 1")
    if args.motion is not None and not str(args.motion).endswith(".npz"):
        raise UserError(f"--motion must name a .npz spectral-volume file, got {args.motion!r}")


class _Stop:
    """Ctrl-C sets a flag the predictor and the renderer poll (a clean stop, nothing written); a
    second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._old = None

    def __enter__(self) -> "_Stop":
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum, frame) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _load_motion(path: str):
    from ..motion.volume_file import VolumeFileError, load_volume

    try:
        return load_volume(path)
    except VolumeFileError as exc:
        raise UserError(str(exc), "pass a .npz written by `image-dynamics predict` or `extract`") from None


def _predict_motion(args, photo: np.ndarray, stop: _Stop):
    """Predict with the motion model; returns a SpectralVolume at the model's detail."""
    from tqdm import tqdm

    from ..model.errors import SamplingCancelled
    from ..motion.volume_file import SpectralVolume
    from .predict import default_output_size, default_threads, load_engine, resolve_model_dir

    model_dir = resolve_model_dir(args.model)
    engine = load_engine(model_dir, "torch", args.device, args.threads or default_threads())
    cfg = engine.config
    size = default_output_size(photo.shape[1], photo.shape[0], max(cfg.resolution))
    steps = args.steps if args.steps is not None else cfg.diffusion.num_sampling_steps
    print(f"predicting the motion: model {model_dir} ({cfg.preset}) on {engine.device}, {steps} steps, "
          f"seed {args.seed}", file=sys.stderr)
    bar = tqdm(total=steps, desc="predicting", unit="step", disable=args.quiet, file=sys.stderr, leave=False)
    try:
        S = engine.predict(photo, seed=args.seed, steps=steps, size=size, callback=lambda *_: bar.update(1),
                           should_stop=stop.event.is_set)
    except SamplingCancelled as exc:
        raise UserError(f"cancelled while predicting (after {exc.step} of {exc.total} steps); nothing written") from None
    finally:
        bar.close()
    return SpectralVolume(S=S, fps=cfg.fps, num_frames=cfg.num_frames, source="predict",
                          meta={"model": str(model_dir), "seed": args.seed, "steps": steps})


def _make_renderer(args):
    from ..render import make_renderer
    from ..devices import resolve_device

    device = resolve_device(args.device)
    try:
        return make_renderer(args.renderer, model_dir=args.renderer_model, device=device)
    except UserError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        raise UserError(f"cannot load the {args.renderer} renderer: {exc}",
                        "train it (models/renderer), pass --renderer-model DIR, or use --renderer mesh") from None


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    from tqdm import tqdm

    from ..motion.playback import ClipTiming, clip_coordinates, displacements
    from ..motion.resample import resample_image, resample_volume
    from ..video import even_size, open_writer
    from .predict import parse_size, read_photo

    size = parse_size(args.size)
    photo = read_photo(args.image)
    if args.motion is not None and not Path(args.motion).is_file():
        raise UserError(f"no such motion file: {args.motion}")
    out_w, out_h = size if size is not None else (photo.shape[1], photo.shape[0])
    with _Stop() as stop:
        volume = _load_motion(args.motion) if args.motion else _predict_motion(args, photo, stop)
        vol_seconds = volume.num_frames / volume.fps
        seconds = args.seconds if args.seconds is not None else vol_seconds
        frames = max(1, int(round(seconds * args.fps)))
        work = frames * out_w * out_h * 11
        if work > MAX_WORK_BYTES:
            raise UserError(f"{frames} frames at {out_w} x {out_h} need about {work / 2**30:.1f} GiB of memory",
                            "render fewer --seconds, a lower --fps or a smaller --size")
        try:
            timing = ClipTiming(frames=frames, fps=args.fps, speed=args.speed, magnify=args.magnify, loop=args.loop)
            coords = clip_coordinates(volume.num_freqs, timing, volume.fps, volume.num_frames)
        except ValueError as exc:
            raise UserError(f"cannot time this clip: {exc}", "make --seconds longer or --speed higher") from None
        image = photo if (out_w, out_h) == (photo.shape[1], photo.shape[0]) else resample_image(photo, out_w, out_h)
        S = volume.S if (volume.width, volume.height) == (out_w, out_h) else resample_volume(volume.S, out_w, out_h)
        D = displacements(S, coords, args.magnify)
        del S
        renderer = _make_renderer(args)
        print(f"rendering {frames} frames ({frames / args.fps:.2f} s at {args.fps:g} fps{', seamless loop' if args.loop else ''}) "
              f"at {out_w} x {out_h} with the {args.renderer} renderer", file=sys.stderr)
        bar = tqdm(total=frames, desc="rendering", unit="frame", disable=args.quiet, file=sys.stderr, leave=False)

        def progress(done, total):
            bar.update(done - bar.n)

        t0 = time.perf_counter()
        try:
            video = renderer.render(image, D, progress=progress, cancel=stop.event.is_set)
        finally:
            bar.close()
        del D
        render_s = time.perf_counter() - t0
        with open_writer(args.out, args.fps, crf=args.crf) as writer:
            for frame in tqdm(video, desc="writing", unit="frame", disable=args.quiet, file=sys.stderr, leave=False):
                if stop.event.is_set():
                    raise UserError("cancelled while writing; nothing written")
                writer.write(frame)
    w, h = even_size(out_w, out_h) if writer.kind == "mp4" else (out_w, out_h)
    print(f"wrote {args.out}: {frames} frames, {w}x{h}, {args.fps:g} fps ({writer.kind}), rendered in {render_s:.1f} s "
          f"({frames / max(render_s, 1e-9):.1f} fps)")
    return 0
