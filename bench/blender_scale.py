"""The animated image plane at scale in real Blender: our Geometry Nodes modal sum against one shape
key per frame, measured in the same run.

Ours (the add-on, installed from its zip into a temporary user repository, as a user would): the
Import Motion operator builds a grid plane of ``--vertices`` vertices from a 256 x 256, K = 16
spectral volume, with the modal bases as mesh attributes, the Geometry Nodes modal sum and the
modal coordinates keyframed as a ``--frames`` loop. Baseline: the same grid and the same motion
(the add-on's own bpy-free math: vertex bases and loop coordinates) written as one relative shape
key per frame, its value keyframed 0 / 1 / 0 around its frame (linear), which is what baking a
per-frame animation to shape keys gives.

Measured for each: build time (from the volume file to an animated object), per-frame evaluation
time (``scene.frame_set`` of consecutive frames, median, which is what playback and rendering pay
per frame), and the uncompressed .blend size per vertex. The two must agree on the evaluated
vertices (checked at a frame, printed).

    .venv/bin/python bench/blender_scale.py                      # 262,144 vertices (512 x 512), 120 frames
    .venv/bin/python bench/blender_scale.py --vertices 16384     # a quick run
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
K = 16
VOLUME_SIZE = 256


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vertices", type=int, default=262_144, help="plane vertices (a square grid; default 512 x 512)")
    p.add_argument("--frames", type=int, default=120, help="frames of animation (default 120)")
    p.add_argument("--eval-frames", type=int, default=30, help="consecutive frames timed (default 30)")
    return p.parse_args()


def setup_blender(tmp: Path):
    """bpy with the extension built and enabled from a throw-away user repository."""
    os.environ["BLENDER_USER_RESOURCES"] = str(tmp / "blender-user")  # before bpy is imported
    sys.path.insert(0, str(REPO / "scripts"))
    import build_extension

    zips = build_extension.build(tmp / "dist", tmp / "build", [], build_extension.find_blender_ext())
    import bpy

    res = bpy.ops.extensions.package_install_files(filepath=str(zips[0]), repo="user_default",
                                                   enable_on_install=True)
    assert res == {"FINISHED"}, res
    return bpy, sys.modules["bl_ext.user_default.image_dynamics"]


def empty_scene(bpy, frames: int):
    bpy.ops.wm.read_homefile(use_empty=True)
    for block in (bpy.data.meshes, bpy.data.actions, bpy.data.node_groups, bpy.data.images, bpy.data.materials):
        for item in list(block):
            block.remove(item)
    sc = bpy.context.scene
    sc.render.fps, sc.render.fps_base = 30, 1.0
    sc.frame_start, sc.frame_end = 1, frames
    sc.frame_set(1)
    return sc


def time_frames(scene, first: int, count: int) -> float:
    """Median seconds of ``frame_set`` over ``count`` consecutive frames (after one warm-up frame)."""
    scene.frame_set(first)
    times = []
    for f in range(first + 1, first + 1 + count):
        t = time.perf_counter()
        scene.frame_set(f)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def evaluated_co(bpy, obj, frame: int) -> np.ndarray:
    bpy.context.scene.frame_set(frame)
    ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    me = ev.to_mesh()
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    ev.to_mesh_clear()
    return co.reshape(-1, 3)


def blend_bytes(bpy, path: Path) -> int:
    bpy.ops.wm.save_as_mainfile(filepath=str(path), compress=False, copy=True)
    size = path.stat().st_size
    path.unlink()
    return size


def main() -> int:
    args = parse_args()
    side = max(2, int(round(math.sqrt(args.vertices))))
    F = args.frames
    if args.eval_frames + 2 > F:
        raise SystemExit(f"--eval-frames must be at most --frames - 2 ({F - 2})")
    tmp = Path(tempfile.mkdtemp(prefix="blender-scale-"))
    bpy, pkg = setup_blender(tmp)
    from image_dynamics.motion import volume_file

    rng = np.random.default_rng(0)
    S = ((rng.normal(size=(K, 2, VOLUME_SIZE, VOLUME_SIZE)) + 1j * rng.normal(size=(K, 2, VOLUME_SIZE, VOLUME_SIZE)))
         * 0.2).astype(np.complex64)
    image = rng.integers(0, 256, size=(VOLUME_SIZE, VOLUME_SIZE, 3), dtype=np.uint8)
    npz = tmp / "volume.npz"
    volume_file.save_volume(npz, volume_file.SpectralVolume(S=S, image=image, source="bench"))
    check_frame = 1 + F // 3
    print(f"Blender {bpy.app.version_string}, {side} x {side} = {side * side:,} vertices, K = {K}, {F} frames, "
          f"volume {VOLUME_SIZE} x {VOLUME_SIZE}, {os.cpu_count()} CPU cores", flush=True)

    # -- ours: Import Motion (mesh attributes + Geometry Nodes modal sum + keyframed coordinates) --
    sc = empty_scene(bpy, F)
    sc.image_dynamics.mesh_resolution = side
    t = time.perf_counter()
    assert bpy.ops.image_dynamics.import_motion(filepath=str(npz)) == {"FINISHED"}
    obj = bpy.context.active_object
    obj.image_dynamics.loop_frames = F  # auto-update rewrites the keyframes as a loop of F frames
    build_ours = time.perf_counter() - t
    n = len(obj.data.vertices)
    assert n == side * side, n
    frame_ours = time_frames(sc, 1, args.eval_frames)
    co_ours = evaluated_co(bpy, obj, check_frame)
    bytes_ours = blend_bytes(bpy, tmp / "ours.blend")
    p = obj.image_dynamics
    grid = pkg.core.grid.PlaneGrid(p.grid_nx, p.grid_ny, p.width, p.height)
    tm = pkg.core.coords.TimeMap(float(p.start_frame), 30.0, float(volume_file.FPS), 1.0)
    print(f"ours built in {build_ours:.2f} s", flush=True)

    # -- baseline: one relative shape key per frame, value keyframed 0 / 1 / 0 (linear) ---------------
    sc = empty_scene(bpy, F)
    prefs_edit = bpy.context.preferences.edit
    old_interp = prefs_edit.keyframe_new_interpolation_type
    prefs_edit.keyframe_new_interpolation_type = "LINEAR"
    try:
        t = time.perf_counter()
        S_loaded = volume_file.load_volume(npz).S
        re, im = pkg.core.grid.vertex_bases(S_loaded, grid)
        frames = np.arange(1, F + 1, dtype=np.float64)
        c = pkg.core.coords.loop_coords(K, frames, tm, F, volume_file.NUM_FRAMES, True, 1.0)
        me = pkg.motion.build_plane_mesh("Baseline", grid)
        base = bpy.data.objects.new("Baseline", me)
        sc.collection.objects.link(base)
        base.shape_key_add(name="Basis", from_mix=False)
        rest = grid.vertex_positions().astype(np.float32)
        re2, im2 = re.reshape(K, -1), im.reshape(K, -1)
        for i, f in enumerate(frames.astype(int)):
            d = (c.q[i].real.astype(np.float32) @ re2 - c.q[i].imag.astype(np.float32) @ im2).reshape(-1, 3)
            kb = base.shape_key_add(name=f"frame {f}", from_mix=False)
            kb.data.foreach_set("co", (rest + d).reshape(-1))
            for fr, v in ((f - 1, 0.0), (f, 1.0), (f + 1, 0.0)):
                kb.value = v
                kb.keyframe_insert("value", frame=fr)
        build_base = time.perf_counter() - t
    finally:
        prefs_edit.keyframe_new_interpolation_type = old_interp
    frame_base = time_frames(sc, 1, args.eval_frames)
    co_base = evaluated_co(bpy, base, check_frame)
    bytes_base = blend_bytes(bpy, tmp / "baseline.blend")
    diff = float(np.abs(co_base - co_ours).max())
    scale = float(np.abs(co_ours - rest).max())

    rows = [("GN modal sum + keyed coordinates (ours)", build_ours, frame_ours, bytes_ours),
            ("one shape key per frame (baseline)", build_base, frame_base, bytes_base)]
    print()
    print(f"{'approach':<42}{'build s':>9}{'per frame ms':>14}{'.blend MB':>11}{'bytes/vertex':>14}")
    for name, b, f, nb in rows:
        print(f"{name:<42}{b:>9.2f}{1000 * f:>14.2f}{nb / 2**20:>11.1f}{nb / n:>14.0f}")
    print(f"{'ratio ours / baseline':<42}{build_ours / build_base:>9.2f}{frame_ours / frame_base:>14.2f}"
          f"{bytes_ours / bytes_base:>11.2f}{bytes_ours / bytes_base:>14.2f}")
    print(f"\nsame motion: evaluated vertices at frame {check_frame} differ by at most {diff:.2e} "
          f"(largest displacement {scale:.3f}); per-frame time is the median of {args.eval_frames} frame_set calls")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if diff <= 1e-4 * max(1.0, scale) + 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
