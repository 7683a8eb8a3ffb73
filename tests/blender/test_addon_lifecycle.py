"""The add-on's own machinery around the backend: the local backend's watch timer ends when there is
nothing to follow, and disabling the add-on (``unregister``) leaves no timers, threads, sockets or
processes behind - with a real local backend, a real prediction and a real stuck connection."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from blender_helpers import backend_exe

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "backend" / "image_dynamics" / "assets" / "photos" / "dahlia.jpg"
NAME = "bl_ext.user_default.image_dynamics"


def _ours() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("image-dynamics")]


def _timers(pkg) -> list:
    return [pkg.prediction.timer_step, pkg.frame_render.timer_step, pkg.prediction.watch_step]


def test_the_watch_timer_ends_after_start_then_stop(addon, scene):
    bpy, pkg = addon
    prefs = bpy.context.preferences.addons[NAME].preferences
    prefs.use_local_backend, prefs.backend_executable = True, backend_exe()
    prefs.model_source, prefs.tiny_seed, prefs.device = "TINY", 0, "cpu"
    local = pkg.backend_process.LOCAL
    local.stop()
    try:
        assert bpy.ops.image_dynamics.start_backend() == {"FINISHED"}
        assert bpy.app.timers.is_registered(pkg.prediction.watch_step) and not local.ready
        assert pkg.prediction.watch_step() == pkg.prediction.WATCH_INTERVAL  # still loading
        t0 = time.monotonic()
        assert bpy.ops.image_dynamics.stop_backend() == {"FINISHED"}  # before it was ready
        assert time.monotonic() - t0 < 0.5
        end = time.monotonic() + 30
        while (step := pkg.prediction.watch_step()) is not None:  # it used to return 0.5 forever
            assert step == pkg.prediction.WATCH_INTERVAL and local.stopping
            assert time.monotonic() < end, "the stopped backend was never reaped"
            time.sleep(0.05)
        assert not local.running and not local.stopping
    finally:
        local.stop()
        if bpy.app.timers.is_registered(pkg.prediction.watch_step):
            bpy.app.timers.unregister(pkg.prediction.watch_step)
        prefs.use_local_backend = False


def test_unregister_leaves_no_timers_threads_sockets_or_processes(addon, scene):
    bpy, pkg = addon
    prefs = bpy.context.preferences.addons[NAME].preferences
    prefs.use_local_backend, prefs.backend_executable = True, backend_exe()
    prefs.model_source, prefs.tiny_seed, prefs.device = "TINY", 0, "cpu"
    prefs.timeout = 1.0
    prefs.max_photo_side = 128
    local = pkg.backend_process.LOCAL
    local.stop()
    hole = socket.socket()  # accepts TCP, never speaks ZeroMQ: a hello to it is stuck until the timeout
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)
    registered = True
    try:
        assert bpy.ops.image_dynamics.start_backend(wait=120.0) == {"FINISHED"}
        proc = local.proc
        scene.image_dynamics.steps = 1000
        assert bpy.ops.image_dynamics.import_photo(filepath=str(PHOTO)) == {"FINISHED"}
        obj = bpy.context.active_object
        assert bpy.ops.image_dynamics.predict_motion() == {"FINISHED"}
        end = time.monotonic() + 60
        while pkg.prediction.pending_for(obj).state not in ("queued", "running"):
            assert time.monotonic() < end
            pkg.prediction.poll_jobs()
            time.sleep(0.02)
        clients = list(pkg.prediction._CLIENTS.values())
        assert clients
        # a Test Connection stuck in its worker thread
        prefs.use_local_backend = False
        prefs.address = f"tcp://127.0.0.1:{hole.getsockname()[1]}"
        assert bpy.ops.image_dynamics.test_connection() == {"FINISHED"}
        stuck = pkg.prediction.CHECK
        assert stuck is not None and stuck.thread.is_alive()
        pkg.frame_render.ensure_timer()  # as after a frame render
        assert all(bpy.app.timers.is_registered(t) for t in _timers(pkg))

        t0 = time.monotonic()
        pkg.unregister()
        registered = False
        assert time.monotonic() - t0 < 6.0
        assert not any(bpy.app.timers.is_registered(t) for t in _timers(pkg))
        assert not pkg.prediction.PENDING and pkg.prediction.CHECK is None
        assert pkg.prediction._CLIENTS == {} and all(c._sock is None for c in clients)
        assert not local.running and not local.stopping and proc.poll() is not None
        # The stuck hello ends by itself within the timeout and its thread closes its own socket.
        end = time.monotonic() + 1.0 + 3.0  # the timeout (1 s) and some slack
        while _ours():
            assert time.monotonic() < end, [t.name for t in _ours()]
            time.sleep(0.05)
        assert stuck.take_client() is None
    finally:
        hole.close()
        if not registered:
            pkg.register()
        prefs = bpy.context.preferences.addons[NAME].preferences
        prefs.use_local_backend = False
        prefs.timeout = 10.0
        local.stop()
    # registered again: the add-on works as before
    assert bpy.ops.image_dynamics.predict_motion.poll() in (True, False)
    assert hasattr(bpy.types.Object, "image_dynamics")
