"""Size, queue and memory limits of the backend, and the ``serve`` flags that set them.

Real ZeroMQ sockets on 127.0.0.1 against a real ``Server`` in a thread (with small ``Limits`` so
the tests stay fast), serving a numpy engine defined here, never in the product; the flag tests
run the real ``image-dynamics serve`` command.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
import zmq

from image_dynamics.protocol import BackendClient, BackendError, decode, encode
from image_dynamics.protocol.codec import CodecLimits, decode_header
from image_dynamics.protocol.messages import check_error_header
from image_dynamics.service.engine import JobCancelled, MotionEngine
from image_dynamics.service.limits import Limits
from image_dynamics.service.security import parse_bind
from image_dynamics.service.server import Server

MIB = 2**20


class NumpyEngine(MotionEngine):
    """A volume of K = 2 filled with the seed, at the requested size; ``gate`` holds every job."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()

    def info(self):
        return {"name": "numpy-test", "untrained_test_model": True, "num_freqs": 2, "resolution": [8, 8],
                "fps": 30.0, "num_frames": 150, "default_steps": 2, "default_guidance": 1.0,
                "samplers": ["ddim"], "default_sampler": "ddim", "device": "cpu", "engine": "numpy-test",
                "max_batch": 1}

    def predict(self, image, options, progress, should_stop):
        self.gate.wait(20)
        for i in range(2):
            if should_stop():
                raise JobCancelled()
            progress(i + 1, 2, None)
        w, h = options.size or (8, 8)
        return np.full((2, 2, h, w), options.seed, np.complex64)


@contextmanager
def running_server(limits: Limits, engine: NumpyEngine | None = None):
    engine = engine or NumpyEngine()
    srv = Server(limits)
    address = srv.bind(parse_bind("tcp://127.0.0.1:0"))
    thread = threading.Thread(target=srv.serve, args=(engine,), kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        yield srv, address
    finally:
        engine.gate.set()
        srv.request_stop()
        thread.join(20)
    assert not thread.is_alive()


def dealer(address: str, **options) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    for name, value in options.items():
        sock.setsockopt(getattr(zmq, name), value)
    sock.connect(address)
    return sock


def recv_header(sock: zmq.Socket, timeout_ms: int = 10_000) -> dict:
    assert sock.poll(timeout_ms), "no answer"
    return decode(sock.recv_multipart(copy=False), CodecLimits(max_message_bytes=2**40)).header


def predict_frames(rid: str, image: np.ndarray, **options) -> list:
    return encode({"protocol": 1, "op": "predict", "id": rid, "options": options}, {"image": image})


# -- limits that fit each other ---------------------------------------------------------------------

def test_default_limits_let_the_largest_photo_and_render_through():
    limits = Limits()
    codec = limits.codec()
    photo = np.zeros((4096, 4096, 4), np.float32)  # max_image_pixels, the widest dtype: 256 MiB
    assert photo.shape[0] * photo.shape[1] == limits.max_image_pixels
    volume = np.zeros((16, 2, 1024, 1024), np.complex64)  # K = 16 at max_output_pixels: 256 MiB
    assert volume.shape[2] * volume.shape[3] == limits.max_output_pixels
    coords = np.zeros((limits.max_render_frames, 16), np.complex64)
    pad = "x" * (limits.max_header_bytes - 2000)  # a header near its own limit leaves room too
    for arrays in ({"image": photo}, {"image": photo, "S": volume, "coords": coords}):
        frames = encode({"protocol": 1, "op": "render", "id": "biggest", "pad": pad}, arrays)
        assert len(frames[0]) <= limits.max_header_bytes
        decode_header(frames, codec)  # no too_large (sizes only: the pages of np.zeros are never touched)
        assert max(memoryview(f).nbytes for f in frames) <= limits.max_frame_bytes
    assert limits.max_unread_bytes >= 2 * volume.nbytes  # two maximal predict results can wait
    assert CodecLimits().max_message_bytes == limits.max_message_bytes


@pytest.mark.parametrize("field, value", [
    ("default_heartbeat_timeout_s", float("nan")), ("default_heartbeat_timeout_s", float("inf")),
    ("default_heartbeat_timeout_s", 0.01), ("default_heartbeat_timeout_s", 7200), ("max_queue", 0),
    ("max_message_bytes", 1000), ("max_unread_bytes", 1000), ("max_steps", 2.5), ("max_batch", True),
    ("min_output_side", 9000),
])
def test_limits_refuse_values_out_of_range(field, value):
    with pytest.raises(ValueError, match=field if field != "min_output_side" else "max_output_side"):
        Limits(**{field: value})


# -- too large: an answer with the job id, or no send at all -------------------------------------------

SMALL = Limits(max_message_bytes=MIB, max_image_pixels=512 * 512, max_unread_bytes=64 * MIB)


def test_oversized_predict_gets_too_large_with_its_job_id():
    """The review's case in small: a photo of exactly max_image_pixels whose data is exactly
    max_message_bytes, so the header puts the message over. No hello: the client cannot check."""
    with running_server(SMALL) as (srv, address):
        image = np.zeros((512, 512, 4), np.uint8)
        assert image.nbytes == SMALL.max_message_bytes
        with BackendClient(address, timeout=10) as client:
            job = client.submit(image, job_id="too-big-1")
            with pytest.raises(BackendError) as info:
                job.wait(timeout=10)  # the error carries the id, so the job hears about it
            assert info.value.code == "too_large" and info.value.job_id == "too-big-1"
            assert "limit" in info.value.message and info.value.hint
            assert client.last_unrouted_error is None
            assert client.predict(image[:64, :64], seed=3, size=(16, 16)).S.shape == (2, 2, 16, 16)
        sock = dealer(address)  # the same on the raw wire
        try:
            sock.send_multipart(predict_frames("raw-big", image))
            header = recv_header(sock)
            check_error_header(header)
            assert (header["code"], header["id"]) == ("too_large", "raw-big")
        finally:
            sock.close()


def test_client_refuses_an_oversized_request_before_sending_it():
    with running_server(SMALL) as (srv, address):
        with BackendClient(address, timeout=10) as client:
            assert client.hello()["limits"]["max_message_bytes"] == MIB
            received = srv.stats["received"]
            with pytest.raises(BackendError) as info:
                client.submit(np.zeros((512, 512, 4), np.uint8), job_id="local-1")
            assert info.value.code == "too_large" and info.value.job_id == "local-1"
            assert "not sent" in info.value.message and "--max-message-mb" in info.value.hint
            with pytest.raises(BackendError) as info:  # a render whose volume alone is over the limit
                client.submit_render(np.zeros((64, 64, 3), np.uint8), np.zeros((16, 2, 64, 64), np.complex64),
                                     frames=2)
            assert info.value.code == "too_large"
            assert client.jobs_in_flight == []
            assert client.status()["your_jobs"] == []
            assert srv.stats["received"] == received + 1  # only the status request went out
            assert client.predict(np.zeros((64, 64, 3), np.uint8), size=(16, 16)).S.shape == (2, 2, 16, 16)


def test_frame_over_the_limit_fails_the_jobs_and_the_client_goes_on():
    """A frame over ZMQ_MAXMSGSIZE makes libzmq drop the connection without an answer. The client
    reconnects by itself; the backend is the same but forgot the old connection: its jobs fail
    (retryable) instead of staying queued or running forever."""
    engine = NumpyEngine()
    engine.gate.clear()
    with running_server(SMALL, engine) as (srv, address):
        with BackendClient(address, timeout=10) as client:  # no hello: nothing is checked locally
            running = client.submit(np.zeros((32, 32, 3), np.uint8))
            while running.poll().state != "running":  # accepted, and held at the engine's gate
                time.sleep(0.01)
            big = client.submit(np.zeros((1024, 512, 4), np.uint8))  # one 2 MiB frame
            t0 = time.monotonic()
            for job, words in ((big, "before job"), (running, "while job")):
                with pytest.raises(BackendError) as info:
                    job.wait(timeout=20)
                assert info.value.code == "backend_unreachable" and info.value.retryable, info.value
                assert words in info.value.message and info.value.job_id == job.id
            assert time.monotonic() - t0 < 10
            assert client.reconnects == 0  # same backend, same socket
            engine.gate.set()  # the orphaned job runs on; its connection is gone, so nobody waits for it
            assert client.hello()["limits"]["max_message_bytes"] == MIB
            assert client.predict(np.zeros((32, 32, 3), np.uint8), size=(16, 16)).S.shape == (2, 2, 16, 16)
            end = time.monotonic() + 10
            while (st := client.status())["running"] or st["jobs_in_flight"]:
                assert time.monotonic() < end, st
                time.sleep(0.02)
            assert st["cancelled"] + st["completed"] == 2  # (cancelled if the server noticed in time)


# -- bye -----------------------------------------------------------------------------------------------

def test_bye_counts_queued_and_running_jobs():
    engine = NumpyEngine()
    engine.gate.clear()  # the first job runs (held at the gate), the other three wait
    with running_server(Limits(), engine) as (srv, address):
        sock = dealer(address)
        try:
            for i in range(4):
                sock.send_multipart(predict_frames(f"job-{i}", np.zeros((8, 8, 3), np.uint8)))
            seen = []
            while seen.count("accepted") < 4 or "progress" not in seen:  # job-0 started: step 0
                seen.append(recv_header(sock)["op"])
            sock.send_multipart(encode({"protocol": 1, "op": "bye", "id": "bye-1"}))
            while (header := recv_header(sock))["op"] != "bye":
                assert header["op"] == "progress", header  # no cancelled messages after bye
            assert header["cancelled"] == 4
        finally:
            sock.close()
        engine.gate.set()
        with BackendClient(address) as client:
            end = time.monotonic() + 10
            while (st := client.status())["running"] or st["queue_length"]:
                assert time.monotonic() < end, st
                time.sleep(0.02)
            assert st["cancelled"] == 4


# -- a client that never reads -------------------------------------------------------------------------

def test_client_that_never_reads_is_dropped_and_memory_stays_bounded():
    cap = 4 * MIB
    with running_server(Limits(max_unread_bytes=cap)) as (srv, address):
        sock = dealer(address, RCVHWM=1, RCVBUF=64 * 1024)  # reads nothing until told
        n_jobs, peak = 24, 0
        try:
            for i in range(n_jobs):  # each result is 2 MiB: 48 MiB in all, 12 times the cap
                sock.send_multipart(predict_frames(f"job-{i}", np.zeros((8, 8, 3), np.uint8), seed=i,
                                                   size=[256, 256]))
            end = time.monotonic() + 30
            while not srv.stats["clients_dropped_unread"]:
                assert time.monotonic() < end, "the unread replies were never dropped"
                peak = max(peak, sum(c.outbox_bytes for c in list(srv._clients.values())))
                time.sleep(0.002)
            assert peak <= cap
            with BackendClient(address) as other:  # everyone else is served meanwhile
                assert other.predict(np.zeros((8, 8, 3), np.uint8), seed=1).S.shape == (2, 2, 8, 8)
            # reading again, the client learns the fate of every job: a result, or a queue_full error
            ends: dict[str, list[str]] = {}
            while sum(map(len, ends.values())) < n_jobs:
                header = recv_header(sock)
                if header["op"] in ("result", "error", "cancelled"):
                    ends.setdefault(header["id"], []).append(header.get("code", header["op"]))
                if header["op"] == "error":
                    check_error_header(header)
                    assert header["code"] == "queue_full" and header["retryable"], header
                    assert "unread" in header["message"] and "poll()" in header["hint"]
            assert sorted(ends) == sorted(f"job-{i}" for i in range(n_jobs))
            assert all(len(v) == 1 for v in ends.values()), ends
            assert "queue_full" in sum(ends.values(), [])
            assert not sock.poll(300)  # nothing else: cancelled jobs send nothing more
            assert sum(c.outbox_bytes for c in list(srv._clients.values())) == 0
            sock.send_multipart(predict_frames("again", np.zeros((8, 8, 3), np.uint8), seed=7))  # and it goes on
            while (header := recv_header(sock))["op"] != "result":
                assert header["op"] in ("accepted", "progress"), header
            assert header["id"] == "again"
        finally:
            sock.close()


# -- serve flags ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag, value, words", [
    ("--heartbeat-timeout", "nan", "from 2 to 3600"),
    ("--heartbeat-timeout", "0.01", "from 2 to 3600"),
    ("--max-message-mb", "inf", "positive number of MiB"),
    ("--max-queue", "0", "positive integer"),
])
def test_serve_refuses_bad_limit_flags(run_cli, flag, value, words):
    result = run_cli("serve", "--tiny-model", "0", "--bind", "tcp://127.0.0.1:0", flag, value, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"error: {flag} must be" in result.stderr and words in result.stderr
    assert "Traceback" not in result.stderr and "ready" not in result.stdout
