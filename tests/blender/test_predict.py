"""Predict Motion against real backends: ``image-dynamics serve --tiny-model`` subprocesses (one
started by the add-on itself as its local backend) and small scripted fake backends for failures
a real one cannot be made to produce on demand. The poll step is driven directly (timers never
fire in the bpy module); a cancelled, failed or killed prediction must leave the scene unchanged.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from blender_helpers import backend_exe, evaluated

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
def local_backend(addon, prefs):
    """The add-on's own local backend: the tiny untrained model on the CPU."""
    bpy, pkg = addon
    prefs.use_local_backend = True
    prefs.backend_executable = backend_exe()
    prefs.model_source = "TINY"
    prefs.tiny_seed = 0
    prefs.device = "cpu"
    assert bpy.ops.image_dynamics.start_backend(wait=120.0) == {"FINISHED"}
    local = pkg.backend_process.LOCAL
    assert local.ready and re.match(r"tcp://127\.0\.0\.1:\d+$", local.address)
    yield local.address
    bpy.ops.image_dynamics.stop_backend()
    assert not local.running


def _photo_plane(bpy, scene):
    scene.image_dynamics.mesh_resolution = 24
    scene.image_dynamics.steps = 2
    assert bpy.ops.image_dynamics.import_photo(filepath=str(PHOTO)) == {"FINISHED"}
    return bpy.context.active_object


def _poll_until_done(pkg, name: str, timeout: float = 60.0) -> tuple[str, str]:
    end = time.monotonic() + timeout
    while name in pkg.prediction.PENDING:
        assert time.monotonic() < end, "the prediction never ended"
        pkg.prediction.poll_jobs()
        time.sleep(0.02)
    return pkg.prediction.MESSAGES[name]


def _poll_until_running(pkg, name: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while pkg.prediction.PENDING[name].state != "running":
        assert time.monotonic() < end, "the prediction never started running"
        pkg.prediction.poll_jobs()
        time.sleep(0.02)


def test_test_connection_shows_model_device_engine(addon, local_backend):
    bpy, pkg = addon
    assert bpy.ops.image_dynamics.test_connection() == {"FINISHED"}
    text = pkg.prediction.LAST_HELLO_TEXT
    assert "tiny-untrained" in text and "UNTRAINED TEST MODEL" in text and "cpu" in text and "torch" in text


def test_predict_applies_the_motion_in_one_step(addon, scene, local_backend):
    bpy, pkg = addon
    obj = _photo_plane(bpy, scene)
    before = pkg.motion.scene_fingerprint()
    assert bpy.ops.image_dynamics.predict_motion() == {"FINISHED"}
    assert obj.name in pkg.prediction.PENDING
    assert pkg.motion.scene_fingerprint() == before  # nothing changes while the job runs
    level, text = _poll_until_done(pkg, obj.name)
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
    obj = _photo_plane(bpy, scene)
    scene.image_dynamics.steps = 1000
    before = pkg.motion.scene_fingerprint()
    assert bpy.ops.image_dynamics.predict_motion() == {"FINISHED"}
    _poll_until_running(pkg, obj.name)
    job = pkg.prediction.PENDING[obj.name].job
    assert bpy.ops.image_dynamics.cancel_prediction() == {"FINISHED"}
    assert pkg.prediction.MESSAGES[obj.name] == ("INFO", "Prediction cancelled; the scene was not changed.")
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
    obj = _photo_plane(bpy, scene)
    scene.image_dynamics.steps = 1000
    before = pkg.motion.scene_fingerprint()
    assert bpy.ops.image_dynamics.predict_motion() == {"FINISHED"}
    _poll_until_running(pkg, obj.name)
    own_server.kill()
    own_server.wait()
    level, text = _poll_until_done(pkg, obj.name, timeout=30)
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
    with pytest.raises(RuntimeError, match="connection refused"):
        bpy.ops.image_dynamics.predict_motion()
    level, text = pkg.prediction.MESSAGES[obj.name]
    assert level == "ERROR" and "Start Local Backend" in text and prefs.address in text
    assert pkg.motion.scene_fingerprint() == before
    with pytest.raises(RuntimeError, match="connection refused"):
        bpy.ops.image_dynamics.test_connection()


class FakeBackend:
    """A scripted ROUTER speaking just enough protocol: ``script(header) -> list of reply headers``."""

    def __init__(self, script) -> None:
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{port}"
        self.script = script
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self.stop.is_set():
            if not dict(poller.poll(50)):
                continue
            frames = self.sock.recv_multipart()
            ident, header = frames[0], json.loads(frames[1])
            if header.get("op") == "ping":
                replies = [{"op": "pong", "instance": "fake", "time": time.time()}]
            else:
                replies = self.script(header)
            for reply in replies:
                self.sock.send_multipart([ident, json.dumps({"protocol": 1, "id": header.get("id"), **reply}).encode()])

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


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
        if where == "hello":
            with pytest.raises(RuntimeError, match=expect.split()[0]):
                bpy.ops.image_dynamics.predict_motion()
            level, text = pkg.prediction.MESSAGES[obj.name]
        else:
            assert bpy.ops.image_dynamics.predict_motion() == {"FINISHED"}
            level, text = _poll_until_done(pkg, obj.name, timeout=20)
        assert level == "ERROR" and expect in text, text
        assert pkg.motion.scene_fingerprint() == before
    finally:
        pkg.prediction.close_clients()
        fake.close()
