"""``image-dynamics serve --ray``: the same ZeroMQ front, the model on Ray Serve replicas.

One module-scoped backend starts its own local Ray instance (``--ray`` with no address) with two
CPU replicas of the tiny untrained model, kept small: 2 CPUs, no dashboard, a 200 MB object
store, one torch thread per replica. Clients are the ordinary ``BackendClient``. Each result's
``meta.ray`` names the replica (id, pid) that ran it, which is how the tests see the spread and
find a replica process to kill.
"""

from __future__ import annotations

import importlib.util
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

from image_dynamics.protocol import BackendClient, BackendError

pytestmark = pytest.mark.slow
HAVE_RAY = importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.serve") is not None

READY_RE = re.compile(r"image-dynamics backend ready on (tcp://\S+)")
SIZE = (40, 24)


def cli() -> list[str]:
    exe = Path(sys.executable).with_name("image-dynamics")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "image_dynamics.cli"]


class RayServer:
    def __init__(self, folder: Path, *args: str) -> None:
        self.out_path, self.err_path = folder / "server.out", folder / "server.err"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)  # --ray with no address must start its own instance
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(cli() + ["serve", "--threads", "1", "--bind", "tcp://127.0.0.1:0", *args],
                                         stdout=out, stderr=err, env=env)
        self.address = self._wait_ready(90)

    def _wait_ready(self, timeout: float) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = READY_RE.search(self.out_path.read_text())
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.err_path.read_text()[-3000:]}")
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"server never became ready: {self.err_path.read_text()[-3000:]}")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("the Ray backend did not stop within 30 s of SIGTERM")
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not HAVE_RAY:
        pytest.skip("serve --ray needs ray[serve] installed")
    srv = RayServer(tmp_path_factory.mktemp("ray-serve"), "--tiny-model", "0", "--ray", "--ray-replicas", "2",
                    "--ray-min-replicas", "2", "--ray-object-store-mb", "200", "--ray-timeout", "60")
    try:
        yield srv
    finally:
        assert srv.stop() == 0, srv.err_path.read_text()[-3000:]


@pytest.fixture(scope="module")
def reference():
    """The same tiny model in-process (same seed -> same weights), single-threaded like the replicas."""
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


def test_hello_is_the_same_backend_to_a_client(server):
    with BackendClient(server.address) as client:
        info = client.hello()
    assert info["engine"] == "ray" and info["device"] == "cpu"
    model = info["model"]
    assert model["name"] == "tiny-untrained-seed0" and model["untrained_test_model"] is True
    assert model["num_freqs"] == 16 and model["resolution"] == [48, 32]
    assert "ray" not in model and "replica" not in model


def test_result_equals_the_model_in_process(server, reference):
    image = photo(1)
    seen = []
    with BackendClient(server.address) as client:
        r = client.predict(image, seed=5, steps=3, size=SIZE, preview=True,
                           progress=lambda step, total, preview: seen.append((step, total, preview)), timeout=60)
    expected = reference.predict(image, seed=5, steps=3, size=SIZE)
    assert r.S.shape == (16, 2, SIZE[1], SIZE[0]) and r.S.dtype == np.complex64
    np.testing.assert_allclose(r.S, expected, rtol=1e-5, atol=1e-6 * float(np.abs(expected).max()))
    assert r.meta["seed"] == 5 and r.meta["steps"] == 3 and r.meta["size"] == list(SIZE)
    assert r.meta["ray"]["attempts"] == 1 and r.meta["ray"]["pid"] > 0 and r.meta["ray"]["replica"]
    steps = [s for s, _, _ in seen]
    assert steps[0] == 0 and steps[-1] == 3
    assert all(p is not None and p.dtype == np.float32 for s, _, p in seen if s >= 1)


def test_jobs_from_several_clients_spread_across_both_replicas(server, reference):
    image = photo(2)

    def one_client(c: int) -> list[tuple[int, int, np.ndarray]]:
        with BackendClient(server.address) as client:
            jobs = [(seed, client.submit(image, seed=seed, steps=8, size=SIZE)) for seed in range(4 * c, 4 * c + 4)]
            return [(seed, job.wait(60).meta["ray"]["pid"], job.wait(60).S) for seed, job in jobs]

    with ThreadPoolExecutor(3) as pool:
        results = [r for rs in pool.map(one_client, range(3)) for r in rs]
    assert len(results) == 12
    assert len({pid for _, pid, _ in results}) == 2, "both replicas should have run jobs"
    seed, _, S = results[5]
    expected = reference.predict(image, seed=seed, steps=8, size=SIZE)
    np.testing.assert_allclose(S, expected, rtol=1e-5, atol=1e-6 * float(np.abs(expected).max()))


def test_cancel_reaches_the_replica(server):
    with BackendClient(server.address) as client:
        job = client.submit(photo(3), seed=1, steps=1000, size=SIZE)
        wait_running(job, 2)
        job.cancel()
        t0 = time.monotonic()
        with pytest.raises(BackendError) as err:
            job.wait(20)
        assert err.value.code == "cancelled" and time.monotonic() - t0 < 10
        assert job.poll().step < 1000
        # the replica is free again: two quick jobs go through
        r = [client.predict(photo(4), seed=s, steps=2, size=SIZE, timeout=60) for s in range(2)]
        assert all(x.S.shape == (16, 2, SIZE[1], SIZE[0]) for x in r)


def test_a_replica_killed_mid_job_reruns_the_job_or_fails_clearly(server):
    image = photo(5)
    with BackendClient(server.address) as client:
        pids = set()
        for seed in range(6):  # learn both replica processes
            pids.add(client.predict(image, seed=seed, steps=2, size=SIZE, timeout=60).meta["ray"]["pid"])
        assert len(pids) == 2
        # one long job on each replica, then kill one replica's process outright
        jobs = [client.submit(image, seed=s, steps=300, size=SIZE) for s in (11, 12)]
        for job in jobs:
            wait_running(job, 3)
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        outcomes = []
        for job in jobs:
            try:
                outcomes.append(job.wait(90).meta["ray"])
            except BackendError as exc:  # allowed: a clear, retryable error
                assert exc.code in ("service_unavailable", "internal_error") and exc.retryable, exc
                assert "replica" in str(exc)
                outcomes.append(exc)
        assert time.monotonic() - t0 < 90
        # the job on the killed replica was re-run elsewhere, or failed with the clear error
        assert any(isinstance(o, BackendError) or o["attempts"] == 2 for o in outcomes), outcomes
        assert all(o["pid"] != victim for o in outcomes if isinstance(o, dict))
        # the backend keeps serving (the surviving replica, then Ray's replacement)
        r = client.predict(image, seed=13, steps=2, size=SIZE, timeout=60)
        assert r.meta["ray"]["pid"] != victim
        st = client.status()
        assert st["queue_length"] == 0


# -- the server side of --ray, in-process with a numpy engine defined here (no Ray needed) -------------

def test_server_runs_one_job_per_replica_and_reports_lost_replicas():
    from image_dynamics.service.engine import MotionEngine
    from image_dynamics.service.limits import Limits
    from image_dynamics.service.ray_engine import EngineUnavailable
    from image_dynamics.service.security import parse_bind
    from image_dynamics.service.server import Server

    class TwoSlotEngine(MotionEngine):
        """Looks like RayMotionEngine to the server: concurrency 2, predict_with_meta."""

        concurrency = 2

        def __init__(self):
            self.lock = threading.Lock()
            self.running = 0
            self.peak = 0

        def info(self):
            return {"name": "numpy-test", "untrained_test_model": True, "num_freqs": 2, "resolution": [8, 8],
                    "fps": 30.0, "num_frames": 150, "default_steps": 2, "default_guidance": 1.0,
                    "samplers": ["ddim"], "default_sampler": "ddim", "device": "cpu", "engine": "ray",
                    "max_batch": 1, "ray": {"app": "test"}}

        def predict(self, image, options, progress, should_stop):
            return self.predict_with_meta(image, options, progress, should_stop)[0]

        def predict_with_meta(self, image, options, progress, should_stop):
            if options.seed == 99:
                raise EngineUnavailable("the job failed on 2 Ray Serve replica(s): ActorDiedError")
            with self.lock:
                self.running += 1
                self.peak = max(self.peak, self.running)
            try:
                time.sleep(0.2)
                progress(1, 1, None)
            finally:
                with self.lock:
                    self.running -= 1
            slot = options.seed % 2
            return np.full((2, 2, 8, 8), options.seed, np.complex64), {"ray": {"replica": f"r{slot}", "attempts": 1}}

    engine = TwoSlotEngine()
    srv = Server(Limits())
    address = srv.bind(parse_bind("tcp://127.0.0.1:0"))
    thread = threading.Thread(target=srv.serve, args=(engine,), kwargs={"install_signals": False})
    thread.start()
    try:
        with BackendClient(address) as client:
            hello = client.hello()
            assert hello["engine"] == "ray" and "ray" not in hello["model"]
            jobs = [client.submit(photo(s), seed=s) for s in range(6)]
            results = [j.wait(timeout=20) for j in jobs]
            lost = client.submit(photo(1), seed=99)
            with pytest.raises(BackendError) as err:
                lost.wait(timeout=20)
        assert engine.peak == 2  # two jobs at once, never more
        assert [r.S.real.flat[0] for r in results] == list(range(6))
        assert {r.meta["ray"]["replica"] for r in results} == {"r0", "r1"} and results[0].meta["seed"] == 0
        assert err.value.retryable and "replica" in str(err.value) and "Ray" in err.value.hint
    finally:
        srv.request_stop()
        thread.join(20)
    assert not thread.is_alive()
