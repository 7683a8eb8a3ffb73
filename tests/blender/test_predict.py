"""Predict Motion against real backends: ``image-dynamics serve --tiny-model`` subprocesses (one
started by the add-on itself as its local backend) and small scripted fake backends for failures
a real one cannot be made to produce on demand. The poll step is driven directly (timers never
fire in the bpy module); a cancelled, failed or killed prediction must leave the scene unchanged.
Operators never wait for the backend: they return at once and the poll step does the rest.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import time
import types
from pathlib import Path

import numpy as np
import pytest
from blender_helpers import FakeBackend, backend_exe, evaluated

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "backend" / "image_dynamics" / "assets" / "photos" / "dahlia.jpg"


@pytest.fixture(scope="module")
def prefs(addon):
    bpy, pkg = addon
    pr = bpy.context.preferences.addons["bl_ext.user_default.image_dynamics"].preferences
    pr.timeout = 2.0
    pr.max_photo_side = 256
    yield pr
    pr.use_local_backend = False
    pkg.backend_process.LOCAL.stop()


@pytest.fixture(scope="module")
def _local_backend_stopped_at_the_end(addon, prefs):
    bpy, pkg = addon
    yield
    local = pkg.backend_process.LOCAL
    if local.running:
        assert bpy.ops.image_dynamics.stop_backend() == {"FINISHED"}
    assert not local.running


@pytest.fixture
def local_backend(addon, prefs, _local_backend_stopped_at_the_end):
    """The add-on's own local backend: the tiny untrained model on the CPU (started once, and
    again if a test stopped it)."""
    bpy, pkg = addon
    _use_local(prefs)
    local = pkg.backend_process.LOCAL
    if not local.ready:
        assert bpy.ops.image_dynamics.start_backend(wait=120.0) == {"FINISHED"}
    assert local.ready and re.match(r"tcp://127\.0\.0\.1:\d+$", local.address)
    return local.address


def _photo_plane(bpy, scene):
    scene.image_dynamics.mesh_resolution = 24
    scene.image_dynamics.steps = 2
    assert bpy.ops.image_dynamics.import_photo(filepath=str(PHOTO)) == {"FINISHED"}
    return bpy.context.active_object


def _poll_until_done(pkg, obj, timeout: float = 60.0) -> tuple[str, str]:
    key = pkg.prediction.plane_key(obj)
    end = time.monotonic() + timeout
    while key in pkg.prediction.PENDING:
        assert time.monotonic() < end, "the prediction never ended"
        pkg.prediction.poll_jobs()
        time.sleep(0.02)
    return pkg.prediction.MESSAGES[key]


def _poll_until_state(pkg, obj, state: str, timeout: float = 60.0) -> None:
    key = pkg.prediction.plane_key(obj)
    end = time.monotonic() + timeout
    while pkg.prediction.PENDING[key].state != state:
        assert time.monotonic() < end, f"the prediction never reached {state!r}"
        pkg.prediction.poll_jobs()
        time.sleep(0.02)


def _poll_until_running(pkg, obj, timeout: float = 60.0) -> None:
    _poll_until_state(pkg, obj, "running", timeout)


def _start_long_prediction(bpy, pkg, scene):
    """A photo plane whose prediction (1,000 steps) is running on the backend: (plane, the scene's
    fingerprint before the click)."""
    obj = _photo_plane(bpy, scene)
    scene.image_dynamics.steps = 1000
    before = pkg.motion.scene_fingerprint()
    assert bpy.ops.image_dynamics.predict_motion() == {"FINISHED"}
    _poll_until_running(pkg, obj)
    return obj, before


def _check_connection(pkg, timeout: float = 30.0) -> tuple[str, str]:
    """Drive Test Connection's poll step; its (level, text)."""
    end = time.monotonic() + timeout
    while pkg.prediction.poll_check():
        assert time.monotonic() < end, "Test Connection never ended"
        time.sleep(0.02)
    return pkg.prediction.LAST_HELLO_LEVEL, pkg.prediction.LAST_HELLO_TEXT


def test_test_connection_shows_model_device_engine(addon, local_backend):
    bpy, pkg = addon
    assert bpy.ops.image_dynamics.test_connection() == {"FINISHED"}
    level, text = _check_connection(pkg)
    assert level == "INFO"
    assert "tiny-untrained" in text and "UNTRAINED TEST MODEL" in text and "cpu" in text and "torch" in text


def test_predict_applies_the_motion_in_one_step(addon, scene, local_backend):
    bpy, pkg = addon
    obj = _photo_plane(bpy, scene)
    before = pkg.motion.scene_fingerprint()
    assert bpy.ops.image_dynamics.predict_motion() == {"FINISHED"}
    assert pkg.prediction.pending_for(obj) is not None
    assert pkg.motion.scene_fingerprint() == before  # nothing changes while the job runs
    level, text = _poll_until_done(pkg, obj)
    assert level == "INFO" and "Motion predicted" in text and "untrained" in text
    p = obj.image_dynamics
    assert p.has_motion and p.num_modes == 16
    vol = pkg.motion.get_volume(obj)
    h, w = vol.S.shape[2:]
    assert abs(w / h - 640 / 427) < 0.2  # the motion was asked for at the photo's aspect ratio
    assert vol.source == "predict" and vol.meta["steps"] == 2
    rest = evaluated(bpy, obj, 1)["co"]
    assert np.abs(evaluated(bpy, obj, 20)["co"] - rest).max() > 0  # it moves


def test_cancel_mid_predict_leaves_the_scene_unchanged(addon, scene, local_backend):
    bpy, pkg = addon
    obj, before = _start_long_prediction(bpy, pkg, scene)
    job = pkg.prediction.pending_for(obj).job
    assert bpy.ops.image_dynamics.cancel_prediction() == {"FINISHED"}
    assert pkg.prediction.message_for(obj) == ("INFO", "Prediction cancelled; the scene was not changed.")
    end = time.monotonic() + 30
    while not job.done:  # the backend confirms; nothing is applied
        assert time.monotonic() < end
        job.poll()
        pkg.prediction.poll_jobs()
        time.sleep(0.02)
    assert job.state == "cancelled"
    assert pkg.motion.scene_fingerprint() == before
    assert not obj.image_dynamics.has_motion


@pytest.fixture
def own_server(addon, prefs, tmp_path):
    """A separate ``serve --tiny-model`` process this test may kill; prefs point at it."""
    bpy, pkg = addon
    out = open(tmp_path / "serve.out", "w+")
    proc = subprocess.Popen([backend_exe(), "serve", "--tiny-model", "1", "--bind", "tcp://127.0.0.1:0", "--device", "cpu",
                             "--threads", "1"], stdout=out, stderr=subprocess.STDOUT, text=True)
    end = time.monotonic() + 120
    address = None
    while address is None:
        assert proc.poll() is None, (tmp_path / "serve.out").read_text()
        assert time.monotonic() < end
        m = re.search(r"backend ready on (\S+)", (tmp_path / "serve.out").read_text())
        address = m.group(1) if m else None
        time.sleep(0.1)
    old = prefs.use_local_backend, prefs.address
    prefs.use_local_backend = False
    prefs.address = address
    yield proc
    prefs.use_local_backend, prefs.address = old
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    out.close()


def test_killed_backend_leaves_the_scene_unchanged_with_a_clear_message(addon, scene, own_server):
    bpy, pkg = addon
    obj, before = _start_long_prediction(bpy, pkg, scene)
    own_server.kill()
    own_server.wait()
    level, text = _poll_until_done(pkg, obj, timeout=30)
    assert level == "ERROR"
    assert "stopped answering" in text and "scene was not changed" in text
    assert pkg.motion.scene_fingerprint() == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_port_is_reported_with_the_fix(addon, scene, prefs):
    bpy, pkg = addon
    obj = _photo_plane(bpy, scene)
    prefs.use_local_backend = False
    prefs.address = f"tcp://127.0.0.1:{_free_port()}"
    before = pkg.motion.scene_fingerprint()
    assert bpy.ops.image_dynamics.predict_motion() == {"FINISHED"}  # the probe runs in a worker thread
    level, text = _poll_until_done(pkg, obj)
    assert level == "ERROR" and "connection refused" in text and "Start Local Backend" in text, text
    assert prefs.address in text
    assert pkg.motion.scene_fingerprint() == before
    assert bpy.ops.image_dynamics.test_connection() == {"FINISHED"}
    level, text = _check_connection(pkg)
    assert level == "ERROR" and "connection refused" in text


HELLO = {"op": "hello", "instance": "fake", "model": {"name": "fake", "resolution": [48, 32], "fps": 30.0},
         "device": "cpu", "engine": "fake", "supported_versions": [1]}


def _error(code: str, message: str) -> dict:
    return {"op": "error", "code": code, "message": message, "hint": "", "retryable": False}


@pytest.mark.parametrize("where, code, expect", [
    ("hello", "unsupported_version", "different protocol versions"),
    ("predict", "out_of_memory", "ran out of memory"),
    ("predict", "bad_option", "rejected a setting"),
    ("predict", "some_future_code", "reported a problem (some_future_code)"),
])
def test_backend_errors_become_sentences_and_change_nothing(addon, scene, prefs, where, code, expect):
    bpy, pkg = addon

    def script(header):
        if header["op"] == "hello":
            return [_error(code, "protocol 1 is not supported")] if where == "hello" else [HELLO]
        if header["op"] == "predict":
            return [{"op": "accepted", "queue_position": 0}, {"op": "progress", "step": 0, "total": 2},
                    _error(code, "simulated failure")]
        return []

    fake = FakeBackend(script)
    try:
        prefs.use_local_backend = False
        prefs.address = fake.address
        pkg.prediction.close_clients()
        obj = _photo_plane(bpy, scene)
        before = pkg.motion.scene_fingerprint()
        assert bpy.ops.image_dynamics.predict_motion() == {"FINISHED"}
        level, text = _poll_until_done(pkg, obj, timeout=20)
        assert level == "ERROR" and expect in text, text
        assert pkg.motion.scene_fingerprint() == before
    finally:
        pkg.prediction.close_clients()
        fake.close()


# -- no waiting in the UI, the local backend's life, addresses, cancels, Edit Mode, renames ------------------

class FakeLayout:
    """Stands in for a panel's layout: records the label texts, accepts everything else."""

    def __init__(self, labels: list) -> None:
        self.labels = labels

    def label(self, text="", **_kw):
        self.labels.append(text)

    def __getattr__(self, name):
        def call(*_a, **_kw):
            return self
        return call


def _drawn_text(bpy, pkg, use_local_backend: bool, model_source: str) -> str:
    """Every label of the Predict Motion panel and the preferences, joined (wrapped lines too)."""
    labels: list = []
    pkg.panels.IMAGE_DYNAMICS_PT_predict.draw(types.SimpleNamespace(layout=FakeLayout(labels)), bpy.context)
    pkg.preferences.IMAGE_DYNAMICS_AddonPreferences.draw(types.SimpleNamespace(
        layout=FakeLayout(labels), use_local_backend=use_local_backend, model_source=model_source), bpy.context)
    assert not any(t.startswith("Image Dynamics:") for t in labels), labels  # the draw guard never fired
    return " ".join(labels)


def _use_local(prefs, model_source="TINY", model_path=""):
    prefs.use_local_backend = True
    prefs.backend_executable = backend_exe()
    prefs.model_source = model_source
    prefs.model_path = model_path
    prefs.tiny_seed = 0
    prefs.device = "cpu"


@contextlib.contextmanager
def _timed(limit: float):
    """The block must return within ``limit`` seconds (Blender's UI thread must not wait)."""
    t0 = time.monotonic()
    yield
    took = time.monotonic() - t0
    assert took < limit, f"took {took:.2f} s on the UI thread"


def test_predict_does_not_wait_for_a_starting_local_backend(addon, scene, prefs):
    """The local backend loads torch and its model before it is ready: Predict returns at once,
    the job waits as 'Starting' (cancellable), and the poll step sends it once the backend is up."""
    bpy, pkg = addon
    local = pkg.backend_process.LOCAL
    local.stop()
    _use_local(prefs)
    try:
        obj = _photo_plane(bpy, scene)
        before = pkg.motion.scene_fingerprint()
        with _timed(1.0):  # it used to wait for the backend, up to 120 s
            assert bpy.ops.image_dynamics.predict_motion() == {"FINISHED"}
        pending = pkg.prediction.pending_for(obj)
        assert local.running and not local.ready and pending.state == "starting"
        assert pkg.prediction.status_text(pending) == "Starting the local backend..."
        assert "local backend is starting" in pkg.prediction.message_for(obj)[1]
        assert bpy.ops.image_dynamics.cancel_prediction.poll()
        with _timed(0.5):
            assert bpy.ops.image_dynamics.test_connection() == {"FINISHED"}
        assert "test again in a moment" in pkg.prediction.LAST_HELLO_TEXT
        with _timed(0.25):
            pkg.prediction.poll_jobs()
        assert "starting" in _drawn_text(bpy, pkg, True, "TINY")
        assert pkg.motion.scene_fingerprint() == before
        level, text = _poll_until_done(pkg, obj, timeout=120)
        assert level == "INFO" and "Motion predicted" in text, text
        assert obj.image_dynamics.has_motion and local.ready

        # Cancel while it starts: the job goes, the scene stays, the backend keeps starting.
        local.stop()
        obj2 = _photo_plane(bpy, scene)
        before = pkg.motion.scene_fingerprint()
        assert bpy.ops.image_dynamics.predict_motion() == {"FINISHED"}
        assert pkg.prediction.pending_for(obj2).state == "starting"
        assert bpy.ops.image_dynamics.cancel_prediction() == {"FINISHED"}
        assert pkg.prediction.pending_for(obj2) is None and "cancelled" in pkg.prediction.message_for(obj2)[1]
        assert pkg.motion.scene_fingerprint() == before and local.running
    finally:
        local.stop()
        prefs.use_local_backend = False


def test_a_local_backend_that_fails_to_start_says_why_in_the_ui(addon, scene, prefs, tmp_path):
    bpy, pkg = addon
    local = pkg.backend_process.LOCAL
    local.stop()
    _use_local(prefs, "FOLDER", str(tmp_path))  # an empty folder is no model: the backend exits
    try:
        obj = _photo_plane(bpy, scene)
        before = pkg.motion.scene_fingerprint()
        assert bpy.ops.image_dynamics.predict_motion() == {"FINISHED"}
        assert pkg.prediction.pending_for(obj).state == "starting"
        level, text = _poll_until_done(pkg, obj, timeout=120)
        # the waiting job fails with the backend's own words (its stderr), not a console line
        assert level == "ERROR" and "The local backend exited" in text, text
        assert "is not a saved motion predictor" in text and "config.json" in text
        assert pkg.motion.scene_fingerprint() == before
        drawn = _drawn_text(bpy, pkg, True, "FOLDER")
        assert drawn.count("is not a saved motion predictor") >= 2  # the panel and the preferences
        assert pkg.prediction.watch_step() is None  # nothing left to follow: the watch timer ends

        # No executable: said at once, and kept for the panels too.
        prefs.backend_executable = str(tmp_path / "no-such-image-dynamics")
        with pytest.raises(RuntimeError, match="no image-dynamics executable found"):
            bpy.ops.image_dynamics.predict_motion()
        assert "no image-dynamics executable found" in _drawn_text(bpy, pkg, True, "FOLDER")
        assert pkg.prediction.pending_for(obj) is None
    finally:
        local.stop()
        prefs.use_local_backend = False


def test_nothing_waits_on_a_listener_that_never_answers(addon, scene, prefs):
    """Something accepts TCP but never speaks ZeroMQ: the hello runs in a worker thread, so the
    operators and every poll step return at once, and the job fails after the timeout."""
    bpy, pkg = addon
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)  # the kernel completes TCP handshakes; nobody ever reads or writes
        prefs.use_local_backend = False
        prefs.address = f"tcp://127.0.0.1:{hole.getsockname()[1]}"
        prefs.timeout = 1.0
        try:
            obj = _photo_plane(bpy, scene)
            before = pkg.motion.scene_fingerprint()
            with _timed(0.5):
                assert bpy.ops.image_dynamics.predict_motion() == {"FINISHED"}
            with _timed(0.5):
                assert bpy.ops.image_dynamics.test_connection() == {"FINISHED"}
            assert pkg.prediction.pending_for(obj).state == "connecting"
            end = time.monotonic() + 20
            while pkg.prediction.pending_for(obj) is not None or pkg.prediction.CHECK is not None:
                assert time.monotonic() < end
                with _timed(0.25):
                    pkg.prediction.poll_jobs()
                time.sleep(0.02)
            level, text = pkg.prediction.message_for(obj)
            assert level == "ERROR" and "No answer from a backend at" in text and prefs.address in text, text
            assert pkg.prediction.LAST_HELLO_LEVEL == "ERROR" and "No answer" in pkg.prediction.LAST_HELLO_TEXT
            assert pkg.motion.scene_fingerprint() == before
        finally:
            prefs.timeout = 2.0


@pytest.mark.parametrize("address, expect", [
    ("localhost:5555", "needs the tcp:// prefix: write tcp://localhost:5555"),
    ("127.0.0.1:5555", "needs the tcp:// prefix: write tcp://127.0.0.1:5555"),
    ("tcp://127.0.0.1", "has no port"),
    ("tcp://127.0.0.1:99999", "no valid port"),
    ("http://127.0.0.1:5555", "cannot use"),
    ("", "No backend address is set"),
])
def test_a_malformed_address_is_refused_with_the_fix(addon, scene, prefs, address, expect):
    bpy, pkg = addon
    prefs.use_local_backend = False
    prefs.address = address
    obj = _photo_plane(bpy, scene)
    before = pkg.motion.scene_fingerprint()
    with pytest.raises(RuntimeError) as info:  # an operator's ERROR report, not a traceback
        bpy.ops.image_dynamics.predict_motion()
    assert expect in str(info.value) and "ZMQError" not in str(info.value)
    level, text = pkg.prediction.message_for(obj)
    assert level == "ERROR" and expect in text and "add-on preferences" in text
    assert pkg.prediction.pending_for(obj) is None and pkg.motion.scene_fingerprint() == before
    with pytest.raises(RuntimeError, match=re.escape(expect)):
        bpy.ops.image_dynamics.test_connection()
    assert pkg.prediction.LAST_HELLO_LEVEL == "ERROR"
    with pytest.raises(pkg.prediction.PredictionError, match=re.escape(expect)):
        pkg.prediction.hello(address, 1.0)  # the blocking script API checks it too


@contextlib.contextmanager
def _serve(tmp_path, *args):
    """A real ``serve --tiny-model`` with extra flags; yields its address."""
    out = open(tmp_path / "serve-extra.out", "w+")
    proc = subprocess.Popen([backend_exe(), "serve", "--tiny-model", "1", "--bind", "tcp://127.0.0.1:0", "--device",
                             "cpu", "--threads", "1", *args], stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        end = time.monotonic() + 120
        while not (m := re.search(r"backend ready on (\S+)", (tmp_path / "serve-extra.out").read_text())):
            assert proc.poll() is None, (tmp_path / "serve-extra.out").read_text()
            assert time.monotonic() < end
            time.sleep(0.1)
        yield m.group(1)
    finally:
        proc.kill()
        proc.wait()
        out.close()


def test_a_failed_send_becomes_a_message(addon, scene, prefs, tmp_path):
    """The client refuses to send a request over the backend's max_message_bytes (BackendError from
    submit): that is a message with the fix, not a traceback out of the poll step."""
    bpy, pkg = addon
    with _serve(tmp_path, "--max-message-mb", "0.07") as address:
        prefs.use_local_backend = False
        prefs.address = address
        obj = _photo_plane(bpy, scene)  # 256 px photo: ~130 KB, over 0.07 MiB
        before = pkg.motion.scene_fingerprint()
        assert bpy.ops.image_dynamics.predict_motion() == {"FINISHED"}
        level, text = _poll_until_done(pkg, obj, timeout=30)
        assert level == "ERROR" and "too large for this backend" in text and "Photo Size Sent" in text, text
        assert pkg.motion.scene_fingerprint() == before
        prefs.max_photo_side = 64  # the fix the message names works
        try:
            assert bpy.ops.image_dynamics.predict_motion() == {"FINISHED"}
            level, text = _poll_until_done(pkg, obj, timeout=60)
            assert level == "INFO" and "Motion predicted" in text, text
        finally:
            prefs.max_photo_side = 256
    pkg.prediction.close_client(address)


def test_a_backend_shutdown_is_not_reported_as_a_user_cancel(addon, scene, own_server):
    bpy, pkg = addon
    obj, before = _start_long_prediction(bpy, pkg, scene)
    own_server.terminate()  # SIGTERM: the backend cancels its jobs with reason "shutdown"
    level, text = _poll_until_done(pkg, obj, timeout=30)
    assert level == "ERROR" and "shut down" in text and "predict again" in text, text
    assert "Prediction cancelled" not in text
    assert pkg.motion.scene_fingerprint() == before


def test_a_heartbeat_timeout_is_not_reported_as_a_user_cancel(addon, scene, own_server, prefs):
    """Blender stops polling (busy) past the heartbeat timeout it declared: the backend drops the job."""
    bpy, pkg = addon
    prefs.timeout = 1.0  # heartbeat timeout max(2, 6 x timeout) = 6 s
    try:
        pkg.prediction.close_clients()  # the job's client is the one that says hello (and declares it)
        obj, before = _start_long_prediction(bpy, pkg, scene)
        time.sleep(8.0)  # no poll step, so no ping
        level, text = _poll_until_done(pkg, obj, timeout=30)
        assert level == "ERROR" and "heartbeat timeout" in text and "predict again" in text, text
        assert pkg.motion.scene_fingerprint() == before
    finally:
        prefs.timeout = 2.0


def test_a_result_waits_while_its_plane_is_in_edit_mode(addon, scene, local_backend):
    bpy, pkg = addon
    obj = _photo_plane(bpy, scene)
    assert bpy.ops.image_dynamics.predict_motion() == {"FINISHED"}
    assert bpy.ops.object.mode_set(mode="EDIT") == {"FINISHED"}
    _poll_until_state(pkg, obj, "waiting")
    assert pkg.prediction.message_for(obj) == ("INFO", f"Leave Edit Mode on {obj.name} to apply the predicted motion.")
    assert pkg.prediction.status_text(pkg.prediction.pending_for(obj)) == "Waiting for Object Mode"
    for _ in range(3):
        pkg.prediction.poll_jobs()
    assert pkg.prediction.pending_for(obj).state == "waiting" and not obj.image_dynamics.has_motion
    assert bpy.ops.object.mode_set(mode="OBJECT") == {"FINISHED"}
    level, text = _poll_until_done(pkg, obj)
    assert level == "INFO" and "Motion predicted" in text, text
    assert obj.image_dynamics.has_motion


def test_jobs_follow_the_plane_not_its_name(addon, scene, local_backend):
    bpy, pkg = addon
    obj = _photo_plane(bpy, scene)
    assert bpy.ops.image_dynamics.predict_motion() == {"FINISHED"}
    obj.name = "Renamed while predicting"
    level, text = _poll_until_done(pkg, obj)
    assert level == "INFO" and "Motion predicted" in text and obj.image_dynamics.has_motion

    # A new plane that takes a deleted plane's name does not get the deleted plane's result.
    old = _photo_plane(bpy, scene)
    name, old_key = old.name, pkg.prediction.plane_key(old)
    assert bpy.ops.image_dynamics.predict_motion() == {"FINISHED"}
    bpy.data.objects.remove(old)
    new = _photo_plane(bpy, scene)
    new.name = name
    assert new.name == name and pkg.prediction.pending_for(new) is None
    before = pkg.motion.scene_fingerprint()
    end = time.monotonic() + 60
    while old_key in pkg.prediction.PENDING:
        assert time.monotonic() < end
        pkg.prediction.poll_jobs()
        time.sleep(0.02)
    level, text = pkg.prediction.MESSAGES[old_key]
    assert level == "ERROR" and "was deleted" in text
    assert not new.image_dynamics.has_motion and pkg.prediction.message_for(new) is None
    assert pkg.motion.scene_fingerprint() == before
