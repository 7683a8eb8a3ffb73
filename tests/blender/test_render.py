"""Tiny Cycles and EEVEE renders: the Vector pass and the motion AOVs light up exactly where the photo moves.

EEVEE runs headless here through Mesa's software OpenGL (llvmpipe over EGL): its first render
compiles shaders (about 30 s on 2 busy cores), so ``conftest.py`` keeps Mesa's shader cache in
``build/mesa-shader-cache`` between runs.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
from blender_helpers import import_volume, synthetic_volume, write_volume


def _load_exr(bpy, path: str) -> np.ndarray:
    img = bpy.data.images.load(path)
    w, h = img.size
    a = np.empty(w * h * img.channels, np.float32)
    img.pixels.foreach_get(a)
    bpy.data.images.remove(img)
    return a.reshape(h, w, -1)[::-1]  # row 0 at the top, like the photo


def _set_engine(scene, engine: str) -> None:
    if engine == "CYCLES":
        scene.render.engine = "CYCLES"
        scene.cycles.device = "CPU"
        scene.cycles.samples = 2
        scene.cycles.use_denoising = False
        return
    for ident in ("BLENDER_EEVEE", "BLENDER_EEVEE_NEXT"):  # Blender 5.0 / 4.2-4.5
        try:
            scene.render.engine = ident
            break
        except TypeError:
            continue
    else:
        pytest.fail("this Blender has no EEVEE engine")
    # One sample, no shadows or ray tracing: the emission plane needs none of them, and each costs
    # seconds per frame on software OpenGL.
    scene.eevee.taa_render_samples = 1
    scene.eevee.use_shadows = False
    scene.eevee.use_raytracing = False


def _passes_scene(bpy, scene, tmp_path, engine: str):
    """The plane (motion in its left half only), fitted to a camera, passes set up, rendered at frame 7."""
    S = synthetic_volume(3, scale=0.03)  # small motion: the left half never spills into the right
    obj = import_volume(bpy, write_volume(tmp_path / "v.npz", S))
    _set_engine(scene, engine)
    scene.render.resolution_x, scene.render.resolution_y = 64, 40  # the photo's aspect (32 x 20)
    scene.render.resolution_percentage = 100
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.location = (0.0, 0.0, 6.0)
    bpy.context.view_layer.objects.active = obj
    assert bpy.ops.image_dynamics.fit_to_camera(mode="FIT") == {"FINISHED"}
    out = tmp_path / "passes"
    assert bpy.ops.image_dynamics.setup_passes(multilayer=False, directory=str(out) + os.sep) == {"FINISHED"}
    assert not scene.render.use_motion_blur and bpy.context.view_layer.use_pass_vector
    assert {a.name for a in bpy.context.view_layer.aovs} >= {"id_motion", "id_displacement", "id_moving"}
    scene.frame_set(7)
    bpy.ops.render.render(write_still=False)
    return {os.path.basename(p).split(".")[0].rstrip("0123456789"): p for p in glob.glob(str(out / "*.exr"))}


def _check_passes(bpy, files, vector_still: float) -> None:
    assert {"Image", "Vector", "id_motion", "id_moving", "id_displacement"} <= set(files), files
    left = slice(2, 28)  # photo columns 0..14 of 32 (the moving half), away from the seam
    right = slice(36, 62)
    for name in ("Vector", "id_motion", "id_moving", "id_displacement"):
        a = np.abs(_load_exr(bpy, files[name]))
        mag = a[..., :2].max(axis=2) if name == "Vector" else a[..., :3].max(axis=2)  # 4.2 writes alpha 1
        # the Vector pass may carry float noise on still geometry; the AOVs are exact zeros
        moving, still = (5e-4, vector_still) if name == "Vector" else (1e-6, 0.0)
        assert (mag[2:-2, left] > moving).all(), f"{name} is zero somewhere on the moving half"
        assert (mag[:, right] <= still).all(), f"{name} is non-zero on the still half (max {mag[:, right].max()})"
    image = _load_exr(bpy, files["Image"])
    assert image[..., :3].max() > 0.05  # the photo is there


def test_cycles_vector_pass_and_aovs_follow_the_moving_half(addon, scene, tmp_path):
    bpy, pkg = addon
    files = _passes_scene(bpy, scene, tmp_path, "CYCLES")
    _check_passes(bpy, files, vector_still=5e-5)  # Cycles: ~1e-5 px of float noise on still geometry

    # one multilayer EXR (the operator's default) holding every pass
    assert bpy.ops.image_dynamics.setup_passes(directory=str(tmp_path / "ml") + os.sep) == {"FINISHED"}
    bpy.ops.render.render(write_still=False)
    (ml,) = glob.glob(str(tmp_path / "ml" / "*.exr"))
    head = open(ml, "rb").read(4096)
    for name in (b"Vector", b"id_motion", b"id_moving", b"id_displacement", b"Image"):
        assert name in head, name


def test_eevee_vector_pass_and_aovs_follow_the_moving_half(addon, scene, tmp_path):
    bpy, pkg = addon
    files = _passes_scene(bpy, scene, tmp_path, "EEVEE")
    assert scene.render.engine in ("BLENDER_EEVEE", "BLENDER_EEVEE_NEXT")
    _check_passes(bpy, files, vector_still=5e-5)
