"""The Blender half of the main job (scripts/blender_demo_scene.py) in its own process, as the demo
runs it: a saved volume becomes an animated plane, a 3-frame loop is rendered to an MP4 with
Blender's FFMPEG output, and the saved .blend reopens with its motion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from blender_helpers import backend_exe, evaluated, synthetic_volume, write_volume

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "blender_demo_scene.py"


def test_demo_scene_renders_a_seamless_loop_and_saves_a_blend(addon, scene, extension_zip, tmp_path):
    bpy, pkg = addon
    vol = write_volume(tmp_path / "v.npz", synthetic_volume(5, scale=0.5))
    out = tmp_path / "out"
    env_user = tmp_path / "blender-user"  # the subprocess installs the zip into its own user repository
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--volume", str(vol), "--addon-zip", str(extension_zip),
         "--loop-frames", "3", "--fps", "12", "--resolution", "64x40", "--samples", "1", "--mesh-resolution", "32"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "BLENDER_USER_RESOURCES": str(env_user)})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "image-dynamics demo: [5/6]" in res.stdout

    cap = cv2.VideoCapture(str(out / "demo.mp4"))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    assert len(frames) == 3 and frames[0].shape == (40, 64, 3)

    first, second, last, nxt = (cv2.imread(str(out / f"seam_{n}.png")).astype(int)
                                for n in ("first", "second", "last", "next"))
    assert np.array_equal(first, nxt)  # frame 4 renders exactly like frame 1: the loop closes
    assert np.abs(second - first).max() > 10 and np.abs(last - first).max() > 10  # and it moves
    # The video holds the rendered frames, in order: compared by luma (yuv420p keeps it at full
    # resolution), each video frame is far nearer its own still than another frame's. The random
    # test photo is the worst case for H.264: about 6 of 255 of error at this size.
    def luma(img):
        return cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(float)

    for i, still in ((0, first), (1, second), (2, last)):
        own = np.abs(luma(frames[i]) - luma(still)).mean()
        other = np.abs(luma(frames[i]) - luma(second if i != 1 else first)).mean()
        assert own < 10 and own < other / 3, (i, own, other)

    bpy.ops.wm.open_mainfile(filepath=str(out / "demo.blend"))
    obj = next(o for o in bpy.data.objects if o.image_dynamics.is_plane)
    assert obj.modifiers["Image Dynamics"].type == "NODES" and obj.image_dynamics.image.packed_file is not None
    sc = bpy.context.scene
    assert (sc.frame_start, sc.frame_end, sc.render.fps) == (1, 3, 12)
    assert sc.render.image_settings.file_format == "FFMPEG" and sc.camera is not None
    a, b = evaluated(bpy, obj, 1)["co"], evaluated(bpy, obj, 2)["co"]
    assert np.abs(b - a).max() > 0
    assert np.allclose(evaluated(bpy, obj, 4)["co"], a, atol=1e-6)


def test_demo_without_a_model_says_so_before_starting_anything(tmp_path):
    res = subprocess.run([backend_exe(), "demo", "--model", str(tmp_path), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "is not a saved motion predictor" in res.stderr and "config.json" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "out").exists()
