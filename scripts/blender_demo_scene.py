"""The Blender half of the main job: a photo becomes an animated backdrop, rendered as a seamless loop.

Runs inside Blender, never in a process that has torch (``image-dynamics demo`` starts it as a
subprocess after starting the backend):

    .venv/bin/python scripts/blender_demo_scene.py --out DIR --photo PHOTO --backend tcp://127.0.0.1:PORT
    .venv/bin/python scripts/blender_demo_scene.py --out DIR --volume MOTION.npz        (no backend)
    blender -b --python scripts/blender_demo_scene.py -- --out DIR ...                  (a real Blender)

Everything goes through the add-on's own operators, as an artist would click them: Import Photo as
Plane, Predict Motion (its poll step driven here, since timers never fire in background mode) or
Import Motion, the plane's Loop settings and Update Motion, Fit to Camera, Export Motion. The
add-on must be enabled already, or ``--addon-zip`` (built by ``scripts/build_extension.py``) is
installed into Blender's user repository: point ``BLENDER_USER_RESOURCES`` at a temporary folder
to keep it out of your own Blender (``image-dynamics demo`` does).

Writes into DIR: ``demo.mp4`` (the loop, Blender's own FFMPEG output, H.264), ``demo.blend``
(the scene, photo packed: it renders without the add-on or a backend), ``motion.npz`` (the motion
as a spectral volume), ``seam_first.png`` / ``seam_second.png`` / ``seam_last.png`` / ``seam_next.png``
(the loop's first two and last frames and the frame after the last, rendered as stills: the first
and the next must be identical) and ``scene.json`` (settings, timings, the largest motion in video pixels).
Lines meant for the user start with ``image-dynamics demo:``; errors end the process with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

PREFIX = "image-dynamics demo:"


def say(msg: str) -> None:
    print(f"{PREFIX} {msg}", flush=True)


class DemoError(Exception):
    """A failure the user can act on (printed as one line, exit status 1)."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    if "--" in argv:  # blender -b --python SCRIPT -- ARGS: Blender's own arguments come first
        argv = argv[argv.index("--") + 1:]
    p = argparse.ArgumentParser(prog="blender_demo_scene.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--photo", type=Path, help="the photo (its motion is predicted by --backend)")
    src.add_argument("--volume", type=Path, help="a spectral-volume .npz (motion and photo; no backend)")
    p.add_argument("--backend", help="ZeroMQ address of a running `image-dynamics serve` (with --photo)")
    p.add_argument("--addon-zip", type=Path, help="the extension zip to install if the add-on is not enabled")
    p.add_argument("--seed", type=int, default=0, help="prediction seed (default 0)")
    p.add_argument("--steps", type=int, default=0, help="sampling steps (default 0: the model's)")
    p.add_argument("--predict-timeout", type=float, default=900.0, help="seconds to wait for the motion")
    p.add_argument("--fps", type=int, default=24, help="frame rate of the video (default 24)")
    p.add_argument("--loop-frames", type=int, default=72, help="frames in the loop (default 72: 3 s at 24 fps)")
    p.add_argument("--resolution", default="480x270", help="video size WxH (default 480x270)")
    p.add_argument("--mesh-resolution", type=int, default=160, help="plane vertices along the longer side")
    p.add_argument("--engine", choices=("CYCLES", "EEVEE"), default="CYCLES", help="render engine (default CYCLES)")
    p.add_argument("--samples", type=int, default=8, help="render samples per pixel (default 8)")
    p.add_argument("--magnify", type=float, default=1.0, help="scale of the motion (the plane's loop Amount)")
    args = p.parse_args(argv)
    if args.photo is not None and not args.backend:
        p.error("--photo needs --backend ADDRESS (or pass --volume FILE.npz instead)")
    try:
        w, h = (int(v) for v in args.resolution.lower().split("x"))
    except ValueError:
        p.error(f"--resolution must be WxH, e.g. 480x270, got {args.resolution!r}")
    if w < 8 or h < 8 or w % 2 or h % 2:
        p.error("--resolution: both sides must be even (H.264 needs it) and at least 8")
    args.size = (w, h)
    if args.loop_frames < 2 or args.fps < 1 or args.samples < 1:
        p.error("--loop-frames must be at least 2, --fps and --samples at least 1")
    return args


def enable_addon(bpy, zip_path: Path | None):
    """The add-on's package: the enabled extension, else ``zip_path`` installed and enabled."""
    def find():
        for name in bpy.context.preferences.addons.keys():
            if name.endswith(".image_dynamics") and name in sys.modules:
                return sys.modules[name]
        return None

    pkg = find()
    if pkg is not None:
        return pkg
    if zip_path is None:
        raise DemoError("the Image Dynamics add-on is not enabled in this Blender: pass --addon-zip ZIP "
                        "(build it with `python scripts/build_extension.py`)")
    if not zip_path.is_file():
        raise DemoError(f"no extension zip at {zip_path}")
    res = bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default", enable_on_install=True)
    pkg = find()
    if res != {"FINISHED"} or pkg is None:
        raise DemoError(f"Blender could not install and enable {zip_path}")
    return pkg


def set_engine(scene, engine: str, samples: int) -> str:
    if engine == "CYCLES":
        scene.render.engine = "CYCLES"
        scene.cycles.device = "CPU"
        scene.cycles.samples = samples
        scene.cycles.use_adaptive_sampling = False
        scene.cycles.use_denoising = False  # an emission backdrop needs no denoising, only anti-aliasing
        scene.cycles.max_bounces = 0  # nothing but the emitting photo is seen: no bounce can add light
        scene.cycles.seed = 0
        scene.cycles.use_animated_seed = False  # same sample pattern every frame: the seam frames match exactly
        return "CYCLES"
    for ident in ("BLENDER_EEVEE", "BLENDER_EEVEE_NEXT"):  # 5.0 / 4.2-4.5
        try:
            scene.render.engine = ident
        except TypeError:
            continue
        scene.eevee.taa_render_samples = samples
        # The emitting backdrop casts and receives nothing: shadows and ray tracing would only cost
        # seconds per frame on software OpenGL.
        for name in ("use_shadows", "use_raytracing"):
            if hasattr(scene.eevee, name):
                setattr(scene.eevee, name, False)
        return ident
    raise DemoError("this Blender has no EEVEE engine")


def video_output(scene, path_stem: Path) -> None:
    s = scene.render.image_settings
    if hasattr(s, "media_type"):  # 5.0: the media type first, then the format
        s.media_type = "VIDEO"
    s.file_format = "FFMPEG"
    ff = scene.render.ffmpeg
    ff.format = "MPEG4"
    ff.codec = "H264"
    ff.constant_rate_factor = "PERC_LOSSLESS"
    ff.ffmpeg_preset = "GOOD"
    # One keyframe per loop: each H.264 keyframe "pops" against the predicted frames before it
    # (measured: 10x an ordinary step), which would show as a flicker every GOP.
    ff.gopsize = max(1, scene.frame_end - scene.frame_start + 1)
    ff.audio_codec = "NONE"
    scene.render.filepath = str(path_stem)
    scene.render.use_file_extension = True


def still_output(scene) -> None:
    s = scene.render.image_settings
    if hasattr(s, "media_type"):
        s.media_type = "IMAGE"
    s.file_format = "PNG"
    s.color_mode = "RGB"
    s.color_depth = "8"


def wait_for_prediction(pkg, obj, timeout: float) -> None:
    """Drive the add-on's poll step (Blender's timers never fire in background mode)."""
    end = time.monotonic() + timeout
    shown = -1
    key = pkg.prediction.plane_key(obj)  # the add-on keys jobs by the plane, not its name
    while key in pkg.prediction.PENDING:
        pkg.prediction.poll_jobs()
        pending = pkg.prediction.PENDING.get(key)
        if pending is not None:
            quarter = int(pending.progress * 4)
            if quarter != shown and pending.state == "running":
                say(f"  predicting: {25 * quarter}%")
                shown = quarter
        if time.monotonic() > end:
            pkg.prediction.cancel_prediction(key)
            raise DemoError(f"the backend did not finish the prediction within {timeout:g} s (cancelled)")
        time.sleep(0.05)
    level, text = pkg.prediction.MESSAGES.get(key, ("ERROR", "the prediction ended without a result"))
    if level == "ERROR":
        raise DemoError(text)
    say(f"  {text}")


def largest_motion_px(bpy, scene, obj, cam, frames) -> float:
    """The largest displacement of any vertex over ``frames``, in video pixels (projected by the camera)."""
    import numpy as np
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    n = len(obj.data.vertices)
    rest = np.empty(n * 3, np.float32)
    obj.data.vertices.foreach_get("co", rest)
    rest = rest.reshape(-1, 3)
    best, best_pair = 0.0, None
    dg = bpy.context.evaluated_depsgraph_get()
    for f in frames:
        scene.frame_set(int(f))
        ev = obj.evaluated_get(dg)
        me = ev.to_mesh()
        co = np.empty(n * 3, np.float32)
        me.vertices.foreach_get("co", co)
        ev.to_mesh_clear()
        d = np.linalg.norm(co.reshape(-1, 3) - rest, axis=1)
        i = int(d.argmax())
        if d[i] > best:
            best, best_pair = float(d[i]), (rest[i].copy(), co.reshape(-1, 3)[i].copy())
    if best_pair is None:
        return 0.0
    mw = obj.matrix_world
    a, b = (world_to_camera_view(scene, cam, mw @ Vector(v.tolist())) for v in best_pair)
    return float(np.hypot((a.x - b.x) * scene.render.resolution_x, (a.y - b.y) * scene.render.resolution_y))


def build_and_render(args: argparse.Namespace) -> dict:
    import bpy

    t_start = time.perf_counter()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.read_homefile(use_empty=True)  # a clean scene (the add-on stays enabled)
    pkg = enable_addon(bpy, args.addon_zip.resolve() if args.addon_zip else None)
    ctx = bpy.context
    scene = ctx.scene
    first, last = 1, args.loop_frames
    scene.render.fps, scene.render.fps_base = args.fps, 1.0
    scene.frame_start, scene.frame_end = first, last  # frame last + 1 would repeat frame 1: not rendered
    scene.render.resolution_x, scene.render.resolution_y = args.size
    scene.render.resolution_percentage = 100
    scene.render.use_motion_blur = False
    scene.view_settings.view_transform = "Standard"  # show the photo's own colours, not a tone-mapped version
    scene.image_dynamics.mesh_resolution = args.mesh_resolution
    scene.image_dynamics.seed = args.seed
    scene.image_dynamics.steps = args.steps
    scene.frame_set(first)

    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.location = (0.0, -10.0, 0.0)
    cam.rotation_euler = (1.5707963267948966, 0.0, 0.0)  # looking along +Y

    info: dict = {"model": None}
    t0 = time.perf_counter()
    if args.photo is not None:
        photo = args.photo.resolve()
        say(f"[3/6] Blender: Import Photo as Plane ({photo.name}), Predict Motion on {args.backend}")
        prefs = pkg.preferences.get_prefs()
        prefs.use_local_backend = False  # the demo started its backend itself
        prefs.address = args.backend
        prefs.timeout = 30.0
        if bpy.ops.image_dynamics.import_photo(filepath=str(photo)) != {"FINISHED"}:
            raise DemoError(f"Blender could not import the photo {photo}")
        obj = ctx.view_layer.objects.active
        try:
            hello = pkg.prediction.hello(args.backend, prefs.timeout)
        except pkg.prediction.PredictionError as exc:
            raise DemoError(exc.text) from None
        info["model"] = pkg.prediction.summarize_hello(hello)
        say(f"  backend: {info['model']}")
        if bpy.ops.image_dynamics.predict_motion() != {"FINISHED"}:
            level, text = pkg.prediction.MESSAGES.get(pkg.prediction.plane_key(obj), ("ERROR", "Predict Motion failed"))
            raise DemoError(text)
        wait_for_prediction(pkg, obj, args.predict_timeout)
    else:
        vol = args.volume.resolve()
        say(f"[3/6] Blender: Import Motion ({vol.name})")
        if bpy.ops.image_dynamics.import_motion(filepath=str(vol)) != {"FINISHED"}:
            raise DemoError(f"Blender could not import the motion file {vol}")
        obj = ctx.view_layer.objects.active
    t_motion = time.perf_counter() - t0
    p = obj.image_dynamics
    if not p.has_motion:
        raise DemoError("the plane has no motion after the prediction")

    say(f"[4/6] Blender: loop of {args.loop_frames} frames at {args.fps} fps, fit to camera, save the .blend")
    p.use_loop = True
    p.start_frame = first
    p.loop_frames = args.loop_frames  # snaps the frequencies so frame last + 1 equals frame first
    p.loop_at_rest = True
    p.loop_amount = args.magnify
    if bpy.ops.image_dynamics.update_motion() != {"FINISHED"}:
        raise DemoError("Update Motion failed")
    if bpy.ops.image_dynamics.fit_to_camera(mode="FILL", distance=10.0) != {"FINISHED"}:
        raise DemoError("Fit to Camera failed")
    if p.image is not None and p.image.packed_file is None:
        p.image.pack()  # the .blend carries its photo
    motion_path = out / "motion.npz"
    if bpy.ops.image_dynamics.export_motion(filepath=str(motion_path)) != {"FINISHED"}:
        raise DemoError(f"Export Motion could not write {motion_path}")
    engine = set_engine(scene, args.engine, args.samples)
    stem = out / "demo_"
    video_output(scene, stem)
    scene.frame_set(first)
    blend = out / "demo.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), check_existing=False)
    frames = range(first, last + 1, max(1, args.loop_frames // 24))
    motion_px = largest_motion_px(bpy, scene, obj, cam, frames)
    say(f"  largest motion in the video: {motion_px:.2f} px")
    t_build = time.perf_counter() - t0 - t_motion

    say(f"[5/6] Blender: rendering {args.loop_frames} frames at {args.size[0]}x{args.size[1]} "
        f"({engine}, {args.samples} samples)")
    t1 = time.perf_counter()
    bpy.ops.render.render(animation=True)
    t_render = time.perf_counter() - t1
    written = Path(scene.render.frame_path(frame=first))  # Blender names a movie demo_0001-0072.mp4
    video = out / "demo.mp4"
    if not written.is_file():
        raise DemoError(f"Blender wrote no video (expected {written})")
    os.replace(written, video)

    # The seam, as stills: the last frame flows into the first when frame last + 1 renders like frame 1.
    still_output(scene)
    seams = {}
    for label, f in (("first", first), ("second", first + 1), ("last", last), ("next", last + 1)):
        scene.frame_set(f)
        scene.render.filepath = str(out / f"seam_{label}.png")
        bpy.ops.render.render(write_still=True)
        seams[label] = str(out / f"seam_{label}.png")
    scene.frame_set(first)

    info.update({
        "video": str(video), "blend": str(blend), "motion": str(motion_path), "seam_stills": seams,
        "fps": args.fps, "loop_frames": args.loop_frames, "frame_start": first, "frame_end": last,
        "resolution": list(args.size), "engine": engine, "samples": args.samples, "magnify": args.magnify,
        "mesh_vertices": [p.grid_nx, p.grid_ny], "motion_size": list(pkg.motion.get_volume(obj).S.shape[2:][::-1]),
        "largest_motion_px": motion_px, "seconds": {"motion": t_motion, "build": t_build, "render": t_render,
                                                    "total": time.perf_counter() - t_start},
        "blender": bpy.app.version_string,
    })
    (out / "scene.json").write_text(json.dumps(info, indent=2))
    say(f"  rendered in {t_render:.1f} s ({t_render / args.loop_frames:.2f} s per frame)")
    return info


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        build_and_render(args)
    except DemoError as exc:
        print(f"{PREFIX} error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    if code:
        sys.exit(code)
