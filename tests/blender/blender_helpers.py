"""Helpers for the Blender tests: synthetic volumes, evaluated meshes, numpy expectations, a scripted
fake backend."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from image_dynamics.motion import volume_file

K, H, W = 16, 20, 32  # a small volume: motion only in its left half


def backend_exe() -> str:
    """The ``image-dynamics`` console script (``$IMAGE_DYNAMICS_EXE`` or the venv's); skips the test if absent."""
    exe = Path(os.environ.get("IMAGE_DYNAMICS_EXE") or Path(sys.executable).with_name("image-dynamics"))
    if not exe.exists():
        pytest.skip("the image-dynamics console script is not installed in this environment")
    return str(exe)


def synthetic_volume(seed: int = 0, modes=None, left_only: bool = True, scale: float = 0.3) -> np.ndarray:
    """(K, 2, H, W) complex64 random bases, zero in the right half of the photo (``left_only``)."""
    rng = np.random.default_rng(seed)
    S = np.zeros((K, 2, H, W), np.complex64)
    cols = slice(0, W // 2) if left_only else slice(0, W)
    n = W // 2 if left_only else W
    S[:, :, :, cols] = (rng.normal(size=(K, 2, H, n)) + 1j * rng.normal(size=(K, 2, H, n))) * scale
    if modes is not None:
        keep = np.zeros(K, bool)
        keep[list(modes)] = True
        S[~keep] = 0
    return S


def write_volume(path: Path, S: np.ndarray, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed + 100)
    img = (rng.uniform(size=(S.shape[2], S.shape[3], 3)) * 255).astype(np.uint8)
    volume_file.save_volume(path, volume_file.SpectralVolume(S=S, image=img, source="synth"))
    return path


def evaluated(bpy, obj, frame: int, subframe: float = 0.0, attrs=()):
    """Depsgraph-evaluated vertex positions (N, 3) at a (sub)frame, plus the named point attributes."""
    scene = bpy.context.scene
    scene.frame_set(frame, subframe=subframe)
    dg = bpy.context.evaluated_depsgraph_get()
    ev = obj.evaluated_get(dg)
    me = ev.to_mesh()
    try:
        co = np.empty(len(me.vertices) * 3, np.float32)
        me.vertices.foreach_get("co", co)
        out = {"co": co.reshape(-1, 3)}
        for name in attrs:
            a = me.attributes[name]
            n = len(a.data)
            if a.data_type == "FLOAT_VECTOR":
                v = np.empty(n * 3, np.float32)
                a.data.foreach_get("vector", v)
                out[name] = v.reshape(-1, 3)
            else:
                v = np.empty(n, np.float32)
                a.data.foreach_get("value", v)
                out[name] = v
        return out
    finally:
        ev.to_mesh_clear()


class PlaneModel:
    """The numpy side of a plane: its grid, the volume sampled at its vertices, px -> local units."""

    def __init__(self, pkg, obj, S: np.ndarray) -> None:
        p = obj.image_dynamics
        self.grid = pkg.core.grid.PlaneGrid(p.grid_nx, p.grid_ny, p.width, p.height)
        self.rest = self.grid.vertex_positions().astype(np.float64)
        h, w = S.shape[2:]
        pc = self.grid.pixel_coords(w, h)
        # (K, 2, 1, N): the volume at the vertices, as a 1 x N "image" for spectral.py / loops.py
        self.Sv = pkg.core.grid.sample_bilinear(S, pc[:, 0], pc[:, 1])[:, :, None, :]
        self.sx, self.sy = self.grid.pixel_scale(w, h)

    def positions(self, D: np.ndarray) -> np.ndarray:
        """Rest positions + a pixel displacement (2, 1, N) or (2, N) in local units."""
        D = np.asarray(D, dtype=np.float64).reshape(2, -1)
        out = self.rest.copy()
        out[:, 0] += D[0] * self.sx
        out[:, 1] += D[1] * self.sy
        return out

    def local(self, D: np.ndarray) -> np.ndarray:
        D = np.asarray(D, dtype=np.float64).reshape(2, -1)
        return np.stack([D[0] * self.sx, D[1] * self.sy, np.zeros_like(D[0])], axis=1)


def import_volume(bpy, path: Path):
    res = bpy.ops.image_dynamics.import_motion(filepath=str(path))
    assert res == {"FINISHED"}
    return bpy.context.active_object


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
