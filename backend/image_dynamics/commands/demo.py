"""``image-dynamics demo``: the README's main job, the whole product path on the bundled photo.

1. builds the Blender extension (``scripts/build_extension.py``, into a temporary folder);
2. starts the backend, ``image-dynamics serve --model models/default`` on a free loopback port, as
   a subprocess, and waits for its ready line;
3. runs Blender (the ``bpy`` module, in its own process: torch and Blender never share one) on
   ``scripts/blender_demo_scene.py``, which installs the extension into a temporary user
   repository and, with the add-on's own operators, imports the photo as a plane, predicts its
   motion through the add-on's ZeroMQ client, writes the loop keyframes, fits the plane to the
   camera as a backdrop, saves the .blend and renders the loop to an MP4 with Blender's FFMPEG
   output;
4. stops the backend and checks the loop: the frame after the last renders exactly like the first
   (else it fails), the step into it is printed beside the step from the first frame to the second,
   and the video must decode to the loop's frames.

Outputs in --out (default out/demo): demo.mp4, demo.blend, motion.npz, seam_*.png, summary.json,
backend.log, blender.log.

``--extraction`` runs the earlier demo instead: procedural scenes with exact ground-truth motion,
their motion extracted back from the rendered videos, and a picture comparing the two.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import UserError

REPO = Path(__file__).resolve().parents[3]
PHOTO = Path(__file__).resolve().parents[1] / "assets" / "photos" / "dandelion_meadow.jpg"
BLENDER_SCRIPT = REPO / "scripts" / "blender_demo_scene.py"
BUILD_SCRIPT = REPO / "scripts" / "build_extension.py"
READY_RE = re.compile(r"image-dynamics backend ready on (tcp://\S+)")
SCENE_PREFIX = "image-dynamics demo:"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the main job end to end on bundled data", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--seed", type=int, default=None,
                   help="prediction seed (default 0); with --extraction the first scene's seed (default 2024)")
    g = p.add_argument_group("the product path (default)")
    g.add_argument("--model", default=None, metavar="FOLDER",
                   help="motion model folder (default: models/default, or $IMAGE_DYNAMICS_MODEL)")
    g.add_argument("--photo", default=str(PHOTO), help="the photo (default: the bundled dandelion_meadow.jpg)")
    g.add_argument("--steps", type=int, default=0, help="sampling steps (default: the model's)")
    g.add_argument("--device", default="auto", help="backend device: auto, cpu or cuda (default: auto)")
    g.add_argument("--seconds", type=float, default=3.0, help="length of the loop (default: 3)")
    g.add_argument("--fps", type=int, default=24, help="video frame rate (default: 24)")
    g.add_argument("--resolution", default=None, metavar="WxH",
                   help="video size (default: 480 wide at the photo's aspect ratio)")
    g.add_argument("--engine", choices=("CYCLES", "EEVEE"), default="CYCLES", help="render engine (default: CYCLES)")
    g.add_argument("--samples", type=int, default=8, help="render samples per pixel (default: 8)")
    g.add_argument("--magnify", type=float, default=1.0, help="scale the predicted motion (default: 1, as predicted)")
    e = p.add_argument_group("the extraction demo")
    e.add_argument("--extraction", action="store_true",
                   help="instead: procedural scenes, motion extracted from their videos, compared with the truth")
    e.add_argument("--scenes", type=int, default=3, help="procedural scenes to generate (default: 3)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_extraction(args) if args.extraction else run_product(args)


# -- the product path -------------------------------------------------------------------------------

def _model_folder(arg: str | None) -> Path:
    from ..model.locate import resolve_model_dir

    return resolve_model_dir(arg).resolve()  # absolute: handed to the backend and Blender processes


def _video_size(arg: str | None, photo: Path) -> tuple[int, int]:
    if arg:
        try:
            w, h = (int(v) for v in arg.lower().split("x"))
        except ValueError:
            raise UserError(f"--resolution must be WxH, got {arg!r}", "e.g. --resolution 480x270") from None
        if w < 8 or h < 8 or w % 2 or h % 2:
            raise UserError(f"--resolution {arg}: both sides must be even and at least 8", "H.264 needs even sizes")
        return w, h
    import cv2

    img = cv2.imread(str(photo), cv2.IMREAD_REDUCED_COLOR_4)  # the aspect ratio is all that is needed
    if img is None:
        raise UserError(f"cannot read the photo {photo}", "pass --photo with a PNG or JPEG file")
    h, w = img.shape[:2]
    return 480, max(8, 2 * round(480 * h / w / 2))


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("image-dynamics")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "image_dynamics.cli"]


class _Backend:
    """``image-dynamics serve`` as a subprocess: stdout watched for the ready line, stderr to a log."""

    def __init__(self, model: Path, device: str, log_path: Path) -> None:
        from .predict import default_threads

        self.log = open(log_path, "w")
        cmd = _cli() + ["serve", "--model", str(model), "--bind", "tcp://127.0.0.1:0", "--device", device,
                        "--threads", str(default_threads())]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL,
                                     text=True, bufsize=1)
        self.address: str | None = None
        self._ready = threading.Event()
        # Reading in a thread keeps the pipe from filling once the ready line has been seen.
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in iter(self.proc.stdout.readline, ""):
            self.log.write(line)
            m = READY_RE.search(line)
            if m and self.address is None:
                self.address = m.group(1)
                self._ready.set()
        self._ready.set()  # exited

    def wait_ready(self, timeout: float) -> str:
        self._ready.wait(timeout)
        if self.address is None:
            self.stop()
            tail = [ln for ln in Path(self.log.name).read_text().splitlines() if ln.strip()][-3:]
            detail = " / ".join(tail) or "no output"
            raise UserError(f"the backend did not start: {detail}", f"its log is {self.log.name}")
        return self.address

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # serve cancels its jobs and exits 0
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.flush()
        return self.proc.returncode


def _run_blender(cmd: list[str], env: dict, log_path: Path) -> tuple[int, str]:
    """Run the Blender script; echo its ``image-dynamics demo:`` lines, log everything.
    Returns (exit status, its last error line)."""
    error = ""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                text=True, bufsize=1, env=env)
        try:
            for line in iter(proc.stdout.readline, ""):
                log.write(line)
                if line.startswith(SCENE_PREFIX):
                    text = line[len(SCENE_PREFIX) + 1:].rstrip()
                    if text.startswith("error:"):
                        error = text[len("error:"):].strip()
                    else:
                        print(text, flush=True)
            proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode, error


def _read_video(path: Path) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise UserError(f"the video {path} cannot be decoded", "see blender.log in the output folder")
    return np.stack(frames).astype(np.float32)


def check_loop(video: Path, seams: dict, loop_frames: int) -> dict:
    """Is the loop seamless? Exactly: the frame after the last, rendered as a still, equals the first.
    Smoothly: the step from the last frame to the next is like the step from the first to the second
    (the motion's velocity is periodic too). The video: it decodes to the loop's frames, its first
    and last frames are the rendered ones up to H.264's error."""
    import cv2

    st = {k: cv2.imread(str(p)).astype(np.float32) for k, p in seams.items()}
    v = _read_video(video)
    steps = np.abs(np.diff(v, axis=0)).mean(axis=(1, 2, 3))  # mean |frame i+1 - frame i|, 0..255
    if v.shape[0] != loop_frames or v.shape[1:] != st["first"].shape:
        raise UserError(f"the video has {v.shape[0]} frames of {v.shape[2]}x{v.shape[1]}, expected {loop_frames} "
                        f"of {st['first'].shape[1]}x{st['first'].shape[0]}", "see blender.log in the output folder")
    return {
        "video_frames": int(v.shape[0]),
        "video_size": [int(v.shape[2]), int(v.shape[1])],
        "next_vs_first_max_abs": float(np.abs(st["next"] - st["first"]).max()),
        "step_last_to_next_mean_abs": float(np.abs(st["next"] - st["last"]).mean()),
        "step_first_to_second_mean_abs": float(np.abs(st["second"] - st["first"]).mean()),
        "video_first_vs_still_mean_abs": float(np.abs(v[0] - st["first"]).mean()),  # H.264 (yuv420p) error
        "video_last_vs_still_mean_abs": float(np.abs(v[-1] - st["last"]).mean()),
        "video_steps_mean_abs": [float(x) for x in steps],
        "video_wrap_mean_abs": float(np.abs(v[0] - v[-1]).mean()),
    }


def run_product(args: argparse.Namespace) -> int:
    if not BLENDER_SCRIPT.is_file() or not BUILD_SCRIPT.is_file():
        raise UserError(f"the demo needs the repository's scripts/ folder (looked in {REPO / 'scripts'})",
                        "run it from a checkout of the repository: bash scripts/demo.sh")
    if importlib.util.find_spec("bpy") is None:
        raise UserError("the bpy module (Blender as a Python module) is not installed in this environment",
                        "run bash scripts/bootstrap.sh, or pip install 'numpy<2' bpy==5.0.1")
    model = _model_folder(args.model)
    photo = Path(args.photo).expanduser().resolve()
    if not photo.is_file():
        raise UserError(f"no photo at {photo}", "pass --photo with a PNG or JPEG file")
    size = _video_size(args.resolution, photo)
    loop_frames = int(round(args.seconds * args.fps))
    if loop_frames < 2 or args.fps < 1 or args.samples < 1:
        raise UserError("the loop needs at least 2 frames", "pass a positive --seconds, --fps and --samples")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("demo.mp4", "demo.blend", "motion.npz", "summary.json", "scene.json"):
        (out / stale).unlink(missing_ok=True)

    t_all = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="image-dynamics-demo-"))
    backend = None
    try:
        print(f"[1/6] building the Blender extension ({BUILD_SCRIPT.relative_to(REPO)})", flush=True)
        res = subprocess.run([sys.executable, str(BUILD_SCRIPT), "--no-wheels", "--out", str(work / "dist"),
                              "--build-dir", str(work / "build")], capture_output=True, text=True)
        zips = sorted((work / "dist").glob("*.zip"))
        if res.returncode != 0 or len(zips) != 1:
            raise UserError(f"building the extension failed: {(res.stderr or res.stdout).strip()[-500:]}",
                            "run python scripts/build_extension.py --no-wheels to see why")

        print(f"[2/6] starting the backend: image-dynamics serve --model {model}", flush=True)
        t0 = time.perf_counter()
        backend = _Backend(model, args.device, out / "backend.log")
        address = backend.wait_ready(300.0)
        print(f"  ready on {address} in {time.perf_counter() - t0:.1f} s", flush=True)

        cmd = [sys.executable, str(BLENDER_SCRIPT), "--out", str(out), "--photo", str(photo), "--backend", address,
               "--addon-zip", str(zips[0]), "--seed", str(args.seed or 0), "--steps", str(args.steps),
               "--fps", str(args.fps), "--loop-frames", str(loop_frames), "--resolution", f"{size[0]}x{size[1]}",
               "--engine", args.engine, "--samples", str(args.samples), "--magnify", str(args.magnify)]
        # The extension goes into a throw-away user repository, never into the user's own Blender.
        env = {**os.environ, "BLENDER_USER_RESOURCES": str(work / "blender-user")}
        code, error = _run_blender(cmd, env, out / "blender.log")
        if code != 0:
            raise UserError(f"the Blender part failed: {error or f'exit status {code}'}",
                            f"its log is {out / 'blender.log'}")
    finally:
        if backend is not None:
            print("[6/6] stopping the backend; checking the loop", flush=True)
            backend.stop()
        shutil.rmtree(work, ignore_errors=True)

    scene = json.loads((out / "scene.json").read_text())
    (out / "scene.json").unlink()
    seams = {k: Path(p) for k, p in scene.pop("seam_stills").items()}
    loop = check_loop(out / "demo.mp4", seams, scene["loop_frames"])
    summary = {**scene, "photo": str(photo), "model_folder": str(model), "loop_check": loop,
               "total_seconds": time.perf_counter() - t_all}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))

    print()
    print(f"backend        {scene['model']}")
    print(f"video          {loop['video_frames']} frames, {loop['video_size'][0]}x{loop['video_size'][1]}, "
          f"{scene['fps']} fps ({scene['engine']}, {scene['samples']} samples), rendered in "
          f"{scene['seconds']['render']:.1f} s")
    print(f"motion         largest displacement {scene['largest_motion_px']:.2f} px in the video"
          f" (magnify {scene['magnify']:g})")
    print(f"loop           frame {scene['frame_end'] + 1} renders like frame {scene['frame_start']}: max |difference| "
          f"{loop['next_vs_first_max_abs']:.0f} of 255; step {scene['frame_end']} -> {scene['frame_end'] + 1}: "
          f"{loop['step_last_to_next_mean_abs']:.3f}, step 1 -> 2: {loop['step_first_to_second_mean_abs']:.3f} "
          f"(mean |difference|, 0-255)")
    print(f"total          {summary['total_seconds']:.0f} s")
    print()
    for label, name in (("video", "demo.mp4"), ("scene", "demo.blend"), ("motion", "motion.npz"),
                        ("summary", "summary.json"), ("logs", "backend.log, blender.log")):
        print(f"{label:<15}{out / name if label != 'logs' else name + ' in ' + str(out)}")
    if loop["next_vs_first_max_abs"] > 0:
        raise UserError("the rendered loop is not seamless (see loop_check in summary.json)",
                        "this is a bug: please report it with summary.json")
    return 0


# -- the extraction demo ----------------------------------------------------------------------------

def run_extraction(args: argparse.Namespace) -> int:
    """The procedural-scenes extraction demo (``--extraction``)."""
    from ..extract.extractor import extract_volume
    from ..motion.spectral import spectral_to_motion
    from ..motion.volume_file import load_volume, save_volume
    from ..synth.dataset import write_clips
    from ..viz import comparison_figure, save_png

    clips_dir = os.path.join(args.out, "clips")
    extracted_dir = os.path.join(args.out, "extracted")
    os.makedirs(extracted_dir, exist_ok=True)

    t0 = time.perf_counter()
    print(f"[1/3] rendering {args.scenes} procedural scenes with ground-truth motion -> {clips_dir}")
    clips = write_clips(clips_dir, count=args.scenes, seed0=2024 if args.seed is None else args.seed)
    t_synth = time.perf_counter() - t0

    print("[2/3] extracting motion from the rendered videos (optical flow, frame 0 -> every frame)")
    rows = []
    figures = []
    for truth_path in clips:
        video_path = str(truth_path.with_suffix(".mkv"))
        truth = load_volume(truth_path)
        t1 = time.perf_counter()
        est = extract_volume(video_path, start_frame=0)
        seconds = time.perf_counter() - t1
        name = os.path.splitext(os.path.basename(video_path))[0]
        save_volume(os.path.join(extracted_dir, name + ".npz"), est)

        d_true = spectral_to_motion(truth.S)
        d_est = spectral_to_motion(est.S)
        err = np.linalg.norm(d_true - d_est, axis=1).mean(axis=0)
        moving = np.linalg.norm(d_true, axis=1).mean(axis=0) > 0.05
        rows.append({
            "clip": name,
            "moving_fraction": float(moving.mean()),
            "epe_moving_px": float(err[moving].mean()) if moving.any() else 0.0,
            "epe_static_px": float(err[~moving].mean()) if (~moving).any() else 0.0,
            "extract_seconds": seconds,
        })
        figures.append(comparison_figure(truth.image, truth.S, est.S, title=name))

    print("[3/3] writing the comparison picture")
    sheet = np.concatenate(figures, axis=0)
    figure_path = os.path.join(args.out, "comparison.png")
    save_png(figure_path, sheet)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({"synth_seconds": t_synth, "clips": rows}, f, indent=2)

    print()
    print(f"{'clip':<14}{'moving %':>10}{'EPE moving':>12}{'EPE static':>12}{'extract s':>11}")
    for r in rows:
        print(f"{r['clip']:<14}{100 * r['moving_fraction']:>9.1f}%{r['epe_moving_px']:>10.3f}px"
              f"{r['epe_static_px']:>10.3f}px{r['extract_seconds']:>10.1f}s")
    print(f"\ncomparison picture: {figure_path}")
    return 0
