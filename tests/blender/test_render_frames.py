"""Render Frames on Backend: a real ``image-dynamics serve --tiny-model`` process renders the plane's
keyframed motion; the frames become an image-sequence texture. The poll step is driven directly
(timers never fire in the bpy module). A cancelled render must leave the scene unchanged."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from blender_helpers import FakeBackend, backend_exe, import_volume, synthetic_volume, write_volume

from image_dynamics.motion import volume_file

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


def _poll_until_done(pkg, obj, timeout: float = 120.0):
    key = pkg.prediction.plane_key(obj)
    end = time.monotonic() + timeout
    while key in pkg.frame_render.RENDERS:
        assert time.monotonic() < end, "the render never ended"
        pkg.frame_render.poll_renders()
        time.sleep(0.02)
    return pkg.frame_render.MESSAGES[key]


def _poll_until_running(pkg, pending, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while pending.state != "running":
        assert time.monotonic() < end, "the render never started"
        pkg.frame_render.poll_renders()
        time.sleep(0.01)


def _wait_until_ended(job, timeout: float = 30.0) -> None:
    """Until the backend confirms the job's end (the add-on has already forgotten it)."""
    end = time.monotonic() + timeout
    while not job.poll().done:
        assert time.monotonic() < end
        time.sleep(0.02)


def _pending(pkg, obj):
    return pkg.prediction.pending_for(obj, pkg.frame_render.RENDERS)


def _message(pkg, obj):
    return pkg.prediction.message_for(obj, pkg.frame_render.MESSAGES)


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
    assert _pending(pkg, obj) is not None
    assert pkg.motion.scene_fingerprint() == before  # nothing changes while the job runs
    level, text = _poll_until_done(pkg, obj)
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
    level, text = _poll_until_done(pkg, obj)
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
    pending = _pending(pkg, obj)
    _poll_until_running(pkg, pending)
    job = pending.job
    assert bpy.ops.image_dynamics.cancel_render_frames() == {"FINISHED"}
    assert _pending(pkg, obj) is None
    _wait_until_ended(job)
    assert job.state == "cancelled"
    assert pkg.motion.scene_fingerprint() == before
    assert set(bpy.data.images) == images and _texture_node(obj).image == node_image
    mod = pkg.geometry_nodes.find_modifier(obj)
    assert mod.show_viewport and mod.show_render
    assert "cancelled" in _message(pkg, obj)[1]


def test_new_motion_cancels_a_render_of_the_old_one(addon, scene, backend, tmp_path):
    """Frames of the old motion must not arrive over the new one."""
    bpy, pkg = addon
    obj = _plane(bpy, tmp_path, frame_end=2500)
    node_image = _texture_node(obj).image
    assert bpy.ops.image_dynamics.render_frames(renderer="mesh") == {"FINISHED"}
    pending = _pending(pkg, obj)
    _poll_until_running(pkg, pending)
    job = pending.job
    new = pkg.core.volume_io.SpectralVolume(S=synthetic_volume(seed=4, modes=(1, 4), scale=0.4), fps=30.0,
                                            num_frames=150)
    pkg.motion.apply_volume(obj, new)
    assert _pending(pkg, obj) is None and "the plane has new motion" in _message(pkg, obj)[1]
    _wait_until_ended(job)
    assert job.state == "cancelled"
    assert _texture_node(obj).image == node_image  # the photo, not frames of the old motion


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
        pending = _pending(pkg, obj)
        address = pkg.backend_process.LOCAL.address
        assert pending.address == address
        _poll_until_running(pkg, pending)
        t0 = time.monotonic()
        assert bpy.ops.image_dynamics.stop_backend() == {"FINISHED"}
        assert time.monotonic() - t0 < 0.5  # it does not wait for the process (a timer reaps it)
        assert _pending(pkg, obj) is None
        assert "cancelled" in _message(pkg, obj)[1]
        assert pkg.motion.scene_fingerprint() == before
        assert address not in pkg.prediction._CLIENTS  # no socket left reconnecting to a dead port
        end = time.monotonic() + 30
        while pkg.prediction.watch_step() is not None:  # the watch timer reaps it, then ends
            assert time.monotonic() < end
            time.sleep(0.05)
        assert not pkg.backend_process.LOCAL.running and not pkg.backend_process.LOCAL.stopping
    finally:
        pkg.backend_process.LOCAL.stop()
        prefs.use_local_backend = False
        prefs.address = backend


# -- the backend's limits ------------------------------------------------------------------------------------

@contextlib.contextmanager
def _serve(tmp_path, *args):
    """A real backend with extra ``serve`` flags; yields its address."""
    out = tmp_path / "serve-limits.out"
    with open(out, "w") as o:
        proc = subprocess.Popen([backend_exe(), "serve", "--tiny-model", "0", "--bind", "tcp://127.0.0.1:0",
                                 "--threads", "1", *args], stdout=o, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        end = time.monotonic() + 90
        while not (m := READY_RE.search(out.read_text())):
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < end, "backend never became ready"
            time.sleep(0.05)
        yield m.group(1)
    finally:
        proc.kill()
        proc.wait()


def _big_photo_plane(bpy, tmp_path, frame_end: int):
    """A plane whose photo (and motion) is 256 x 160."""
    bpy.context.scene.frame_end = frame_end
    rng = np.random.default_rng(7)
    photo = (rng.uniform(size=(160, 256, 3)) * 255).astype(np.uint8)
    S = np.zeros((16, 2, 160, 256), np.complex64)
    S[2:4] = 0.5 * (1 + 1j)  # an even sway: enough to render
    path = tmp_path / "big.npz"
    volume_file.save_volume(path, volume_file.SpectralVolume(S=S, image=photo, source="synth"))
    return import_volume(bpy, path)


def test_frames_are_shrunk_to_fit_the_backends_render_limit(addon, scene, backend, tmp_path):
    """frames x photo pixels over max_render_pixels (from the hello reply): the photo sent is
    shrunk, aspect kept, and the message says so; past what shrinking can fix, the add-on
    refuses before sending anything and names the frame range."""
    bpy, pkg = addon
    prefs = bpy.context.preferences.addons["bl_ext.user_default.image_dynamics"].preferences
    with _serve(tmp_path, "--max-render-pixels", "614400", "--max-render-frames", "1000") as address:
        prefs.address = address
        try:
            obj = _big_photo_plane(bpy, tmp_path, frame_end=60)  # 60 x 256 x 160 = 2.5 M pixels > 614,400
            assert bpy.ops.image_dynamics.render_frames(renderer="mesh") == {"FINISHED"}
            level, text = _poll_until_done(pkg, obj)
            assert level == "INFO" and "60 frames (mesh renderer)" in text, text
            assert "The frames are 128 x 80" in text and "614400" in text
            node = _texture_node(obj)
            first = cv2.imread(str(_file_at(node.image, node.image_user, 1)))
            assert first.shape == (80, 128, 3)
            assert bpy.ops.image_dynamics.use_mesh_motion() == {"FINISHED"}

            for frame_end, expect in ((1500, "renders at most 1000 at once: shorten the frame range"),
                                      (900, "shorten the frame range, or start the backend with a larger "
                                            "--max-render-pixels")):
                bpy.context.scene.frame_end = frame_end
                before = pkg.motion.scene_fingerprint()
                assert bpy.ops.image_dynamics.render_frames(renderer="mesh") == {"FINISHED"}
                level, text = _poll_until_done(pkg, obj)
                assert level == "ERROR" and expect in text, text
                assert "motion resolution" not in text.lower()
                assert pkg.motion.scene_fingerprint() == before
        finally:
            prefs.address = backend
            pkg.prediction.close_client(address)


def _old_render_backend(header: dict) -> list[dict]:
    """A backend that reports no limits in hello (an older one) and refuses the render itself with
    too_large: the message must name the render's fixes, not the motion resolution."""
    op = header.get("op")
    if op == "hello":
        return [{"op": "hello", "instance": "fake", "model": {"name": "old"}, "device": "cpu", "engine": "old",
                 "supported_versions": [1], "rendering": {"renderers": ["mesh"], "default": "mesh"}}]
    if op == "render":
        return [{"op": "error", "code": "too_large", "hint": "", "retryable": False,
                 "message": "60 frames of 32 x 20 are 38400 pixels, over the limit of 1000"}]
    return []


def test_a_render_the_backend_finds_too_large_names_the_frame_range(addon, scene, backend, tmp_path):
    bpy, pkg = addon
    prefs = bpy.context.preferences.addons["bl_ext.user_default.image_dynamics"].preferences
    fake = FakeBackend(_old_render_backend)
    try:
        prefs.address = fake.address
        obj = _plane(bpy, tmp_path, frame_end=60)
        before = pkg.motion.scene_fingerprint()
        assert bpy.ops.image_dynamics.render_frames(renderer="mesh") == {"FINISHED"}
        level, text = _poll_until_done(pkg, obj, timeout=30)
        assert level == "ERROR" and "The frames are too large for this backend" in text, text
        assert "shorten the frame range" in text and "Photo Size Sent" in text and "38400 pixels" in text
        assert "motion resolution" not in text.lower()
        assert pkg.motion.scene_fingerprint() == before
    finally:
        prefs.address = backend
        pkg.prediction.close_client(fake.address)
        fake.close()


# -- writing the frames (a worker thread; the poll step stays quick) -----------------------------------------

@contextlib.contextmanager
def _gated_png_writes(pkg, hold_from: int, fail_at: int | None = None):
    """Replace the add-on's PNG writer: files from number ``hold_from`` on wait for the yielded
    event (so a test sees the job while it writes, without timing); file ``fail_at`` fails as
    on a full disk. Yields (event, the threads that wrote)."""
    import errno

    png = pkg.core.png
    real, go, threads = png.write_png, threading.Event(), set()

    def write(path, rgb):
        threads.add(threading.get_ident())
        n = int(re.search(r"(\d+)\.png$", str(path)).group(1))
        if n >= hold_from:
            assert go.wait(30)
        if n == fail_at:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, rgb)

    png.write_png = write
    try:
        yield go, threads
    finally:
        go.set()
        png.write_png = real


def _poll_until_writing(pkg, obj, timeout: float = 120.0):
    """Poll until the tick that receives the frames; returns the pending render."""
    pending = _pending(pkg, obj)
    end = time.monotonic() + timeout
    while pending.result is None:
        assert time.monotonic() < end, "the frames never arrived"
        assert pkg.frame_render.poll_renders(), _message(pkg, obj)
        time.sleep(0.02)
    return pending


def test_the_frames_are_written_off_the_poll_step(addon, scene, backend, tmp_path):
    """The tick that receives the frames only starts a writer thread; the scene changes on a
    later tick, once every file is written."""
    bpy, pkg = addon
    obj = _plane(bpy, tmp_path, frame_end=300)
    before = pkg.motion.scene_fingerprint()
    assert bpy.ops.image_dynamics.render_frames(renderer="mesh") == {"FINISHED"}
    with _gated_png_writes(pkg, hold_from=100) as (go, threads):
        pending = _poll_until_writing(pkg, obj)
        assert pending.state == "writing" and pending.writer is not None
        assert pkg.motion.scene_fingerprint() == before  # nothing shown before every file exists
        while pending.writer.written < 99:
            assert not pending.writer.done, pending.writer.error
            time.sleep(0.01)
        for _ in range(3):  # ticks while the writer works: the job stays, with its progress
            assert pkg.frame_render.poll_renders() is True
        assert _pending(pkg, obj) is pending and pending.state == "writing"
        assert 0.3 <= pending.progress < 0.34
        assert pkg.prediction.status_text(pending) == "Writing 33%"
        assert pkg.motion.scene_fingerprint() == before
        go.set()
        level, text = _poll_until_done(pkg, obj)
    assert threading.get_ident() not in threads and len(threads) == 1  # one worker, not the UI thread
    assert level == "INFO" and "300 frames (mesh renderer)" in text, text
    node = _texture_node(obj)
    assert node.image.source == "SEQUENCE" and node.image_user.frame_duration == 300
    folder = Path(bpy_abspath(node.image.filepath)).parent
    assert len(list(folder.glob("frame_*.png"))) == 300 and f"saved in {folder}" in text


def test_cancel_while_writing_removes_the_folder_and_leaves_the_scene(addon, scene, backend, tmp_path):
    bpy, pkg = addon
    obj = _plane(bpy, tmp_path, frame_end=60)
    images = set(bpy.data.images)
    before = pkg.motion.scene_fingerprint()
    assert bpy.ops.image_dynamics.render_frames(renderer="mesh") == {"FINISHED"}
    with _gated_png_writes(pkg, hold_from=3) as (go, _):
        pending = _poll_until_writing(pkg, obj)
        writer = pending.writer
        while writer.written < 2:
            time.sleep(0.01)
        assert os.path.isdir(writer.folder)
        threading.Timer(0.1, go.set).start()  # the file in progress ends while cancel waits for it
        assert bpy.ops.image_dynamics.cancel_render_frames() == {"FINISHED"}
        assert _pending(pkg, obj) is None and "cancelled" in _message(pkg, obj)[1]
        assert writer.join(30) and writer.stopped
    assert writer.written < 60 and not os.path.exists(writer.folder)
    assert pkg.motion.scene_fingerprint() == before
    assert set(bpy.data.images) == images
    mod = pkg.geometry_nodes.find_modifier(obj)
    assert mod.show_viewport and mod.show_render


def test_unregister_stops_the_writer(addon, scene, backend, tmp_path):
    """Disabling the add-on while frames are written: the thread stops, its folder goes."""
    bpy, pkg = addon
    obj = _plane(bpy, tmp_path, frame_end=60)
    assert bpy.ops.image_dynamics.render_frames(renderer="mesh") == {"FINISHED"}
    with _gated_png_writes(pkg, hold_from=3) as (go, _):
        writer = _poll_until_writing(pkg, obj).writer
        threading.Timer(0.1, go.set).start()
        pkg.frame_render.cancel_all()  # what unregister() does
        assert writer.join(30) and writer.stopped
    assert not pkg.frame_render.RENDERS and not os.path.exists(writer.folder)


def test_a_full_disk_while_writing_gives_a_clear_message(addon, scene, backend, tmp_path):
    bpy, pkg = addon
    obj = _plane(bpy, tmp_path, frame_end=24)
    images = set(bpy.data.images)
    before = pkg.motion.scene_fingerprint()
    assert bpy.ops.image_dynamics.render_frames(renderer="mesh") == {"FINISHED"}
    with _gated_png_writes(pkg, hold_from=1, fail_at=5) as (go, _):
        go.set()
        writer = _poll_until_writing(pkg, obj).writer
        level, text = _poll_until_done(pkg, obj)
    assert level == "ERROR", text
    assert f"Could not write the rendered frames into {writer.folder} (No space left on device)" in text
    assert "The scene was not changed." in text
    assert writer.written == 4 and not os.path.exists(writer.folder)
    assert pkg.motion.scene_fingerprint() == before and set(bpy.data.images) == images


def test_an_unwritable_frames_folder_gives_a_clear_message(addon, scene, backend, tmp_path):
    """The frames go to //image_dynamics_frames/ next to a saved .blend; a regular file of that
    name there (unwritable even for root) makes the render fail cleanly."""
    bpy, pkg = addon
    obj = _plane(bpy, tmp_path, frame_end=12)
    saved = tmp_path / "saved"
    saved.mkdir()
    assert bpy.ops.wm.save_as_mainfile(filepath=str(saved / "shot.blend")) == {"FINISHED"}
    (saved / "image_dynamics_frames").write_text("not a folder")
    obj = bpy.data.objects[obj.name]
    before = pkg.motion.scene_fingerprint()
    assert bpy.ops.image_dynamics.render_frames(renderer="mesh") == {"FINISHED"}
    level, text = _poll_until_done(pkg, obj)
    assert level == "ERROR", text
    assert f"Could not write the rendered frames into {saved / 'image_dynamics_frames'}" in text
    assert "check that the folder is writable" in text and "The scene was not changed." in text
    assert pkg.motion.scene_fingerprint() == before
    assert sorted(p.name for p in saved.iterdir()) == ["image_dynamics_frames", "shot.blend"]
