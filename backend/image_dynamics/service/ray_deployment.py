"""The Ray Serve deployment behind ``serve --ray``: one ``MotionReplica`` per GPU (or CPU slot).

Each replica builds its own engine once (``create_engine`` inside the replica process, so the
model is loaded once per replica and never shipped through Ray) and runs one job at a time
(``max_ongoing_requests=1``). The ZeroMQ server reaches it through a ``DeploymentHandle``
(``ray_engine.RayMotionEngine``); nothing here touches ZeroMQ.

``predict`` is an async generator, called with ``handle.options(stream=True)``. It yields plain
tuples, in this order::

    ("started", replica)                  replica: {"id", "pid", "node", "host"}
    ("progress", step, total, preview)    zero or more
    ("result", S)                         S complex64 (K, 2, H, W)
  | ("error", kind, message)              kind: "cancelled", "out_of_memory" or "failed"

Engine failures travel as ``("error", ...)`` events, never as exceptions, so an exception out of
the stream always means Ray itself failed (replica died, node lost, request cancelled).

Cancel: the caller calls ``response.cancel()``. Ray Serve then cancels the request's asyncio
task in the replica, which raises ``CancelledError`` at the generator's ``await``; the handler
sets the job's ``threading.Event`` and the engine, which runs in the replica's worker thread,
stops before its next sampling step (``should_stop``). A job past its deadline stops the same
way, so a replica never keeps computing for a caller that is gone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import threading
import time
from typing import Any

import numpy as np

from ..protocol.messages import PredictOptions

__all__ = ["MotionReplica", "build_app"]


class MotionReplica:
    """A Serve deployment class (wrapped by ``build_app``); ``engine_kwargs`` go to ``create_engine``."""

    def __init__(self, engine_kwargs: dict[str, Any]) -> None:
        from .engine import create_engine

        self.engine = create_engine(**engine_kwargs)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="image-dynamics-replica")
        self.replica = self._describe()

    @staticmethod
    def _describe() -> dict[str, Any]:
        replica_id, node = "", ""
        try:
            from ray import serve

            rid = serve.get_replica_context().replica_id
            replica_id = str(getattr(rid, "unique_id", rid))
        except Exception:  # outside Serve (unit use): no replica context
            pass
        try:
            import ray

            node = ray.get_runtime_context().get_node_id() or ""
        except Exception:
            pass
        return {"id": replica_id, "pid": os.getpid(), "node": node, "host": socket.gethostname()}

    def info(self) -> dict[str, Any]:
        return {**self.engine.info(), "replica": self.replica}

    def check_health(self) -> None:
        if self.engine is None:
            raise RuntimeError("the engine is closed")

    def _run(self, image: np.ndarray, options: PredictOptions, progress, stop: threading.Event,
             deadline: float | None) -> tuple:
        from .engine import EngineOutOfMemory, JobCancelled

        def should_stop() -> bool:
            return stop.is_set() or (deadline is not None and time.time() > deadline)

        try:
            S = self.engine.predict(image, options, progress, should_stop)
            return ("result", np.ascontiguousarray(S, dtype=np.complex64))
        except JobCancelled as exc:
            return ("error", "cancelled", str(exc) or "cancelled")
        except EngineOutOfMemory as exc:
            return ("error", "out_of_memory", str(exc))
        except Exception as exc:
            return ("error", "failed", f"{type(exc).__name__}: {str(exc)[:300]}")

    async def predict(self, image: np.ndarray, options: PredictOptions, deadline: float | None = None):
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def progress(step: int, total: int, preview) -> None:
            loop.call_soon_threadsafe(events.put_nowait, ("progress", int(step), int(total), preview))

        yield ("started", self.replica)
        work = loop.run_in_executor(self._pool, self._run, image, options, progress, stop, deadline)
        try:
            while True:
                getter = asyncio.ensure_future(events.get())
                done, _ = await asyncio.wait({getter, work}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                    continue
                getter.cancel()
                while not events.empty():
                    yield events.get_nowait()
                yield work.result()
                return
        finally:
            # cancelled by the caller (CancelledError), the caller went away (GeneratorExit) or done
            stop.set()

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def build_app(engine_kwargs: dict[str, Any], *, actor_options: dict[str, Any], min_replicas: int, max_replicas: int,
              upscale_delay_s: float = 2.0, downscale_delay_s: float = 300.0):
    """The Serve application (``Deployment.bind``) for ``serve.run``.

    ``min_replicas == max_replicas``: a fixed number of replicas. Otherwise Serve's autoscaler
    keeps about one job per replica (``target_ongoing_requests=1``): queued jobs at the handle
    add replicas up to ``max_replicas``; idle ones go after ``downscale_delay_s``.
    """
    from ray import serve

    options: dict[str, Any] = dict(
        name="MotionReplica",
        max_ongoing_requests=1,
        ray_actor_options=actor_options,
        health_check_period_s=5.0,
        health_check_timeout_s=30.0,
        graceful_shutdown_wait_loop_s=0.5,
        graceful_shutdown_timeout_s=5.0,
    )
    if min_replicas == max_replicas:
        options["num_replicas"] = max_replicas
    else:
        options["autoscaling_config"] = {
            "min_replicas": min_replicas,
            "initial_replicas": min_replicas,
            "max_replicas": max_replicas,
            "target_ongoing_requests": 1,
            "upscale_delay_s": upscale_delay_s,
            "downscale_delay_s": downscale_delay_s,
        }
    return serve.deployment(MotionReplica).options(**options).bind(engine_kwargs)
