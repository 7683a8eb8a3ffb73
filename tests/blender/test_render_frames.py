"""Render Frames on Backend: a real ``image-dynamics serve --tiny-model`` process renders the plane's
keyframed motion; the frames become an image-sequence texture. The poll step is driven directly
(timers never fire in the bpy module). A cancelled render must leave the scene unchanged."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from blender_helpers import backend_exe, import_volume, synthetic_volume, write_volume

READY_RE = re.compile(r"image-dynamics backend ready on (tcp://\S+)")


@pytest.fixture(scope="module")
def backend(addon, tmp_path_factory):
    """A real backend process on a free port; the add-on pointed at it."""
    bpy, pkg = addon
    folder = tmp_path_factory.mktemp("render-backend")
    out, err = folder / "serve.out", folder / "serve.err"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen([backend_exe(), "serve", "--tiny-model", "0", "--bind", "tcp://127.0.0.1:0", "--threads", "1"],
                                stdout=o, stderr=e, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        end = time.monotonic() + 90
        while not (m := READY_RE.search(out.read_text())):
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < end, "backend never became ready"
            time.sleep(0.05)
        prefs = bpy.context.preferences.addons["bl_ext.user_default.image_dynamics"].preferences
        prefs.use_local_backend = False
        prefs.address = m.group(1)
        prefs.timeout = 5.0
        prefs.max_photo_side = 256
        yield m.group(1)
    finally:
        pkg.frame_render.cancel_all()
        proc.terminate()
        proc.wait(20)


def _plane(bpy, tmp_path, frame_end: int):
    bpy.context.scene.frame_end = frame_end
    path = write_volume(tmp_path / "sway.npz", synthetic_volume(seed=3, modes=(2, 3, 5), scale=0.6))
    return import_volume(bpy, path)


def _poll_until_done(pkg, name: str, timeout: float = 120.0):
    end = time.monotonic() + timeout
    while name in pkg.frame_render.RENDERS:
        assert time.monotonic() < end, "the render never ended"
        pkg.frame_render.poll_renders()
        time.sleep(0.02)
    return pkg.frame_render.MESSAGES[name]


def _texture_node(obj):
    nodes = [n for slot in obj.material_slots for n in slot.material.node_tree.nodes if n.type == "TEX_IMAGE"]
    assert len(nodes) == 1
    return nodes[0]


def _file_at(image, user, frame: int) -> Path:
    """The sequence file Blender shows at scene ``frame`` (ImageUser: start, offset, cyclic)."""
    n = (frame - user.frame_start) % user.frame_duration if user.use_cyclic else frame - user.frame_start
    number = n + 1 + user.frame_offset
    first = Path(bpy_abspath(image.filepath))
    return first.with_name(re.sub(r"\d+(?=\.png$)", f"{number:04d}", first.name))


def bpy_abspath(p: str) -> str:
    import bpy

    return bpy.path.abspath(p)


def test_frames_become_an_image_sequence_on_the_plane(addon, scene, backend, tmp_path):
    bpy, pkg = addon
    obj = _plane(bpy, tmp_path, frame_end=24)
    photo = obj.image_dynamics.image
    before = pkg.motion.scene_fingerprint()
    assert bpy.ops.image_dynamics.render_frames(renderer="mesh") == {"FINISHED"}
    assert obj.name in pkg.frame_render.RENDERS
    assert pkg.motion.scene_fingerprint() == before  # nothing changes while the job runs
    level, text = _poll_until_done(pkg, obj.name)
    assert level == "INFO" and "24 frames (mesh renderer)" in text, text

    node = _texture_node(obj)
    seq = node.image
    assert seq is not photo and seq.source == "SEQUENCE"
    user = node.image_user
    assert user.frame_duration == 24 and user.frame_start == 1 and user.use_cyclic
    folder = Path(bpy_abspath(seq.filepath)).parent
    assert sorted(p.name for p in folder.glob("*.png")) == [f"frame_{i:04d}.png" for i in range(1, 25)]
    # an unsaved .blend: a temporary folder, never the extension's own
    assert str(folder).startswith(os.path.realpath(os.environ.get("TMPDIR", "/tmp"))) or "tmp" in str(folder)
    assert os.environ["BLENDER_USER_RESOURCES"] not in str(folder)
    mod = pkg.geometry_nodes.find_modifier(obj)
    assert mod.show_viewport is False and mod.show_render is False  # no double motion
    assert obj.image_dynamics.image == photo  # the photo stays the plane's photo

    # The texture differs between two frames where the photo moves (left half), not where it is
    # still (right half); frame 1 of an at-rest loop is the photo itself.
    f1 = cv2.imread(str(_file_at(seq, user, 1)))[:, :, ::-1]
    f9 = cv2.imread(str(_file_at(seq, user, 9)))[:, :, ::-1]
    photo_px = pkg.prediction.photo_pixels(photo, 256)
    assert f1.shape == photo_px.shape == (20, 32, 3)
    assert np.array_equal(f1, photo_px)
    assert np.abs(f9[:, :12].astype(int) - f1[:, :12]).mean() > 5
    assert np.array_equal(f9[:, 22:], f1[:, 22:])
    # cyclic: the sequence repeats after its 24 frames
    assert _file_at(seq, user, 25) == _file_at(seq, user, 1)

    # Back to Mesh Motion: the photo and the displacing modifier return, the PNGs stay on disk.
    assert pkg.frame_render.shows_frames(obj)
    seq_name = seq.name
    assert bpy.ops.image_dynamics.use_mesh_motion() == {"FINISHED"}
    assert _texture_node(obj).image == photo and not pkg.frame_render.shows_frames(obj)
    assert mod.show_viewport and mod.show_render
    assert seq_name not in bpy.data.images and len(list(folder.glob("*.png"))) == 24
    assert bpy.ops.image_dynamics.use_mesh_motion.poll() is False


def test_pin_border_holds_the_rendered_frames_still_at_the_edges(addon, scene, backend, tmp_path):
    """The frames follow the plane's Pin Border as the mesh does: still at the outline, moving inside."""
    bpy, pkg = addon
    obj = _plane(bpy, tmp_path, frame_end=12)
    obj.image_dynamics.pin_border = True
    obj.image_dynamics.pin_width = 0.5
    assert bpy.ops.image_dynamics.render_frames(renderer="mesh") == {"FINISHED"}
    level, text = _poll_until_done(pkg, obj.name)
    assert level == "INFO", text
    node = _texture_node(obj)
    f1 = cv2.imread(str(_file_at(node.image, node.image_user, 1))).astype(int)
    f9 = cv2.imread(str(_file_at(node.image, node.image_user, 9))).astype(int)
    diff = np.abs(f9 - f1).mean(axis=2)
    inside = diff[7:13, 6:11].mean()
    assert inside > 5, inside  # the moving half still moves away from the border
    assert diff[:, 0].mean() < 0.1 * inside, (diff[:, 0].mean(), inside)  # the left edge is pinned
    assert diff[0, :12].mean() < 0.25 * inside and diff[-1, :12].mean() < 0.25 * inside


def test_cancel_leaves_the_scene_unchanged(addon, scene, backend, tmp_path):
    bpy, pkg = addon
    obj = _plane(bpy, tmp_path, frame_end=2500)
    images = set(bpy.data.images)
    before = pkg.motion.scene_fingerprint()
    node_image = _texture_node(obj).image
    assert bpy.ops.image_dynamics.render_frames(renderer="mesh") == {"FINISHED"}
    pending = pkg.frame_render.RENDERS[obj.name]
    end = time.monotonic() + 60
    while pending.state != "running":
        assert time.monotonic() < end, "the render never started"
        pkg.frame_render.poll_renders()
        time.sleep(0.01)
    job = pending.job
    assert bpy.ops.image_dynamics.cancel_render_frames() == {"FINISHED"}
    assert obj.name not in pkg.frame_render.RENDERS
    end = time.monotonic() + 30
    while not job.poll().done:
        assert time.monotonic() < end
        time.sleep(0.02)
    assert job.state == "cancelled"
    assert pkg.motion.scene_fingerprint() == before
    assert set(bpy.data.images) == images and _texture_node(obj).image == node_image
    mod = pkg.geometry_nodes.find_modifier(obj)
    assert mod.show_viewport and mod.show_render
    assert "cancelled" in pkg.frame_render.MESSAGES[obj.name][1]


def test_stopping_the_local_backend_cancels_its_frame_renders(addon, scene, backend, tmp_path):
    bpy, pkg = addon
    prefs = bpy.context.preferences.addons["bl_ext.user_default.image_dynamics"].preferences
    prefs.use_local_backend, prefs.backend_executable = True, backend_exe()
    prefs.model_source, prefs.tiny_seed, prefs.device = "TINY", 0, "cpu"
    try:
        assert bpy.ops.image_dynamics.start_backend(wait=120.0) == {"FINISHED"}
        obj = _plane(bpy, tmp_path, frame_end=2500)
        before = pkg.motion.scene_fingerprint()
        assert bpy.ops.image_dynamics.render_frames(renderer="mesh") == {"FINISHED"}
        pending = pkg.frame_render.RENDERS[obj.name]
        assert pending.address == pkg.backend_process.LOCAL.address
        end = time.monotonic() + 60
        while pending.state != "running":
            assert time.monotonic() < end, "the render never started"
            pkg.frame_render.poll_renders()
            time.sleep(0.01)
        assert bpy.ops.image_dynamics.stop_backend() == {"FINISHED"}
        assert obj.name not in pkg.frame_render.RENDERS
        assert "cancelled" in pkg.frame_render.MESSAGES[obj.name][1]
        assert pkg.motion.scene_fingerprint() == before
    finally:
        pkg.backend_process.LOCAL.stop()
        prefs.use_local_backend = False
        prefs.address = backend
