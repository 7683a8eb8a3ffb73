"""The add-on's bpy-free helpers (addon/core, addon/backend_process.py), without Blender.

The add-on reaches the motion math through vendored copies made at build time, so these tests
assemble the extension folder (``scripts/build_extension.py``, no wheels) into a temporary
directory and import its ``core`` package under a stand-in parent package: the add-on's
``__init__`` (which needs bpy) never runs.
"""

from __future__ import annotations

import importlib
import socket
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

from image_dynamics.motion import loops, modal, spectral, volume_file
from image_dynamics.protocol.messages import ErrorCode

REPO = Path(__file__).resolve().parents[2]
PKG = "_idaddon_under_test"


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import build_extension
    finally:
        sys.path.pop(0)
    folder = build_extension.assemble(tmp_path_factory.mktemp("ext"), None)
    parent = types.ModuleType(PKG)
    parent.__path__ = [str(folder)]
    sys.modules[PKG] = parent
    mods = types.SimpleNamespace(
        grid=importlib.import_module(f"{PKG}.core.grid"),
        coords=importlib.import_module(f"{PKG}.core.coords"),
        errors=importlib.import_module(f"{PKG}.core.errors"),
        imaging=importlib.import_module(f"{PKG}.core.imaging"),
        pc2=importlib.import_module(f"{PKG}.core.pc2"),
        volume_io=importlib.import_module(f"{PKG}.core.volume_io"),
        png=importlib.import_module(f"{PKG}.core.png"),
        frame_writer=importlib.import_module(f"{PKG}.core.frame_writer"),
        backend_process=importlib.import_module(f"{PKG}.backend_process"),
    )
    yield mods
    for name in [m for m in sys.modules if m == PKG or m.startswith(PKG + ".")]:
        del sys.modules[name]


def _volume(K=6, H=10, W=16, seed=0):
    rng = np.random.default_rng(seed)
    return ((rng.normal(size=(K, 2, H, W)) + 1j * rng.normal(size=(K, 2, H, W))) * 0.5).astype(np.complex64)


def test_core_never_imports_bpy(core):
    for mod in (core.grid, core.coords, core.errors, core.imaging, core.pc2, core.volume_io, core.backend_process,
                core.png, core.frame_writer):
        src = Path(mod.__file__).read_text()
        assert "import bpy" not in src and "mathutils" not in src


# -- grid ------------------------------------------------------------------------------------------

def test_grid_for_photo_keeps_the_aspect_ratio(core):
    g = core.grid.grid_for_photo(640, 427, 128, height=2.0)
    assert g.nx == 128 and g.ny == 86
    assert abs(g.width / g.height - 640 / 427) < 1e-9
    tall = core.grid.grid_for_photo(300, 600, 65, height=1.0)
    assert (tall.nx, tall.ny) == (33, 65)
    with pytest.raises(ValueError):
        core.grid.PlaneGrid(1, 5, 1.0, 1.0)


def test_grid_geometry_uvs_and_faces(core):
    g = core.grid.PlaneGrid(5, 3, 4.0, 2.0)
    pos = g.vertex_positions()
    uv = g.vertex_uv()
    assert pos.shape == (15, 3) and uv.shape == (15, 2)
    np.testing.assert_allclose(pos[0], [-2, -1, 0])  # vertex 0: bottom left
    np.testing.assert_allclose(pos[-1], [2, 1, 0])
    np.testing.assert_allclose(uv[0], [0, 0])
    np.testing.assert_allclose(uv[-1], [1, 1])
    faces = g.faces()
    assert faces.shape == (8, 4)
    for f in faces:  # counter-clockwise seen from +Z: normals face +Z
        a, b, c = pos[f[0]], pos[f[1]], pos[f[2]]
        assert np.cross(b - a, c - a)[2] > 0


def test_pixel_mapping_top_row_is_the_top_of_the_photo(core):
    g = core.grid.PlaneGrid(3, 3, 2.0, 2.0)
    pc = g.pixel_coords(16, 10)
    np.testing.assert_allclose(pc[0], [-0.5, 9.5])  # bottom-left vertex looks at the last row
    np.testing.assert_allclose(pc[-1], [15.5, -0.5])  # top-right vertex at row 0
    x, y = g.local_to_pixel(0.0, 0.0, 16, 10)
    assert (x, y) == (7.5, 4.5)
    sx, sy = g.pixel_scale(16, 10)
    assert sx == 2.0 / 16 and sy == -2.0 / 10
    dx, dy = g.local_dir_to_pixel(0.0, 1.0, 16, 10)  # up on the plane = towards row 0
    assert dx == 0 and dy < 0


def test_sample_bilinear_hits_pixels_and_interpolates(core):
    S = _volume()
    ys, xs = np.meshgrid(np.arange(10), np.arange(16), indexing="ij")
    got = core.grid.sample_bilinear(S, xs.reshape(-1), ys.reshape(-1))
    np.testing.assert_allclose(got, S.reshape(6, 2, -1), atol=1e-6)
    mid = core.grid.sample_bilinear(S, np.array([2.5]), np.array([3.0]))[..., 0]
    np.testing.assert_allclose(mid, (S[:, :, 3, 2] + S[:, :, 3, 3]) / 2, atol=1e-6)
    clamped = core.grid.sample_bilinear(S, np.array([-5.0]), np.array([100.0]))[..., 0]
    np.testing.assert_allclose(clamped, S[:, :, 9, 0], atol=1e-6)


def test_vertex_bases_reproduce_the_spectral_motion(core):
    """The mesh's modal sum (bases in local units) equals spectral_to_motion, y flipped and scaled."""
    S = _volume()
    g = core.grid.PlaneGrid(9, 7, 3.2, 2.0)
    re, im = core.grid.vertex_bases(S, g)
    pc = g.pixel_coords(16, 10)
    Sv = core.grid.sample_bilinear(S, pc[:, 0], pc[:, 1])[:, :, None, :]
    t = np.array([3.7])
    q = spectral.time_basis(t, 6)[0]
    local = (re * q.real[:, None, None] - im * q.imag[:, None, None]).sum(axis=0)
    D = spectral.spectral_to_motion(Sv, times=t)[0, :, 0, :]
    np.testing.assert_allclose(local[:, 0], D[0] * 3.2 / 16, atol=1e-5)
    np.testing.assert_allclose(local[:, 1], -D[1] * 2.0 / 10, atol=1e-5)
    assert np.all(local[:, 2] == 0)


def test_pin_weights_and_moving_mask(core):
    g = core.grid.PlaneGrid(21, 11, 2.0, 1.0)
    w = core.grid.pin_weights(g, 0.2)
    uv = g.vertex_uv()
    edge = (uv[:, 0] == 0) | (uv[:, 0] == 1) | (uv[:, 1] == 0) | (uv[:, 1] == 1)
    assert np.all(w[edge] == 0)
    assert w[(np.abs(uv[:, 0] - 0.5) < 0.01) & (np.abs(uv[:, 1] - 0.5) < 0.01)][0] == 1
    assert np.all((w >= 0) & (w <= 1))
    assert np.all(core.grid.pin_weights(g, 0.0) == 1)
    S = np.zeros((4, 2, 10, 16), np.complex64)
    S[1, 0, :, :8] = 0.5
    amp = core.grid.vertex_amplitude(S, core.grid.PlaneGrid(16, 10, 1.6, 1.0))
    mask = core.grid.moving_mask(amp)
    assert mask.reshape(10, 16)[:, :7].min() == 1 and mask.reshape(10, 16)[:, 9:].max() == 0


def test_pin_weight_image_is_the_vertex_rule_at_pixel_centres(core):
    g = core.grid.PlaneGrid(65, 41, 1.6, 1.0)
    W, H = 32, 20
    img = core.grid.pin_weight_image(g, W, H, 0.3)
    assert img.shape == (H, W) and img.dtype == np.float32
    assert np.allclose(img, img[::-1]) and np.allclose(img, img[:, ::-1])  # symmetric frame
    assert img[H // 2, W // 2] == 1 and img[0, 0] < 0.05 and img[H // 2, 0] < 0.05
    # Sampled where the vertices sample the volume, it agrees with the weights on the mesh.
    pc = g.pixel_coords(W, H)
    inside = (pc[:, 0] >= 0) & (pc[:, 0] <= W - 1) & (pc[:, 1] >= 0) & (pc[:, 1] <= H - 1)
    sampled = core.grid.sample_bilinear(img[None, None], pc[inside, 0], pc[inside, 1])[0, 0]
    err = np.abs(sampled - core.grid.pin_weights(g, 0.3)[inside])
    assert err.mean() < 0.01 and err.max() < 0.1  # bilinear error only, largest at the corners' kink
    assert np.all(core.grid.pin_weight_image(g, W, H, 0.0) == 1)


# -- modal coordinates ------------------------------------------------------------------------------

def _fd_check(coords, fn, step=1e-4):
    """The analytic derivatives of ``Coords`` against central differences of ``fn(frames)``."""
    c0 = coords
    up, dn = fn(c0.frames + step), fn(c0.frames - step)
    np.testing.assert_allclose(c0.dq, (up.q - dn.q) / (2 * step), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(c0.drate, (up.rate - dn.rate) / (2 * step), rtol=1e-4, atol=1e-6)


def test_canonical_loop_coords_are_the_spectral_time_basis(core):
    C = core.coords
    tm = C.TimeMap(start_frame=1, scene_fps=30.0)
    frames = np.arange(1, 40, dtype=float)
    c = C.loop_coords(16, frames, tm, 150, zero_at_start=False)
    np.testing.assert_allclose(c.q, spectral.time_basis(frames - 1, 16), atol=1e-12)
    assert c.cyclic
    np.testing.assert_allclose(c.rate, c.dq * 30.0)
    _fd_check(c, lambda f: C.loop_coords(16, f, tm, 150, zero_at_start=False))


def test_snapped_loop_coords_match_loops_and_close(core):
    C = core.coords
    S = _volume(K=8)
    tm = C.TimeMap(start_frame=0, scene_fps=24.0, speed=1.5)
    L = 40  # scene frames
    frames = np.arange(0, L + 1, dtype=float)
    c = C.loop_coords(8, frames, tm, L)
    np.testing.assert_allclose(c.q[0], 0, atol=1e-12)  # starts at rest
    np.testing.assert_allclose(c.q[-1], c.q[0], atol=1e-9)  # closes after L scene frames
    np.testing.assert_allclose(c.dq[-1], c.dq[0], atol=1e-9)
    ref = loops.snap_to_loop(S, L * tm.tau_per_frame)
    np.testing.assert_allclose(c.q, ref.coordinates(tm.tau(frames)), atol=1e-9)
    _fd_check(c, lambda f: C.loop_coords(8, f, tm, L))


def test_poke_coords_follow_modal_free_response(core):
    C = core.coords
    S = _volume()
    freqs = np.arange(6) * 30.0 / 150
    tm = C.TimeMap(start_frame=1, scene_fps=30.0)
    frames = np.arange(1, 50, dtype=float)
    c = C.poke_coords(S, freqs, frames, tm, 10, (4.0, 5.5), (0.6, -0.8), 3.0)
    assert np.all(c.q[frames < 10] == 0)
    np.testing.assert_allclose(c.q[frames == 10][0], modal.poke_coordinates(S, (4.0, 5.5), (0.6, -0.8), 3.0))
    after = frames >= 10
    ref = modal.poke_response(S, (4.0, 5.5), (0.6, -0.8), 3.0, (frames[after] - 10) / 30.0, freqs_hz=freqs)
    np.testing.assert_allclose(c.q[after], ref, atol=1e-12)
    sub = frames > 10.5
    f2 = frames[sub]
    _fd_check(C.Coords(f2, c.q[sub], c.dq[sub], c.rate[sub], c.drate[sub]),
              lambda f: C.poke_coords(S, freqs, f, tm, 10, (4.0, 5.5), (0.6, -0.8), 3.0))


def test_wind_coords_integrate_the_projected_forces(core):
    C = core.coords
    S = _volume()
    freqs = np.arange(6) * 30.0 / 150
    tm = C.TimeMap(start_frame=1, scene_fps=30.0)
    frames = np.arange(1, 61, dtype=float)
    dirs = np.tile([1.0, 0.2], (60, 1))
    strength = np.linspace(0, 50, 60)
    c = C.wind_coords(S, freqs, frames, tm, dirs, strength)
    forces = modal.modal_forces_from_wind(S, dirs, strength)
    q, v = modal.force_response(freqs, forces, 1 / 30.0, return_velocity=True)
    np.testing.assert_allclose(c.q, q)
    np.testing.assert_allclose(c.rate, v)
    double = C.wind_coords(S, freqs, frames, tm, dirs, 2 * strength)
    np.testing.assert_allclose(double.q, 2 * c.q, atol=1e-12)  # linear in the wind
    with pytest.raises(ValueError):
        C.wind_coords(S, freqs, frames[::2], tm, dirs[::2], strength[::2])


def test_speed_rescales_time(core):
    C = core.coords
    slow = C.TimeMap(start_frame=1, scene_fps=30.0, speed=0.5)
    fast = C.TimeMap(start_frame=1, scene_fps=30.0, speed=2.0)
    a = C.loop_coords(4, np.array([21.0]), slow, None, zero_at_start=False)
    b = C.loop_coords(4, np.array([6.0]), fast, None, zero_at_start=False)
    np.testing.assert_allclose(a.q, b.q, atol=1e-12)  # both at motion frame 10
    np.testing.assert_allclose(b.rate, 4 * a.rate, atol=1e-12)
    with pytest.raises(ValueError):
        C.TimeMap(0, 30.0, speed=0.0)


def test_a_loop_shorter_than_two_motion_frames_is_refused_with_the_fix(core):
    C = core.coords
    tm = C.TimeMap(start_frame=1, scene_fps=24.0, speed=0.01)  # 150 scene frames = 1.875 motion frames
    assert C.loop_motion_frames(160, tm) == pytest.approx(2.0)
    with pytest.raises(ValueError, match=r"Loop Length at this Speed is shorter than 2 frames of the motion "
                                         r"\(150 frames at Speed 0.01 and 24 fps are 1.8\d motion frames\): "
                                         "raise Loop Length or Speed"):
        C.loop_coords(4, np.arange(1.0, 10.0), tm, 150)
    assert C.loop_coords(4, np.arange(1.0, 10.0), tm, None).q.shape == (9, 4)  # no loop: no limit


def test_sum_coords_and_wind_noise(core):
    C = core.coords
    tm = C.TimeMap(0, 30.0)
    f = np.arange(5, dtype=float)
    a = C.loop_coords(3, f, tm, None)
    s = C.sum_coords([a, a])
    np.testing.assert_allclose(s.q, 2 * a.q)
    assert not s.cyclic
    with pytest.raises(ValueError):
        C.sum_coords([a, C.zero_coords(f + 1, 3)])
    n = C.wind_noise(300, 0.5, seed=3)
    assert np.all(n >= 0.5 - 1e-9) and np.all(n <= 1.5 + 1e-9) and n.std() > 0.01
    np.testing.assert_array_equal(n, C.wind_noise(300, 0.5, seed=3))
    assert np.all(C.wind_noise(10, 0.0) == 1)


# -- errors ------------------------------------------------------------------------------------------

def test_every_protocol_error_code_has_a_sentence(core):
    E = core.errors
    generic = E.describe_failure("definitely_unknown_code", "x")
    assert "definitely_unknown_code" in generic
    for code in ErrorCode:
        text = E.describe_failure(code.value, "detail", address="tcp://127.0.0.1:9")
        assert text and "reported a problem" not in text, code
        assert text[0].isupper() and text.rstrip().endswith((".", ")")), text
    assert "protocol versions" in E.describe_failure("unsupported_version")
    assert "out of memory" in E.describe_failure("out_of_memory")
    assert "tcp://127.0.0.1:9" in E.describe_failure("connection_refused", address="tcp://127.0.0.1:9")
    assert "pyzmq" in E.describe_failure("missing_zmq")


def test_probe_tcp(core):
    E = core.errors
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert E.probe_tcp(f"tcp://127.0.0.1:{port}") == "connection_refused"  # bound, not listening
        s.listen()
        assert E.probe_tcp(f"tcp://127.0.0.1:{port}") is None
    assert E.probe_tcp("ipc:///tmp/x") is None
    assert E.parse_tcp_address("tcp://localhost:5555") == ("localhost", 5555)
    assert E.parse_tcp_address("tcp://nohost") is None


# -- pixels, files -----------------------------------------------------------------------------------

def test_blender_pixels_flip_to_top_first_rgb8(core):
    I = core.imaging
    h, w = 3, 4
    buf = np.zeros((h, w, 4), np.float32)
    buf[0, :, 0] = 1.0  # Blender's first row = the photo's bottom row: red
    out = I.blender_to_rgb8(buf.reshape(-1), w, h, 4)
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    assert np.all(out[-1, :, 0] == 255) and np.all(out[0] == 0)
    back = I.rgb8_to_blender(out).reshape(h, w, 4)
    np.testing.assert_allclose(back[..., :3], buf[..., :3], atol=1 / 255)
    lin = I.blender_to_rgb8(np.full(4 * 4, 0.5, np.float32), 2, 2, 4, is_float=True)
    assert lin[0, 0, 0] == 188  # linear 0.5 -> sRGB 0.735


def test_output_size_and_resizing(core):
    I = core.imaging
    w, h = I.output_size(640, 427, (256, 160))
    assert w % 8 == 0 and h % 8 == 0 and abs(w / h - 640 / 427) < 0.05 and abs(w * h - 256 * 160) < 256 * 160 * 0.1
    assert I.output_size(10, 1000, (48, 32)) [0] == 8
    img = (np.arange(40 * 60 * 3) % 251).astype(np.uint8).reshape(40, 60, 3)
    assert I.downscale_rgb8(img, 30).shape == (20, 30, 3)
    assert I.downscale_rgb8(img, 100) is img
    np.testing.assert_array_equal(I.resize_rgb8(img, 60, 40), img)
    assert I.resize_rgb8(img, 7, 5).shape == (5, 7, 3)


def test_pc2_round_trip(core, tmp_path):
    pos = np.random.default_rng(0).normal(size=(5, 7, 3)).astype(np.float32)
    core.pc2.write_pc2(tmp_path / "a.pc2", pos, 3.0)
    raw = (tmp_path / "a.pc2").read_bytes()
    assert raw[:12] == b"POINTCACHE2\0" and len(raw) == 32 + pos.nbytes
    back, start, rate = core.pc2.read_pc2(tmp_path / "a.pc2")
    np.testing.assert_array_equal(back, pos)
    assert (start, rate) == (3.0, 1.0)
    # a failed write keeps the earlier file whole and leaves no temp file
    (tmp_path / "a.pc2.partial").mkdir()  # the temp name cannot be opened as a file
    with pytest.raises(OSError):
        core.pc2.write_pc2(tmp_path / "a.pc2", pos * 2, 3.0)
    assert (tmp_path / "a.pc2").read_bytes() == raw
    (tmp_path / "a.pc2.partial").rmdir()
    (tmp_path / "b.pc2").mkdir()  # the final name is a folder: the rename fails after the temp file is written
    with pytest.raises(OSError):
        core.pc2.write_pc2(tmp_path / "b.pc2", pos, 3.0)
    assert not (tmp_path / "b.pc2.partial").exists()


def test_volume_pack_unpack_and_files_share_the_backend_format(core, tmp_path):
    V = core.volume_io
    S = _volume()
    vol = V.SpectralVolume(S=S, source="synth", meta={"seed": 3})
    packed = V.pack(vol)
    assert packed["S"].dtype == np.float32 and packed["S_shape"] == [6, 2, 10, 16]
    back = V.unpack({**packed, "S": memoryview(packed["S"])})
    np.testing.assert_array_equal(back.S, S)
    assert back.meta == {"seed": 3} and back.source == "synth"
    V.save(tmp_path / "a.npz", vol)
    np.testing.assert_array_equal(volume_file.load_volume(tmp_path / "a.npz").S, S)  # the backend reads it
    volume_file.save_volume(tmp_path / "b.npz", volume_file.SpectralVolume(S=S))
    np.testing.assert_array_equal(V.load(tmp_path / "b.npz").S, S)
    with pytest.raises(V.VolumeFileError):
        V.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("fps, num_frames, K, match", [
    (0.0, 150, 6, "frame rate of 0 fps; it must be positive"),
    (-30.0, 150, 6, "frame rate of -30 fps"),
    (float("nan"), 150, 6, "frame rate of nan fps"),
    (30.0, 10, 6, "6 frequency bins, but a motion of 10 frames has at most 5"),
    (30.0, 1, 1, "spans 1 frames; it needs at least 2"),
])
def test_volumes_no_motion_can_be_made_of_are_refused(core, tmp_path, fps, num_frames, K, match):
    """A volume no motion can be made of is refused when it is made, and when a file holds one."""
    V = core.volume_io
    with pytest.raises(V.VolumeFileError, match=match):
        V.SpectralVolume(S=_volume(K=K), fps=fps, num_frames=num_frames)
    path = tmp_path / "bad.npz"  # written by something else than save_volume
    np.savez(path, S=_volume(K=K), fps=np.float64(fps), num_frames=np.int64(num_frames))
    with pytest.raises(V.VolumeFileError, match=match):
        V.load(path)
    ok = V.SpectralVolume(S=_volume(K=5), fps=30.0, num_frames=10)  # K = T / 2 is allowed
    V.check(ok)
    ok.fps = 0.0  # changed after it was made: check() still catches it
    with pytest.raises(V.VolumeFileError, match="frame rate of 0 fps"):
        V.check(ok)


# -- local backend process ------------------------------------------------------------------------------

def _fake_serve(tmp_path, body: str) -> str:
    script = tmp_path / "image-dynamics"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    script.chmod(0o755)
    return str(script)


def test_local_backend_reads_the_ready_line_and_stops(core, tmp_path):
    exe = _fake_serve(tmp_path, """
        import sys, time
        print("loading", flush=True)
        print("image-dynamics backend ready on tcp://127.0.0.1:45678 " if "--tiny-model" in sys.argv else "no", flush=True)
        time.sleep(60)
    """)
    lb = core.backend_process.LocalBackend()
    lb.start(exe, tiny_seed=3, device="cpu")
    assert lb.wait_ready(20) == "tcp://127.0.0.1:45678"
    assert lb.command[1:] == ["serve", "--bind", "tcp://127.0.0.1:0", "--device", "cpu", "--tiny-model", "3"]
    assert lb.ready
    lb.stop()
    assert not lb.running and lb.address is None


def test_local_backend_failures_carry_a_code(core, tmp_path):
    BP = core.backend_process
    lb = BP.LocalBackend()
    with pytest.raises(BP.BackendStartError) as info:
        lb.start(str(tmp_path / "nope"), tiny_seed=0)
    assert info.value.code == "backend_start_failed" and "preferences" in info.value.message
    exe = _fake_serve(tmp_path, """
        import sys
        print("error: CUDA is not available", file=sys.stderr, flush=True)
        sys.exit(2)
    """)
    with pytest.raises(BP.BackendStartError) as info:
        lb.start(exe)  # no model chosen
    assert "model" in info.value.message
    lb.start(exe, model=str(tmp_path))
    with pytest.raises(BP.BackendStartError) as info:
        lb.wait_ready(20)
    assert info.value.code == "backend_exited" and "CUDA is not available" in info.value.message
    assert BP.find_executable(str(tmp_path)) == exe  # a folder holding the executable works too


def test_local_backend_keeps_why_it_failed_and_never_blocks_to_stop(core, tmp_path):
    """``last_error`` holds the stderr tail until the next start; ``poll_ready`` reports an exit
    once; ``wait_ready`` gives up without killing a slow starter; ``stop_soon`` returns at once
    and ``reap`` finishes (killing one that ignores SIGTERM after the grace time)."""
    import time

    BP = core.backend_process
    lb = BP.LocalBackend()
    with pytest.raises(BP.BackendStartError):
        lb.start(str(tmp_path / "nope"), tiny_seed=0)
    assert lb.last_error is not None and "no image-dynamics executable" in lb.last_error.message
    failing = _fake_serve(tmp_path, """
        import sys
        print("loading the model", flush=True)
        for i in range(6):
            print(f"stderr line {i}", file=sys.stderr, flush=True)
        print("error: the model folder has no config.json", file=sys.stderr, flush=True)
        sys.exit(2)
    """)
    lb.start(failing, model=str(tmp_path))
    assert lb.last_error is None  # a new start forgets the old failure
    end = time.monotonic() + 20
    while True:
        try:
            assert lb.poll_ready() is None
        except BP.BackendStartError as exc:
            err = exc
            break
        assert time.monotonic() < end
        time.sleep(0.02)
    assert lb.last_error is err and err.code == "backend_exited" and "exit status 2" in err.message
    assert "no config.json" in err.message and "stderr line 5" in err.message
    assert "loading the model" not in err.message  # the stderr tail, not stdout
    assert lb.poll_ready() is None and not lb.running  # reported once, then nothing to follow

    slow = tmp_path / "slow"
    slow.mkdir()
    stubborn = _fake_serve(slow, """
        import signal, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("loading for a long time", flush=True)
        time.sleep(60)
    """)
    lb.start(stubborn, tiny_seed=0)
    with pytest.raises(BP.BackendStartError, match="still starting"):
        lb.wait_ready(0.3)
    assert lb.running  # a slow start is not killed
    proc = lb.proc
    t0 = time.monotonic()
    lb.stop_soon(grace=0.5)
    assert time.monotonic() - t0 < 0.1 and not lb.running and lb.stopping
    end = time.monotonic() + 10
    while lb.reap():
        assert time.monotonic() < end
        time.sleep(0.05)
    assert proc.poll() is not None and not lb.stopping  # killed after the grace time


def _jobs_module(core):
    return importlib.import_module(f"{PKG}.core.jobs")


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:5555", "tcp://localhost:1", "tcp://[::1]:65535",
                                     "tcp://backend.example.org:5555", " tcp://127.0.0.1:5555 ", "ipc:///tmp/id.sock"])
def test_valid_backend_addresses(core, address):
    assert _jobs_module(core).check_address(address) is None


@pytest.mark.parametrize("address, expect", [
    ("localhost:5555", "needs the tcp:// prefix: write tcp://localhost:5555"),
    ("127.0.0.1:5555", "needs the tcp:// prefix: write tcp://127.0.0.1:5555"),
    ("tcp://127.0.0.1", "has no port"),
    ("tcp://127.0.0.1:0x10", "no valid port"),
    ("tcp://127.0.0.1:70000", "no valid port"),
    ("tcp://:5555", "is not valid"),
    ("tcp://*:5555", "is not valid"),
    ("tcp://127.0.0.1:5555/x", "is not valid"),
    ("udp://127.0.0.1:5555", "cannot use"),
    ("ipc://", "has no path"),
    ("backend", "is not valid"),
    ("", "No backend address is set"),
])
def test_malformed_backend_addresses_say_how_to_write_them(core, address, expect):
    text = _jobs_module(core).check_address(address)
    assert text is not None and expect in text and "add-on preferences" in text, text


def test_render_size_fits_the_backends_limits(core):
    J = _jobs_module(core)
    big, frames_cap = 64 * 1024 * 1024, 3000
    # the review's case: a 1024 x 683 photo, 250 frames: 175 M pixels over 67 M
    w, h = J.fit_render_size(1024, 683, 250, big, frames_cap, modes=16)
    assert 250 * w * h <= big and abs(w / h - 1024 / 683) < 0.01 and w > 600
    assert J.fit_render_size(320, 200, 60, big, frames_cap, modes=16) == (320, 200)  # fits: unchanged
    assert J.fit_render_size(320, 200, 60, None, None) == (320, 200)  # no limits reported: unchecked
    # K x pixels counts too (the volume at the photo's size), for a clip of few frames
    w, h = J.fit_render_size(4096, 4096, 2, big, frames_cap, modes=64)
    assert 64 * w * h <= big and w == h
    with pytest.raises(J.RenderTooLarge, match="renders at most 3000 at once: shorten the frame range"):
        J.fit_render_size(1024, 683, 3001, big, frames_cap)
    with pytest.raises(J.RenderTooLarge, match="shorten the frame range, or start the backend with a larger"):
        J.fit_render_size(1024, 683, 2900, 1_000_000, frames_cap)  # 344 pixels a frame: 22 x 15
    assert J.fit_render_size(200, 100, 10, 10 * 128 * 64, frames_cap) == (128, 64)  # down to 64 px, not below
    with pytest.raises(J.RenderTooLarge):  # a photo under 64 px may not shrink at all
        J.fit_render_size(40, 30, 100, 100 * 20 * 15, frames_cap)


def test_cancel_and_edit_mode_sentences(core):
    J = _jobs_module(core)
    user = "Prediction cancelled; the scene was not changed."
    assert J.cancel_text("client", "prediction", user) == user
    assert J.cancel_text(None, "prediction", user) == user
    shut = J.cancel_text("shutdown", "prediction", user)
    assert shut.startswith("The backend stopped (shut down) before the prediction finished") and "predict again" in shut
    assert "heartbeat timeout" in J.cancel_text("heartbeat_timeout", "frame render", user)
    assert "render the frames again" in J.cancel_text("heartbeat_timeout", "frame render", user)
    assert "(something_new)" in J.cancel_text("something_new", "prediction", user)
    for reason in ("shutdown", "heartbeat_timeout", "client_gone", "x"):
        assert J.cancel_text(reason, "prediction", user).endswith("The scene was not changed.")
    assert J.edit_mode_text("Plane", "EDIT") == "Leave Edit Mode on Plane to apply the predicted motion."
    assert J.edit_mode_text("Plane", "VERTEX_PAINT").startswith("Leave Vertex Paint Mode on Plane")
    assert "import bpy" not in Path(J.__file__).read_text()


# -- the frame writer (Render Frames on Backend writes its PNGs on a thread) ----------------------------

def _frames(n=5, h=6, w=8):
    return (np.random.default_rng(1).uniform(size=(n, h, w, 3)) * 255).astype(np.uint8)


def test_frame_writer_writes_numbered_pngs_off_the_calling_thread(core, tmp_path):
    import threading

    frames = _frames()
    threads = set()

    def write(path, rgb):
        threads.add(threading.get_ident())
        core.png.write_png(path, rgb)

    w = core.frame_writer.FrameWriter(frames, str(tmp_path), "frame_{:04d}.png", write=write).start()
    assert w.join(10) and w.done and w.error is None
    assert threads and threading.get_ident() not in threads
    assert w.progress == 1.0 and w.written == 5
    assert [Path(p).name for p in w.paths] == [f"frame_{i:04d}.png" for i in range(1, 6)]
    for p, frame in zip(w.paths, frames):
        assert Path(p).read_bytes() == core.png.encode_png(frame)


def _blocking_writer(core, folder, frames, fail_at=None):
    """A writer whose second file waits for ``go``; with ``fail_at`` that file fails (disk full)."""
    import errno
    import threading

    go = threading.Event()

    def write(path, rgb):
        n = int(Path(path).stem.split("_")[1])
        if n == 2:
            assert go.wait(10)
        if n == fail_at:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        core.png.write_png(path, rgb)

    return core.frame_writer.FrameWriter(frames, str(folder), "frame_{:04d}.png", write=write).start(), go


def test_frame_writer_stops_between_files_and_removes_its_folder(core, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    w, go = _blocking_writer(core, folder, _frames(8))
    while w.written < 1:
        pass
    assert not w.done and 0 < w.progress < 1
    assert w.stop(wait=0.05) is False  # the file in progress is finished first
    go.set()
    assert w.join(10) and w.done and w.error is None
    assert w.written == 2 < 8  # it stopped after the file it was writing
    assert not folder.exists()


def test_frame_writer_failure_is_reported_and_the_partial_folder_removed(core, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    w, go = _blocking_writer(core, folder, _frames(4), fail_at=3)
    go.set()
    assert w.join(10) and w.done
    assert isinstance(w.error, OSError) and w.error.strerror == "No space left on device"
    assert w.written == 2 and not folder.exists()


def test_frame_writer_stopped_after_it_ended_still_removes_the_folder(core, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    w = core.frame_writer.FrameWriter(_frames(2), str(folder), "f_{:02d}.png").start()
    assert w.join(10) and folder.exists() and len(list(folder.iterdir())) == 2
    assert w.stop(wait=1.0) and not folder.exists()
    # never started (the job was dropped at once): stop cleans up too, without waiting
    folder.mkdir()
    assert core.frame_writer.FrameWriter(_frames(2), str(folder), "f_{:02d}.png").stop(wait=1.0)
    assert not folder.exists()
