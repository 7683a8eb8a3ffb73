"""The ``render`` op through a real ``image-dynamics serve`` process (tiny untrained motion model;
the mesh and backward renderers, which need no trained weights)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from test_service import ServerProcess, wait_idle

from image_dynamics.motion.playback import ClipTiming, clip_coordinates, displacements
from image_dynamics.motion.resample import resample_volume
from image_dynamics.protocol import BackendClient, BackendError
from image_dynamics.protocol.messages import check_error_header


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("serve-render"), "--tiny-model", "0", "--bind", "tcp://127.0.0.1:0")
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def photo(h: int = 30, w: int = 40) -> np.ndarray:
    """A smooth picture with texture everywhere, so any motion changes pixels."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(128 + 100 * np.sin(x / 2.0)), (128 + 100 * np.cos(y / 1.7)), (x * 6) % 256], -1).astype(np.uint8)


def volume(h: int = 15, w: int = 20) -> np.ndarray:
    """Half the photo's resolution (the backend resamples it); the left half moves, the right does not."""
    S = np.zeros((16, 2, h, w), np.complex64)
    S[2, 0, :, : w // 2] = 0.5 * np.exp(0.3j)
    S[4, 1, :, : w // 2] = 0.25
    return S


def expected_frames(image, S, kind="mesh", coords=None, magnify=1.0, **timing):
    from image_dynamics.render import make_renderer

    H, W = image.shape[:2]
    S = resample_volume(S, W, H)
    if coords is None:
        coords = clip_coordinates(S.shape[0], ClipTiming(**timing))
    return make_renderer(kind).render(image, displacements(S, coords, magnify))


def test_hello_lists_the_renderers_and_render_limits(server):
    with BackendClient(server.address) as client:
        info = client.hello()
    assert info["rendering"]["renderers"][-2:] == ["mesh", "backward"]
    assert info["rendering"]["default_renderer"] in info["rendering"]["renderers"]
    assert info["limits"]["max_render_frames"] >= 300 and info["limits"]["max_render_pixels"] > 0


def test_render_round_trip_equals_the_renderer_in_process(server):
    image, S = photo(), volume()
    seen = []
    with BackendClient(server.address) as client:
        result = client.render_frames(image, S, frames=24, fps=24.0, loop=True, speed=1.5, magnify=2.0,
                                      renderer="mesh", progress=lambda step, total, preview: seen.append((step, total)))
    assert result.frames.shape == (24, 30, 40, 3) and result.frames.dtype == np.uint8
    assert result.renderer == "mesh" and result.fps == 24.0
    assert result.meta["loop"] is True and result.meta["timing"] == "loop" and result.meta["size"] == [40, 30]
    assert seen and seen[0] == (0, 24) and all(t == 24 for _, t in seen)
    want = expected_frames(image, S, "mesh", clip_coordinates(16, ClipTiming(frames=24, fps=24.0, speed=1.5, loop=True)),
                           magnify=2.0)
    assert np.abs(result.frames.astype(int) - want.astype(int)).max() <= 1
    # a loop starts at rest; the left half moves, the right half never does
    assert np.array_equal(result.frames[0], image)
    assert np.abs(result.frames[:, :, :16].astype(int) - image[:, :16]).max() > 20
    assert all(np.array_equal(f[:, 30:], image[:, 30:]) for f in result.frames)


def test_render_with_explicit_coordinates_and_a_predicted_volume(server):
    image = photo()
    q = np.zeros((6, 16), np.complex64)
    q[:, 2] = np.exp(1j * np.linspace(0, 2, 6))
    with BackendClient(server.address) as client:
        r = client.render_frames(image, volume(), coords=q, magnify=1.5, renderer="backward")
        predicted = client.predict(image, seed=1, steps=2, size=(40, 30))
        job = client.submit_render(image, predicted.S, frames=10, fps=30.0, renderer="backward")
        while not job.poll().done:
            time.sleep(0.01)
    assert r.meta["timing"] == "coords" and r.frames.shape == (6, 30, 40, 3)
    want = expected_frames(image, volume(), "backward", q.astype(np.complex128), magnify=1.5)
    assert np.abs(r.frames.astype(int) - want.astype(int)).max() <= 1
    assert job.state == "done" and job.kind == "render" and job.result.frames.shape == (10, 30, 40, 3)
    want = expected_frames(image, predicted.S, "backward", frames=10, fps=30.0)
    assert np.abs(job.result.frames.astype(int) - want.astype(int)).max() <= 1


def _raw_error(client: BackendClient, rid: str, options: dict, arrays: dict) -> dict:
    """Send a render request the client library would not build; return the error it gets."""
    client._send({"op": "render", "id": rid, "options": options}, arrays)
    end = time.monotonic() + 10
    while client.last_unrouted_error is None and time.monotonic() < end:
        client.poll(0.05)
    err = client.last_unrouted_error
    assert err is not None, "no answer"
    check_error_header(err)
    assert err["id"] == rid and err["retryable"] is False
    return err


def test_malformed_render_requests_get_structured_errors(server):
    image, S = photo(), volume()
    with BackendClient(server.address) as client:
        client.hello()
        err = _raw_error(client, "r-1", {"frames": 3}, {"image": image})
        assert err["code"] == "bad_array" and "'image' and 'S'" in err["message"] and "complex64" in err["hint"]
        client.last_unrouted_error = None
        err = _raw_error(client, "r-2", {"frames": 3}, {"image": image, "S": S.real.astype(np.float32)})
        assert err["code"] == "bad_array" and "complex64" in err["message"]
        client.last_unrouted_error = None
        err = _raw_error(client, "r-3", {"frames": 3, "sped": 2}, {"image": image, "S": S})
        assert err["code"] == "bad_option" and "unknown render option" in err["message"]


@pytest.mark.parametrize("case, code, words", [
    ("nan_volume", "bad_array", "NaN"),
    ("zero_frames", "bad_option", "'frames'"),
    ("no_frames", "bad_option", "'frames'"),
    ("no_splat", "bad_option", "'renderer'"),
    ("coords_mismatch", "bad_array", "columns"),
    ("loop_with_coords", "bad_option", "'loop'"),
    ("too_many_pixels", "too_large", "over the limit"),
    # a tiny S with a big photo: S resampled to 4096 x 4096 would be 4 GiB (and 20+ GiB of temporaries)
    ("volume_at_photo_size", "too_large", "at the photo's size"),
    ("too_many_freqs", "bad_array", "frequencies"),
])
def test_bad_render_requests_get_structured_errors(server, case, code, words, monkeypatch, tmp_path):
    image, S = photo(), volume()
    q = np.zeros((4, 16), np.complex64)
    args: dict = {
        "nan_volume": {"frames": 5},
        "zero_frames": {"frames": 0},
        "no_frames": {},
        "no_splat": {"frames": 5, "renderer": "splat"},
        "coords_mismatch": {"coords": q[:, :8]},
        "loop_with_coords": {"coords": q, "loop": True},
        "too_many_pixels": {"frames": 3000},
        "volume_at_photo_size": {"frames": 1},
        "too_many_freqs": {"frames": 1, "volume_num_frames": 100_000},
    }[case]
    if case == "nan_volume":
        S[0, 0, 0, 0] = np.nan
    if case == "too_many_pixels":
        image = np.zeros((400, 400, 3), np.uint8)  # 3000 x 400 x 400 is over 64 Mi frame pixels
    if case == "volume_at_photo_size":
        image = np.zeros((4096, 4096, 3), np.uint8)  # within max_image_pixels; 1 frame is within max_render_pixels
        S = np.zeros((16, 2, 8, 8), np.complex64)
    if case == "too_many_freqs":  # K <= volume_num_frames // 2 = 50,000, but over the fixed cap
        S = np.zeros((65, 2, 8, 8), np.complex64)
    srv = server
    if case == "no_splat":  # a backend whose renderer folder holds no trained weights
        monkeypatch.setenv("IMAGE_DYNAMICS_RENDERER", str(tmp_path / "no-renderer"))
        srv = ServerProcess(tmp_path, "--tiny-model", "0", "--bind", "tcp://127.0.0.1:0")
    try:
        with BackendClient(srv.address) as client:
            info = client.hello()
            assert ("splat" in info["rendering"]["renderers"]) is (case != "no_splat")
            with pytest.raises(BackendError) as exc:
                client.render_frames(image, S, timeout=30, **args)
            assert client.status()["jobs_in_flight"] == 0  # the job never existed
            if case == "volume_at_photo_size":  # the backend is alive and serves the next request
                assert client.render_frames(photo(), S, frames=2, renderer="mesh",
                                            timeout=30).frames.shape == (2, 30, 40, 3)
    finally:
        if srv is not server:
            assert srv.stop() == 0
    e = exc.value
    assert e.code == code and words in e.message, (e.code, e.message)
    assert e.hint and e.retryable is False


def test_cancel_stops_a_running_render_and_the_backend_goes_on(server):
    image, S = photo(), volume()
    with BackendClient(server.address) as client:
        client.hello()
        job = client.submit_render(image, S, frames=3000, renderer="mesh")
        end = time.monotonic() + 30
        while job.poll().step < 1:
            assert not job.done, (job.state, job.error)
            assert time.monotonic() < end, "render never started"
            time.sleep(0.005)
        job.cancel()
        with pytest.raises(BackendError) as exc:
            job.wait(30)
        assert exc.value.code == "cancelled" and job.cancel_reason == "client"
        assert job.step < 3000
        st = wait_idle(client)
        assert st["cancelled"] >= 1
        again = client.render_frames(image, S, frames=3, renderer="mesh", timeout=30)
    assert again.frames.shape == (3, 30, 40, 3)
