"""``serve --ray``: the predictor as a Ray Serve deployment, behind the same ZeroMQ front.

``RayMotionEngine`` is a ``MotionEngine`` like the torch one, so the server, the protocol and the
clients do not change: the server's worker threads (one per replica, ``concurrency``) call
``predict`` and this engine forwards the job to a ``ray_deployment.MotionReplica`` through a
Serve ``DeploymentHandle``. Ray places the replicas (one per GPU, or ``cpus_per_replica`` CPUs
each), routes each job to a free one, restarts dead ones and, between ``min_replicas`` and
``max_replicas``, adds replicas while jobs queue up at the handle. There is no broker of ours.

Progress and cancel across the process boundary: the replica's ``predict`` is a streaming
response (an async generator). A pump thread here iterates it and puts every event on a local
queue; ``predict`` reads that queue with a short timeout, forwards ``progress`` events to the
server's callback and polls ``should_stop`` between reads. Cancel calls ``response.cancel()``:
Serve cancels the request in the replica, whose generator sets the job's stop flag, so the model
stops before its next sampling step (ray_deployment.py).

A replica that dies mid-job (killed, node lost, crashed) ends the stream with a Ray error
(``ActorDiedError`` and kin; engine errors never arrive as exceptions, see ray_deployment.py).
The job then runs once more from the start on another replica (``retries``); if that fails too,
``predict`` raises ``EngineUnavailable`` and the client gets a retryable error. Nothing waits
without a bound: a job attempt with no event from Ray for ``stall_timeout_s`` (not started, no
progress) is cancelled and counts as a failed attempt; starting, deploying and ``info`` have
their own timeouts.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any, Callable

import numpy as np

from ..errors import UserError
from ..protocol.messages import ErrorCode, PredictOptions
from .engine import EngineOutOfMemory, JobCancelled, MotionEngine, Progress

__all__ = ["RayMotionEngine", "EngineUnavailable", "DEFAULT_APP_NAME"]

log = logging.getLogger("image_dynamics.service.ray")
DEFAULT_APP_NAME = "image-dynamics"
_POLL_S = 0.1


class EngineUnavailable(Exception):
    """No replica could finish the job (replicas died, cluster unreachable). Retryable."""

    # the server sends ``wire_code`` and ``hint`` instead of its generic internal_error ones
    wire_code = getattr(ErrorCode, "SERVICE_UNAVAILABLE", ErrorCode.INTERNAL_ERROR)
    hint = ("the Ray cluster behind the backend lost the replica running this job; resubmit it in a "
            "moment (Ray restarts replicas), and check the cluster (ray status) if it keeps happening")


class _ReplicaLost(Exception):
    """One attempt failed on the Ray side (not the model's fault)."""


def _call_with_timeout(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """Run ``fn`` in a daemon thread; TimeoutError if it is not back in ``timeout`` seconds."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    t = threading.Thread(target=target, name=f"image-dynamics-ray-{what}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"{what} took longer than {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast (ConnectionError) when nothing listens at a HOST:PORT address: ray.init itself
    keeps retrying an unreachable head for minutes."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():  # "auto" or a form Ray resolves itself
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {host}:{port} ({exc})") from None


class RayMotionEngine(MotionEngine):
    """Connect to (``address``) or start (no address) Ray, deploy the replicas, serve jobs.

    ``engine_kwargs`` are ``create_engine``'s (``model`` / ``tiny_model``, ``device``, ``threads``);
    each replica calls it once. ``max_replicas`` defaults to the cluster's GPUs (GPU replicas) or
    1 (CPU replicas); ``min_replicas`` to 1.
    """

    max_batch = 1

    def __init__(self, engine_kwargs: dict[str, Any], *, address: str | None = None, max_replicas: int | None = None,
                 min_replicas: int | None = None, cpus_per_replica: float = 1.0, object_store_mb: float | None = None,
                 app_name: str = DEFAULT_APP_NAME, retries: int = 1, stall_timeout_s: float = 300.0,
                 start_timeout_s: float = 600.0, verbose: bool = False) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home from a studio
        try:
            import ray
            from ray import serve
        except ImportError:
            raise UserError("--ray needs Ray Serve, which is not installed",
                            "install it into the backend's environment: pip install 'ray[serve]'") from None
        self._ray, self._serve = ray, serve
        self.address = address
        self.app_name = app_name
        self.retries = max(0, int(retries))
        self.stall_timeout_s = float(stall_timeout_s)
        self._closed = False
        self._started_ray = False
        if not verbose:
            for name in ("ray", "ray.serve"):
                logging.getLogger(name).setLevel(logging.WARNING)

        self._init_ray(address, object_store_mb, verbose)
        try:
            device = str(engine_kwargs.get("device", "auto"))
            actor_options, lo, hi, replica_device = self._placement(device, max_replicas, min_replicas, cpus_per_replica)
            kwargs = {**engine_kwargs, "device": replica_device}
            from .ray_deployment import build_app

            app = build_app(kwargs, actor_options=actor_options, min_replicas=lo, max_replicas=hi)
            serve_logging = {"log_level": "INFO" if verbose else "WARNING", "enable_access_log": bool(verbose)}
            _call_with_timeout(lambda: serve.start(proxy_location="Disabled", logging_config=serve_logging),
                               min(start_timeout_s, 120.0), "starting Ray Serve")
            try:
                self._handle = _call_with_timeout(
                    lambda: serve.run(app, name=app_name, route_prefix=None, logging_config=serve_logging),
                    start_timeout_s, "deploying the replicas")
            except TimeoutError as exc:
                self._delete_app()
                raise UserError(f"Ray Serve could not start {lo} replica(s) of the model: {exc}",
                                "check `ray status`: the cluster may lack the GPUs / CPUs asked for "
                                "(--ray-replicas, --ray-min-replicas)") from None
            except Exception as exc:
                self._delete_app()
                raise UserError(f"Ray Serve could not start the model replicas: {type(exc).__name__}: "
                                f"{str(exc)[-1500:]}",
                                "every Ray node needs this backend installed (same Python environment) and "
                                "the --model folder at the same path") from None
            info = self._handle.info.remote().result(timeout_s=120)
        except BaseException:
            self.close()
            raise
        info.pop("replica", None)
        self.min_replicas, self.max_replicas = lo, hi
        self._info = {**info, "engine": "ray",
                      "ray": {"address": address or "local", "app": app_name, "min_replicas": lo, "max_replicas": hi,
                              "replica_resources": actor_options}}

    # -- setup --------------------------------------------------------------------------------------
    def _init_ray(self, address: str | None, object_store_mb: float | None, verbose: bool) -> None:
        ray = self._ray
        if ray.is_initialized():
            return
        common: dict[str, Any] = dict(log_to_driver=bool(verbose), configure_logging=True,
                                      logging_level=logging.INFO if verbose else logging.WARNING)
        try:
            if address:
                _probe(address)
                ray.init(address=address, **common)
            else:
                local: dict[str, Any] = dict(include_dashboard=False)
                if object_store_mb:
                    local["object_store_memory"] = int(object_store_mb * 2**20)
                ray.init(address="local", **local, **common)  # always a new instance, never a stray one
                self._started_ray = True
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise UserError(f"cannot connect to {where}: {str(exc)[:500]}",
                            "start the cluster first (ray start --head on the head node) and pass its address, "
                            "e.g. --ray HEAD_IP:6379, or pass --ray alone to start Ray on this machine; a cluster "
                            "with token authentication also needs RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN "
                            "or ~/.ray/auth_token) in this process's environment (docs/scale-out.md)") from None

    def _placement(self, device: str, max_replicas: int | None, min_replicas: int | None,
                   cpus_per_replica: float) -> tuple[dict[str, Any], int, int, str]:
        resources = self._ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = float(resources.get("CPU", 0))
        if device.startswith("cuda") and gpus == 0:
            raise UserError(f"--device {device}: the Ray cluster has no GPU",
                            "pass --device cpu (or auto), or add GPU nodes (ray start --address ... on them)")
        use_gpu = gpus > 0 and device not in ("cpu", "mps")
        if use_gpu:
            hi = int(max_replicas) if max_replicas else gpus
            actor_options: dict[str, Any] = {"num_gpus": 1, "num_cpus": cpus_per_replica}
            replica_device = "cuda"  # inside a replica, Ray makes its one GPU the only visible one
            if device.startswith("cuda:"):
                log.warning("--device %s: with --ray each replica gets one GPU of its own; using it", device)
        else:
            hi = int(max_replicas) if max_replicas else 1
            actor_options = {"num_cpus": cpus_per_replica}
            replica_device = "cpu"
        if hi < 1:
            raise UserError("--ray-replicas must be at least 1", "pass --ray-replicas N with N >= 1")
        lo = min(int(min_replicas) if min_replicas else 1, hi)
        need_cpus = lo * cpus_per_replica
        if need_cpus > cpus or (use_gpu and lo > gpus):
            raise UserError(f"the Ray cluster has {cpus:g} CPU(s) and {gpus} GPU(s), too few for {lo} replica(s) "
                            f"of {cpus_per_replica:g} CPU{' and 1 GPU' if use_gpu else ''} each",
                            "lower --ray-min-replicas / --ray-replicas, or add nodes to the cluster")
        return actor_options, lo, hi, replica_device

    # -- MotionEngine -------------------------------------------------------------------------------
    @property
    def concurrency(self) -> int:
        """Jobs the server should run at once: one per replica the cluster may have."""
        return self.max_replicas

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def predict(self, image: np.ndarray, options: PredictOptions, progress: Progress,
                should_stop: Callable[[], bool]) -> np.ndarray:
        return self.predict_with_meta(image, options, progress, should_stop)[0]

    def predict_with_meta(self, image: np.ndarray, options: PredictOptions, progress: Progress,
                          should_stop: Callable[[], bool]) -> tuple[np.ndarray, dict[str, Any]]:
        """``predict``, plus ``{"ray": {"replica", "pid", "node", "attempts"}}`` for the result's meta."""
        failures: list[str] = []
        for attempt in range(1, self.retries + 2):
            if should_stop():
                raise JobCancelled("cancelled before it reached a replica")
            try:
                S, replica = self._attempt(image, options, progress, should_stop)
            except _ReplicaLost as exc:
                failures.append(str(exc))
                log.warning("job attempt %d failed on the Ray side: %s", attempt, exc)
                time.sleep(min(0.5 * attempt, 2.0))  # let Serve's router drop the dead replica
                continue
            meta = {"ray": {"replica": replica.get("id", ""), "pid": replica.get("pid"),
                            "node": replica.get("node", ""), "host": replica.get("host", ""), "attempts": attempt}}
            return S, meta
        raise EngineUnavailable(f"the job failed on {len(failures)} Ray Serve replica(s): {failures[-1][:300]}")

    def _attempt(self, image: np.ndarray, options: PredictOptions, progress: Progress,
                 should_stop: Callable[[], bool]) -> tuple[np.ndarray, dict[str, Any]]:
        try:
            response = self._handle.options(stream=True).predict.remote(image, options)
        except Exception as exc:
            raise _ReplicaLost(f"could not submit the job: {type(exc).__name__}: {exc}") from None
        events: queue.SimpleQueue = queue.SimpleQueue()

        def pump() -> None:
            try:
                for item in response:
                    events.put(("item", item))
                events.put(("end", None))
            except BaseException as exc:  # handed to the reader below
                events.put(("error", exc))

        threading.Thread(target=pump, name="image-dynamics-ray-stream", daemon=True).start()
        replica: dict[str, Any] = {}
        last_event = time.monotonic()
        while True:
            if should_stop():
                self._cancel(response)
                raise JobCancelled("cancelled")
            try:
                kind, payload = events.get(timeout=_POLL_S)
            except queue.Empty:
                if time.monotonic() - last_event > self.stall_timeout_s:
                    self._cancel(response)
                    raise _ReplicaLost(f"no word from Ray for {self.stall_timeout_s:.0f} s") from None
                continue
            last_event = time.monotonic()
            if kind == "end":
                raise _ReplicaLost("the replica's stream ended without a result")
            if kind == "error":
                if should_stop():
                    raise JobCancelled("cancelled")
                raise _ReplicaLost(f"{type(payload).__name__}: {str(payload).splitlines()[0][:300] if str(payload) else ''}")
            tag = payload[0]
            if tag == "started":
                replica = dict(payload[1])
            elif tag == "progress":
                progress(payload[1], payload[2], payload[3])
            elif tag == "result":
                return payload[1], replica
            elif tag == "error":
                _, what, message = payload
                if what == "cancelled":
                    raise JobCancelled(message)
                if what == "out_of_memory":
                    raise EngineOutOfMemory(message)
                raise RuntimeError(message)

    @staticmethod
    def _cancel(response) -> None:
        try:
            _call_with_timeout(response.cancel, 10.0, "cancelling a job")
        except Exception as exc:  # best effort: the replica also stops on its own deadline
            log.warning("could not cancel a Ray job: %s", exc)

    # -- shutdown -----------------------------------------------------------------------------------
    def _delete_app(self) -> None:
        try:
            _call_with_timeout(lambda: self._serve.delete(self.app_name), 30.0, "removing the replicas")
        except Exception as exc:
            log.warning("could not remove the Ray Serve application %r: %s", self.app_name, exc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        ray = self._ray
        if not ray.is_initialized():
            return
        if not self._started_ray:  # a shared cluster: remove only our application (frees its GPUs)
            self._delete_app()
        # our own local instance: ray.shutdown stops all its processes, Serve's included
        try:
            _call_with_timeout(ray.shutdown, 30.0, "disconnecting from Ray")
        except Exception as exc:
            log.warning("could not shut Ray down: %s", exc)
