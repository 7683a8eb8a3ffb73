"""``image-dynamics serve`` as users meet it: real server processes on 127.0.0.1, real clients.

The model is the tiny untrained one (``--tiny-model 0``), single-threaded, with few steps and small
outputs so the whole module stays fast on 2 cores.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zmq

from image_dynamics.protocol import BackendClient, BackendError, decode, encode
from image_dynamics.protocol.messages import check_error_header

REPO = Path(__file__).resolve().parents[2]
READY_RE = re.compile(r"image-dynamics backend ready on (tcp://\S+)")


def cli() -> list[str]:
    exe = Path(sys.executable).with_name("image-dynamics")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "image_dynamics.cli"]


class ServerProcess:
    def __init__(self, folder: Path, *args: str, name: str = "server") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = folder / f"{name}.out", folder / f"{name}.err"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(cli() + ["serve", "--threads", "1", *args], stdout=out, stderr=err, env=env)
        self.address = self._wait_ready()

    def _wait_ready(self, timeout: float = 90) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = READY_RE.search(self.out_path.read_text())
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.err_path.read_text()}")
            time.sleep(0.05)
        raise AssertionError("server never became ready")

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("serve"), "--tiny-model", "0", "--bind", "tcp://127.0.0.1:0")
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def reference():
    """The same tiny model in-process (same seed -> same weights), single-threaded like the server."""
    import torch

    from image_dynamics.model.pipeline import MotionPredictor

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield MotionPredictor.random_init("tiny", 0)
    torch.set_num_threads(threads)


def photo(seed: int, h: int = 24, w: int = 30) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def wait_running(job, min_step: int = 2, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while job.poll().step < min_step:
        assert not job.done, (job.state, job.error)
        assert time.monotonic() < end, "job never started"
        time.sleep(0.01)


def wait_idle(client: BackendClient, timeout: float = 10) -> dict:
    end = time.monotonic() + timeout
    while True:
        st = client.status()
        if st["running"] == 0 and st["queue_length"] == 0 and st["jobs_in_flight"] == 0:
            return st
        assert time.monotonic() < end, f"server still busy: {st}"
        time.sleep(0.05)


# -- hello and predict ------------------------------------------------------------------------------

def test_hello_reports_model_device_engine_limits(server):
    with BackendClient(server.address) as client:
        info = client.hello()
    assert info["op"] == "hello" and info["protocol"] == 1 and info["supported_versions"] == [1]
    assert info["model"]["untrained_test_model"] is True
    assert "UNTRAINED" in info["model"]["card"]["summary"]
    assert info["model"]["num_freqs"] == 16 and info["model"]["resolution"] == [48, 32]
    assert info["device"] == "cpu" and info["engine"] == "torch"
    assert info["limits"]["max_image_pixels"] > 0 and info["limits"]["max_queue"] > 0
    assert info["security"] == {"curve": False}
    assert len(info["instance"]) == 32


def test_predict_round_trip_equals_the_engine_in_process(server, reference, tmp_path):
    from image_dynamics.motion.volume_file import load_volume

    image = photo(1)
    seen = []
    with BackendClient(server.address) as client:
        client.hello()
        r1 = client.predict(image, seed=5, steps=3, size=(40, 24), preview=True,
                            progress=lambda step, total, preview: seen.append((step, total, preview)))
        r2 = client.predict(image, seed=5, steps=3, size=(40, 24))
        r3 = client.predict(image, seed=6, steps=3, size=(40, 24))
    expected = reference.predict(image, seed=5, steps=3, size=(40, 24))
    assert r1.S.shape == (16, 2, 24, 40) and r1.S.dtype == np.complex64
    np.testing.assert_allclose(r1.S, expected, rtol=1e-5, atol=1e-6 * float(np.abs(expected).max()))
    np.testing.assert_array_equal(r1.S, r2.S)  # same seed, same volume
    assert not np.allclose(r1.S, r3.S)  # another seed, another volume
    assert [s for s, _, _ in seen] == [0, 1, 2, 3] and all(t == 3 for _, t, _ in seen)
    assert all(p is not None and p.dtype == np.float32 and p.max() <= 1.0 for s, _, p in seen if s > 0)
    assert r1.meta["seed"] == 5 and r1.meta["steps"] == 3 and r1.meta["size"] == [40, 24]
    assert r1.meta["untrained_test_model"] is True and r1.fps == 30.0 and r1.num_frames == 150
    np.testing.assert_allclose(r1.freqs_hz, np.arange(16) * 0.2, atol=1e-6)
    r1.save(tmp_path / "v.npz", image=np.zeros((24, 40, 3), np.uint8))
    vol = load_volume(tmp_path / "v.npz")  # the canonical file reader accepts it
    np.testing.assert_array_equal(vol.S, r1.S)


def test_float_rgba_image_equals_uint8_rgb(server):
    image = photo(2)
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=2).astype(np.float32) / 255
    with BackendClient(server.address) as client:
        a = client.predict(image, seed=1, steps=2, size=(16, 16))
        b = client.predict(rgba, seed=1, steps=2, size=(16, 16))
    np.testing.assert_array_equal(a.S, b.S)


def test_loop_and_sampler_options_reach_the_model(server, reference):
    image = photo(3)
    with BackendClient(server.address) as client:
        looped = client.predict(image, seed=2, steps=2, loop_frames=90, size=(16, 16))
        dpm = client.predict(image, seed=2, steps=2, sampler="dpmpp_2m", guidance=0.5, size=(16, 16))
    for got, kwargs in ((looped, dict(loop_frames=90)), (dpm, dict(sampler="dpmpp_2m", guidance=0.5))):
        expected = reference.predict(image, seed=2, steps=2, size=(16, 16), **kwargs)
        np.testing.assert_allclose(got.S, expected, rtol=1e-4, atol=1e-5 * float(np.abs(expected).max()))
    assert looped.meta["loop_frames"] == 90 and dpm.meta["sampler"] == "dpmpp_2m" and dpm.meta["guidance"] == 0.5


def test_queue_limit_and_job_timeout(server):
    with BackendClient(server.address) as client:
        limit = client.hello()["limits"]["max_jobs_per_client"]
        jobs = [client.submit(photo(4), steps=1000) for _ in range(limit + 1)]
        with pytest.raises(BackendError) as info:
            jobs[-1].wait(timeout=10)
        assert info.value.code == "queue_full" and info.value.retryable
        assert all(not j.done for j in jobs[:-1])
    with BackendClient(server.address) as client:
        wait_idle(client)  # closing the first client (bye) cancelled its jobs
        job = client.submit(photo(4), steps=1000, timeout=0.5)
        with pytest.raises(BackendError) as info:
            job.wait(timeout=10)
        assert info.value.code == "timeout"
        wait_idle(client)  # the timed-out job was cancelled on the server too


def test_eight_clients_fifty_jobs_each_no_cross_talk(server, reference):
    from image_dynamics.motion.resample import resample_volume

    n_clients, n_jobs, in_flight, seeds = 8, 50, 4, (11, 22, 33, 44)
    images = [photo(100 + c, 20 + c, 28) for c in range(n_clients)]
    native = {(c, s): reference.predict(images[c], seed=s, steps=1) for c in range(n_clients) for s in seeds}

    def run(c: int) -> dict[int, object]:
        results: dict[int, object] = {}
        with BackendClient(server.address, timeout=60) as client:
            client.hello()
            pending, next_job = {}, 0
            while next_job < n_jobs or pending:
                while next_job < n_jobs and len(pending) < in_flight:
                    j = next_job
                    job = client.submit(images[c], seed=seeds[(c + j) % 4], steps=1, size=(16 + c, 16 + j))
                    pending[job] = j
                    next_job += 1
                client.poll(0.05)
                for job in [jb for jb in pending if jb.done]:
                    results[pending.pop(job)] = job
        return results

    with ThreadPoolExecutor(n_clients) as pool:
        all_results = list(pool.map(run, range(n_clients)))
    for c, results in enumerate(all_results):
        assert sorted(results) == list(range(n_jobs))
        for j, job in results.items():
            assert job.state == "done", (c, j, job.error)
            S, seed = job.result.S, seeds[(c + j) % 4]
            assert S.shape == (16, 2, 16 + j, 16 + c)  # the size identifies the request ...
            assert job.result.meta["seed"] == seed
            expected = resample_volume(native[(c, seed)], 16 + c, 16 + j)  # ... the values its photo and seed
            assert np.abs(S - expected).max() <= 1e-5 * (1 + np.abs(expected).max()), (c, j)


# -- cancel, vanishing clients, heartbeats ---------------------------------------------------------------

def test_cancel_running_and_queued_jobs(server):
    with BackendClient(server.address) as client:
        client.hello()
        running = client.submit(photo(3), steps=1000)
        queued = client.submit(photo(3), steps=1000)
        wait_running(running)
        assert queued.poll().state == "queued"
        queued.cancel()
        t0 = time.monotonic()
        while not queued.poll().done:
            time.sleep(0.005)
        assert queued.state == "cancelled" and queued.step == 0
        running.cancel()
        while not running.poll().done:
            time.sleep(0.005)
        assert time.monotonic() - t0 < 2.0
        assert running.state == "cancelled" and running.cancel_reason == "client" and running.step < 1000
        with pytest.raises(BackendError) as info:
            running.wait()
        assert info.value.code == "cancelled"
        wait_idle(client)
        assert client.predict(photo(3), steps=2, size=(16, 16)).S.shape == (16, 2, 16, 16)


VANISHING_CLIENT = """
import sys, time, numpy as np
from image_dynamics.protocol import BackendClient
client = BackendClient(sys.argv[1])
client.hello()
job = client.submit(np.zeros((32, 32, 3), np.uint8), steps=1000)
while job.poll().step < 2:
    time.sleep(0.01)
print("running", flush=True)
time.sleep(120)
"""


def test_vanishing_client_gets_its_job_cancelled(server):
    proc = subprocess.Popen([sys.executable, "-c", VANISHING_CLIENT, server.address], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "running"
        with BackendClient(server.address) as watcher:
            before = watcher.status()
            assert before["running"] == 1
            proc.kill()  # no bye, no cancel: the process is just gone
            proc.wait()
            t0 = time.monotonic()
            after = wait_idle(watcher, timeout=10)
            assert time.monotonic() - t0 < 5
            assert after["cancelled"] >= before["cancelled"] + 1
            assert after["clients"] == before["clients"] - 1  # its state is gone
            assert watcher.predict(photo(4), steps=2, size=(16, 16)).S.shape == (16, 2, 16, 16)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


def test_silent_client_is_cancelled_after_its_heartbeat_timeout(server):
    with BackendClient(server.address, heartbeat_timeout=2.0) as client:
        assert client.hello()["heartbeat_timeout_s"] == 2.0
        job = client.submit(photo(5), steps=1000)
        wait_running(job)
        time.sleep(3.0)  # no poll -> no pings
        with pytest.raises(BackendError) as info:
            job.wait(timeout=10)
        assert info.value.code == "cancelled" and job.cancel_reason == "heartbeat_timeout"
        wait_idle(client)


# -- bad requests ---------------------------------------------------------------------------------------

def raw_exchange(address: str, frames: list, timeout_ms: int = 5000) -> dict:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    try:
        sock.send_multipart(frames)
        assert sock.poll(timeout_ms), "no answer"
        return decode(sock.recv_multipart()).header
    finally:
        sock.close()


def test_structured_errors_for_bad_requests(server):
    cases = [
        ([b"not json"], "malformed_message", None),
        ([b'{"protocol": 2, "op": "hello", "id": "v2"}'], "unsupported_version", "v2"),
        ([b'{"protocol": 1, "op": "teleport", "id": "t"}'], "unknown_op", "t"),
        ([b'{"protocol": 1, "op": "cancel", "id": "nope"}'], "unknown_job", "nope"),
        (encode({"protocol": 1, "op": "predict", "id": "big"}, {"image": np.zeros((8, 8, 3), np.uint8)})[:1]
         + [b"\0" * 100], "bad_array", "big"),
        (encode({"protocol": 1, "op": "predict", "id": "huge", "options": {"size": [4096, 4096]}},
                {"image": np.zeros((8, 8, 3), np.uint8)}), "too_large", "huge"),
    ]
    for frames, code, rid in cases:
        header = raw_exchange(server.address, [bytes(f) for f in frames])
        check_error_header(header)
        assert (header["code"], header["id"]) == (code, rid), header
        if code == "unsupported_version":
            assert header["supported_versions"] == [1]


def test_duplicate_job_id_is_refused(server):
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.address)
    try:
        req = encode({"protocol": 1, "op": "predict", "id": "dup", "options": {"steps": 1000}},
                     {"image": np.zeros((8, 8, 3), np.uint8)})
        sock.send_multipart(req)
        sock.send_multipart(req)
        seen = []
        while "duplicate_job" not in seen:
            assert sock.poll(5000)
            h = decode(sock.recv_multipart()).header
            seen.append(h.get("code", h["op"]))
        assert seen[0] == "accepted"
        sock.send_multipart(encode({"protocol": 1, "op": "bye", "id": "b"}))
        while True:
            assert sock.poll(5000)
            h = decode(sock.recv_multipart()).header
            if h["op"] == "bye":
                break
        assert h["cancelled"] == 1
    finally:
        sock.close()
    with BackendClient(server.address) as client:
        wait_idle(client)  # bye cancelled the running job


def test_docs_example_client_works(server):
    """The raw pyzmq + numpy client of docs/protocol.md section 12, run as written."""
    doc = (REPO / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = doc.split("## 12.", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace("tcp://127.0.0.1:5555", server.address)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "tiny-untrained-seed0" in out.stdout


# -- command line: port in use, bind policy -------------------------------------------------------------

def test_port_in_use_names_the_port(server, run_cli):
    result = run_cli("serve", "--tiny-model", "0", "--bind", server.address, timeout=60)
    assert result.returncode == 2
    assert f"port {server.port} on 127.0.0.1 is already in use (another backend running?)" in result.stderr
    assert "--bind tcp://127.0.0.1:0" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("address", ["tcp://0.0.0.0:0", "tcp://*:0", "tcp://192.0.2.1:5555"])
def test_non_loopback_bind_is_refused_without_keys(run_cli, address):
    result = run_cli("serve", "--tiny-model", "0", "--bind", address, timeout=60)
    assert result.returncode == 2
    assert "refusing to listen" in result.stderr and "without encryption" in result.stderr
    assert "keys generate" in result.stderr and "Traceback" not in result.stderr


def test_bind_policy_rules():
    from image_dynamics.errors import UserError
    from image_dynamics.service.security import check_bind_policy, parse_bind, warn_insecure

    for local in ("tcp://127.0.0.1:5555", "tcp://127.5.0.1:0", "tcp://[::1]:5555", "tcp://localhost:1", "ipc:///tmp/x"):
        assert check_bind_policy(parse_bind(local), curve_secret=None, allowed_clients=None, insecure=False) == "local"
    remote = parse_bind("tcp://0.0.0.0:5555")
    assert check_bind_policy(remote, curve_secret=None, allowed_clients=None, insecure=True) == "insecure-remote"
    assert check_bind_policy(remote, curve_secret="s", allowed_clients="d", insecure=False) == "curve"
    with pytest.raises(UserError):
        check_bind_policy(remote, curve_secret="s", allowed_clients=None, insecure=False)
    for bad in ("udp://1.2.3.4:5", "tcp://127.0.0.1", "tcp://127.0.0.1:99999", "inproc://x"):
        with pytest.raises(UserError):
            parse_bind(bad)
    import io

    stream = io.StringIO()
    warn_insecure(remote, stream)
    assert "--insecure-allow-remote-without-encryption" in stream.getvalue() and "WARNING" in stream.getvalue()


# -- CurveZMQ ---------------------------------------------------------------------------------------------

def test_curve_right_key_accepted_wrong_keys_get_no_answer(tmp_path, run_cli):
    keys = tmp_path / "keys"
    result = run_cli("keys", "generate", keys, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (keys / "server.key_secret").stat().st_mode & 0o077 == 0
    assert run_cli("keys", "add-client", keys, "laptop", timeout=60).returncode == 0
    assert sorted(p.name for p in (keys / "allowed_clients").iterdir()) == ["client.key", "laptop.key"]
    srv = ServerProcess(tmp_path, "--tiny-model", "0", "--bind", "tcp://127.0.0.1:0",
                        "--curve-secret", str(keys / "server.key_secret"),
                        "--allowed-clients", str(keys / "allowed_clients"), name="curve")
    try:
        with BackendClient(srv.address, server_public_key=keys / "server.key",
                           client_keys=keys / "client.key_secret") as good:
            assert good.hello()["security"] == {"curve": True}
            assert good.predict(photo(6), steps=2, size=(16, 16)).S.shape == (16, 2, 16, 16)
        wrong = [
            dict(server_public_key=keys / "server.key", client_keys=zmq.curve_keypair()),  # key not allowed
            dict(server_public_key=zmq.curve_keypair()[0], client_keys=keys / "client.key_secret"),  # wrong server
            dict(),  # no encryption at all
        ]
        for kwargs in wrong:
            with BackendClient(srv.address, **kwargs) as bad:
                with pytest.raises(BackendError) as info:
                    bad.hello(timeout=1.0)
                assert info.value.code == "timeout"
        with BackendClient(srv.address, server_public_key=keys / "server.key",
                           client_keys=keys / "laptop.key_secret") as good:
            good.hello()  # still serving, and the added client is allowed too
    finally:
        assert srv.stop(signal.SIGINT) == 0  # Ctrl-C is as graceful as SIGTERM
        assert "stopped" in srv.err_path.read_text()


# -- shutdown and restarts ---------------------------------------------------------------------------------

def test_client_survives_a_backend_crash_and_sigterm_is_graceful(tmp_path):
    first = ServerProcess(tmp_path, "--tiny-model", "0", "--bind", "tcp://127.0.0.1:0", name="first")
    address = first.address
    servers = [first]
    try:
        client = BackendClient(address, timeout=20)
        info1 = client.hello()
        job = client.submit(photo(7), steps=1000)
        wait_running(job)
        first.stop(signal.SIGKILL)  # a crash: nobody tells the client
        second = ServerProcess(tmp_path, "--tiny-model", "0", "--bind", address, name="second")
        servers.append(second)
        with pytest.raises(BackendError) as info:
            job.wait(timeout=30)
        assert info.value.code == "backend_restarted", info.value
        assert "restarted" in str(info.value) and "again" in info.value.hint
        info2 = client.hello()  # the same client object: new socket, new hello
        assert info2["instance"] != info1["instance"] and client.reconnects == 1
        assert client.predict(photo(7), steps=2, size=(16, 16)).S.shape == (16, 2, 16, 16)

        job = client.submit(photo(7), steps=1000)
        wait_running(job)
        t0 = time.monotonic()
        assert second.stop(signal.SIGTERM) == 0  # graceful: exit status 0 ...
        assert time.monotonic() - t0 < 10
        with pytest.raises(BackendError):
            job.wait(timeout=5)
        assert job.state == "cancelled" and job.cancel_reason == "shutdown"  # ... and the client was told
        client.close()
    finally:
        for s in servers:
            s.stop(signal.SIGKILL)


# -- batching (server logic with a numpy engine defined here, never in the product) --------------------------

def test_server_batches_queued_jobs_with_equal_options():
    from image_dynamics.service.engine import JobCancelled, MotionEngine
    from image_dynamics.service.limits import Limits
    from image_dynamics.service.security import parse_bind
    from image_dynamics.service.server import Server

    class NumpyTestEngine(MotionEngine):
        max_batch = 4

        def __init__(self):
            self.gate = threading.Event()
            self.batches: list[int] = []

        def info(self):
            return {"name": "numpy-test", "untrained_test_model": True, "num_freqs": 2, "resolution": [8, 8],
                    "fps": 30.0, "num_frames": 150, "default_steps": 2, "default_guidance": 1.0,
                    "samplers": ["ddim"], "default_sampler": "ddim", "device": "cpu", "engine": "numpy-test",
                    "max_batch": 4}

        def predict(self, image, options, progress, should_stop):
            self.gate.wait(10)
            for i in range(2):
                if should_stop():
                    raise JobCancelled()
                progress(i + 1, 2, None)
            w, h = options.size or (8, 8)
            return np.full((2, 2, h, w), options.seed + 1j * float(image.mean()), np.complex64)

        def predict_batch(self, jobs):
            self.batches.append(len(jobs))
            return super().predict_batch(jobs)

    engine = NumpyTestEngine()
    srv = Server(Limits())
    address = srv.bind(parse_bind("tcp://127.0.0.1:0"))
    thread = threading.Thread(target=srv.serve, args=(engine,), kwargs={"install_signals": False})
    thread.start()
    try:
        with BackendClient(address) as client:
            assert client.hello()["batching"] == {"max_batch": 4}
            first = client.submit(photo(8), seed=1)
            while first.poll().state != "running":  # the engine holds it at the gate
                time.sleep(0.01)
            jobs = [client.submit(photo(9), seed=s, size=size) for s, size in
                    [(2, None), (3, None), (4, (10, 10)), (5, None)]]
            while any(j.poll().queue_position is None for j in jobs):
                time.sleep(0.01)
            engine.gate.set()
            for j in [first, *jobs]:
                j.wait(timeout=10)
        assert engine.batches == [3]  # seeds 2, 3, 5 together; the 10x10 job on its own
        for j, seed in zip(jobs, (2, 3, 4, 5)):
            assert j.result.S.real.flat[0] == seed
        assert jobs[2].result.S.shape == (2, 2, 10, 10)
    finally:
        engine.gate.set()
        srv.request_stop()
        thread.join(20)
    assert not thread.is_alive()


def test_serve_with_a_damaged_model_is_a_user_error(tmp_path, reference, run_cli):
    """A truncated model.safetensors (safetensors raises its own SafetensorError): one clear line."""
    folder = tmp_path / "damaged"
    reference.save_pretrained(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    result = run_cli("serve", "--model", folder, "--bind", "tcp://127.0.0.1:0", "--threads", "1", timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "cannot load the model" in result.stderr and "SafetensorError" in result.stderr
    assert "download the model again" in result.stderr


def test_engine_factory_loads_a_saved_model_folder(tmp_path, reference):
    from image_dynamics.errors import UserError
    from image_dynamics.protocol.messages import PredictOptions
    from image_dynamics.service.engine import create_engine

    folder = tmp_path / "my-model"
    reference.save_pretrained(folder)
    (folder / "README.md").write_text("# My model\n\nA test card: trained on nothing.\n\nMore text.\n")
    engine = create_engine(model=folder, device="cpu")
    info = engine.info()
    assert info["name"] == "my-model" and info["untrained_test_model"] is False
    assert info["card"]["summary"] == "A test card: trained on nothing." and info["engine"] == "torch"
    image = photo(10)
    steps = []
    S = engine.predict(image, PredictOptions(seed=4, steps=2, size=(16, 16)), lambda s, n, p: steps.append(s), lambda: False)
    np.testing.assert_array_equal(S, reference.predict(image, seed=4, steps=2, size=(16, 16)))
    assert steps == [1, 2]
    with pytest.raises(UserError, match="no model folder"):
        create_engine(model=tmp_path / "missing", device="cpu")
    with pytest.raises(UserError, match="not a saved motion predictor"):
        create_engine(model=tmp_path, device="cpu")  # a folder, but no model in it
    with pytest.raises(UserError, match="unknown engine"):
        create_engine(tiny_model=0, engine="tensorrt")
