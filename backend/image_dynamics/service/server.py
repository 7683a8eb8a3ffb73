"""The backend: one ROUTER socket, one model, a bounded job queue, many clients.

Threads and sockets (zmq sockets are not thread-safe, so each lives in one thread):

* main thread - owns the ROUTER socket. Decodes and validates every request, answers hello /
  ping / status / cancel / bye at once, queues predict jobs, tracks clients by their ZeroMQ
  routing identity, expires silent clients, and sends every reply and event.
* worker threads - take jobs (predict jobs grouped by ``PredictOptions.batch_key`` up to the
  engine's ``max_batch``; a render job alone) from the queue and run the engine, or for render
  jobs the ``FrameService`` (``rendering.py``). One thread, unless the engine says it can run
  more jobs at once (``engine.concurrency``, e.g. one per Ray Serve replica): then that many
  threads take jobs from the same FIFO queue. They never touch the ROUTER: their events
  (started / progress / done / cancelled / failed) go into a ``queue.SimpleQueue`` and a one-byte
  wake-up on an inproc PUSH socket (one per thread) tells the main loop to drain it.

Memory. libzmq checks ZMQ_MAXMSGSIZE per frame and holds a whole multipart message before
``recv_multipart`` returns, so the ROUTER's MAXMSGSIZE is the largest frame a request can need
(``Limits.max_frame_bytes``) and its receive and send queues are a few messages deep
(``_RCVHWM`` / ``_SNDHWM``). Replies that do not fit a connection's send queue wait in its outbox,
capped at ``max_unread_bytes``: a connection past that has its jobs cancelled and its unread replies
dropped (each request that loses its answer gets a small ``queue_full`` error instead).

Cancel sets the job's ``threading.Event``; the engine's ``should_stop`` reads it before every
sampling step, so a running job stops within one step. A client that disappears is noticed two
ways: its connection closes (the ROUTER runs with ``ROUTER_MANDATORY``, so the next progress event
to it fails with EHOSTUNREACH), or it stays silent past its heartbeat timeout. Either way its jobs
are cancelled and its state dropped. SIGTERM / SIGINT: stop accepting, cancel queued and running
jobs (each client is told, reason "shutdown"), wait for the worker, close the sockets, return.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import signal
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from .. import __version__
from ..errors import UserError
from ..protocol.codec import decode, encode, frame_bytes
from ..protocol.messages import (
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    CancelReason,
    ErrorCode,
    JobState,
    Op,
    PredictOptions,
    ProtocolError,
    RenderOptions,
    Reply,
    error_header,
    image_to_rgb_uint8,
    parse_predict,
    parse_render,
    validate_request,
)
from .engine import EngineJob, EngineOutOfMemory, JobCancelled, MotionEngine
from .limits import Limits
from .rendering import FrameService
from .security import BindAddress, CurveSetup

__all__ = ["Server"]

log = logging.getLogger("image_dynamics.service")
_FINAL_REPLIES = (Reply.RESULT.value, Reply.CANCELLED.value, Reply.ERROR.value)
_WAKE_ENDPOINT = "inproc://image-dynamics-worker-events-{}"
_HOUSEKEEPING_S = 0.25
# A few messages per connection: enough for a request and a ping in flight; more would only let
# one connection park more (up to max_message_bytes each) in memory before the server sees it.
_RCVHWM = 4
# Results and progress queue in libzmq up to this many per connection; with ROUTER_MANDATORY a full
# queue is EAGAIN (not a silent drop), and the message goes to the connection's outbox instead.
_SNDHWM = 4
_OUTBOX_OVERHEAD = 1024  # bytes charged per waiting message on top of its frames (Python objects)


@dataclass(eq=False)
class _Job:
    identity: bytes
    id: str
    image: np.ndarray
    options: PredictOptions | RenderOptions
    submitted: float
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = CancelReason.CLIENT.value
    state: str = JobState.QUEUED.value
    started: float = 0.0
    step: int = 0
    kind: str = Op.PREDICT.value  # or "render", which also carries:
    volume: np.ndarray | None = None  # S (K, 2, h, w)
    coords: np.ndarray | None = None  # (frames, K) modal coordinates, if the client sent them

    @property
    def total(self) -> int | None:
        """Steps of a render job (its frames); None for predict (the engine's default steps apply)."""
        return self.options.frames if isinstance(self.options, RenderOptions) else None


@dataclass
class _Waiting:
    """A reply waiting in a client's outbox: its frames, their cost, and the request it ends (if any)."""

    frames: list
    cost: int
    ends: str | None  # the id of the request a result / cancelled / error answers for good


@dataclass(eq=False)
class _Client:
    identity: bytes
    last_seen: float
    heartbeat_timeout: float
    name: str = ""
    jobs: dict[str, _Job] = field(default_factory=dict)
    outbox: collections.deque = field(default_factory=collections.deque)  # of _Waiting
    outbox_bytes: int = 0


class Server:
    """``Server(limits).bind(address)`` then ``serve(engine)`` (blocks until ``request_stop``)."""

    def __init__(self, limits: Limits = Limits(), *, curve: CurveSetup | None = None,
                 context: zmq.Context | None = None, grace_s: float = 10.0) -> None:
        self.limits = limits
        self.codec_limits = limits.codec()
        self.curve = curve
        self.grace_s = grace_s
        self.instance = uuid.uuid4().hex
        self._ctx = context or zmq.Context()
        self._own_ctx = context is None
        self.router = self._ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 1000)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.MAXMSGSIZE, limits.max_frame_bytes)  # no legitimate frame is bigger
        self.router.setsockopt(zmq.RCVHWM, _RCVHWM)  # (before bind: pipes take the HWM when created)
        self.router.setsockopt(zmq.SNDHWM, _SNDHWM)
        self.router.setsockopt(zmq.HEARTBEAT_IVL, 2000)
        self.router.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
        self.router.setsockopt(zmq.HEARTBEAT_TTL, 6000)
        if curve is not None:
            curve.apply(self._ctx, self.router)
        self.endpoint: str | None = None
        self.engine: MotionEngine | None = None
        self.engine_info: dict[str, Any] = {}
        self.frames: FrameService | None = None
        self._clients: dict[bytes, _Client] = {}
        self._queue: collections.deque[_Job] = collections.deque()
        self._running: dict[tuple[bytes, str], _Job] = {}
        self._cv = threading.Condition()
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._workers: list[threading.Thread] = []
        self._wake_endpoint = _WAKE_ENDPOINT.format(uuid.uuid4().hex)
        self._started = time.monotonic()
        self.stats = collections.Counter()

    # -- setup ------------------------------------------------------------------------------------
    def bind(self, bind: BindAddress) -> str:
        """Bind the ROUTER; returns the real endpoint (port 0 resolved). Port in use -> UserError."""
        try:
            self.router.bind(bind.zmq_endpoint())
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EADDRINUSE:
                raise UserError(
                    f"{bind.describe()} is already in use (another backend running?)",
                    f"stop the other backend, or pass --bind tcp://{bind.host if bind.transport == 'tcp' else '127.0.0.1'}:0 "
                    "to pick a free port",
                ) from None
            raise UserError(f"cannot listen on {bind.zmq_endpoint()}: {exc}",
                            "check the address: tcp://IP:PORT of this machine, or ipc://PATH") from None
        self.endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        return self.endpoint

    def request_stop(self, *_args) -> None:
        """Begin a graceful shutdown (safe from signal handlers and other threads)."""
        self._stop.set()

    # -- main loop --------------------------------------------------------------------------------
    def serve(self, engine: MotionEngine, *, install_signals: bool = True, frames: FrameService | None = None) -> None:
        self.engine = engine
        self.engine_info = dict(engine.info())
        self.frames = frames if frames is not None else FrameService(device=str(self.engine_info.get("device", "cpu")))
        previous = {}
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self._on_signal)
        wake = self._ctx.socket(zmq.PULL)
        wake.setsockopt(zmq.LINGER, 0)
        wake.bind(self._wake_endpoint)
        concurrency = max(1, min(int(getattr(engine, "concurrency", 1) or 1), self.limits.max_queue))
        for i in range(concurrency):
            worker = threading.Thread(target=self._work, name=f"image-dynamics-worker-{i}", daemon=True)
            worker.start()
            self._workers.append(worker)
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)
        next_housekeeping = time.monotonic() + _HOUSEKEEPING_S
        try:
            while not self._stop.is_set():
                try:
                    ready = dict(poller.poll(100))
                    if self.router in ready:
                        self._receive_some()
                    if wake in ready:
                        self._drain_wake(wake)
                    self._handle_events()
                    self._flush_outboxes()
                    if time.monotonic() >= next_housekeeping:
                        self._expire_clients()
                        next_housekeeping = time.monotonic() + _HOUSEKEEPING_S
                except zmq.ZMQError as exc:
                    if exc.errno == zmq.ETERM:
                        break
                    log.error("main loop: %s\n%s", exc, traceback.format_exc())
                except Exception as exc:  # a bug: keep serving the others
                    log.error("main loop: %s\n%s", exc, traceback.format_exc())
                    time.sleep(0.01)
            self._shutdown(poller, wake)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            wake.close(linger=0)
            self.router.close(linger=1000)
            if self.curve is not None:
                self.curve.stop()
            try:
                engine.close()
            except Exception:  # pragma: no cover - best effort
                log.exception("engine close failed")
            if self._own_ctx:
                self._ctx.term()
            self._stopped.set()

    def _on_signal(self, signum, _frame) -> None:
        if self._stop.is_set():
            raise KeyboardInterrupt  # second signal: stop waiting
        log.warning("received %s: shutting down (cancelling jobs)", signal.Signals(signum).name)
        self._stop.set()

    def _shutdown(self, poller: zmq.Poller, wake: zmq.Socket) -> None:
        with self._cv:
            queued = list(self._queue)
            self._queue.clear()
            running = list(self._running.values())
            self._cv.notify_all()
        for job in queued:
            self._finish_cancelled(job, CancelReason.SHUTDOWN.value)
        for job in running:
            job.cancel_reason = CancelReason.SHUTDOWN.value
            job.cancel.set()
        end = time.monotonic() + self.grace_s
        while any(w.is_alive() for w in self._workers) and time.monotonic() < end:
            ready = dict(poller.poll(50))
            if self.router in ready:
                self._receive_some()
            if wake in ready:
                self._drain_wake(wake)
            self._handle_events()
        self._handle_events()
        self._flush_outboxes()

    def _receive_some(self, budget: int = 500) -> None:
        for _ in range(budget):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._handle_request(frames)

    @staticmethod
    def _drain_wake(wake: zmq.Socket) -> None:
        while True:
            try:
                wake.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    # -- sending ------------------------------------------------------------------------------------
    def _send(self, identity: bytes, header: dict, arrays: dict | None = None, *, reliable: bool = True) -> bool:
        header = {"protocol": PROTOCOL_VERSION, **header}
        try:
            frames = [identity, *encode(header, arrays or {})]
        except (TypeError, ValueError):  # pragma: no cover - a bug in the server, not the client
            log.exception("cannot encode a reply")
            return False
        ends = header.get("id") if header.get("op") in _FINAL_REPLIES else None
        return self._send_frames(identity, frames, reliable, ends)

    def _send_frames(self, identity: bytes, frames: list, reliable: bool, ends: str | None = None) -> bool:
        client = self._clients.get(identity)
        if client is not None and client.outbox and not self._flush(client):
            if reliable:  # keep the order: nothing overtakes a waiting reply
                self._park(client, frames, ends)
            return False
        try:
            self.router.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            self.stats["sent"] += 1
            return True
        except zmq.Again:  # the client's pipe is full: keep results, drop progress
            if reliable and client is not None:
                self._park(client, frames, ends)
            return False
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                self._client_gone(identity)
            else:  # pragma: no cover - never seen; never let one reply stop the server
                log.error("cannot send to client %s: %s", identity.hex(), exc)
            return False

    def _park(self, client: _Client, frames: list, ends: str | None) -> None:
        """Queue a reply for a client whose send queue is full, within ``max_unread_bytes``."""
        cost = sum(frame_bytes(f).nbytes for f in frames[1:]) + _OUTBOX_OVERHEAD
        if client.outbox_bytes + cost > self.limits.max_unread_bytes:
            # libzmq learns that its I/O thread drained a pipe only when the socket processes commands,
            # which sends do at most once a millisecond: ask (ZMQ_EVENTS processes them) and flush
            # first, so a burst of results to a client that does read is not taken for an unread pile
            self.router.getsockopt(zmq.EVENTS)
            self._flush(client)
        if client.outbox_bytes + cost > self.limits.max_unread_bytes:
            self._drop_unread(client, cost, ends)
            return
        client.outbox.append(_Waiting(frames, cost, ends))
        client.outbox_bytes += cost

    def _drop_unread(self, client: _Client, incoming: int, ends: str | None) -> None:
        """A client left more than ``max_unread_bytes`` of replies unread: cancel its jobs and drop those
        replies (bounding the server's memory), and leave one small error per request that lost its
        answer, so the client learns what happened whenever it reads again."""
        lost = [w.ends for w in client.outbox if w.ends is not None] + ([ends] if ends is not None else [])
        in_flight = list(client.jobs.values())
        unread = client.outbox_bytes + incoming
        log.warning("client %s (%s) left %d bytes of replies unread (limit %d): cancelling its %d job(s) and "
                    "dropping %d unread replies", client.identity.hex(), client.name or "unnamed", unread,
                    self.limits.max_unread_bytes, len(in_flight), len(client.outbox) + 1)
        self.stats["clients_dropped_unread"] += 1
        client.outbox.clear()
        client.outbox_bytes = 0
        for job in in_flight:
            self._cancel_job(job, CancelReason.CLIENT_GONE.value, notify=False)
        client.jobs.clear()  # running jobs report back later; their client no longer owns them
        # a notice ends its request too (so a later drop keeps it); the newest few are kept, which bounds
        # them for a connection that never reads (a live client has at most max_jobs_per_client jobs)
        ids = list(dict.fromkeys(lost + [job.id for job in in_flight]))[-4 * self.limits.max_jobs_per_client:]
        for rid in ids:
            header = error_header(
                ErrorCode.QUEUE_FULL,
                f"the answer to {rid!r} was dropped: this connection left {unread} bytes of replies unread (limit "
                f"{self.limits.max_unread_bytes}), so the backend cancelled its jobs",
                "read replies as they arrive (the reference client: keep calling poll() or wait()), then submit "
                "the job again",
                request_id=rid)
            frames = [client.identity, *encode(header)]
            cost = sum(len(f) for f in frames[1:]) + _OUTBOX_OVERHEAD
            client.outbox.append(_Waiting(frames, cost, rid))
            client.outbox_bytes += cost

    def _flush_outboxes(self) -> None:
        for client in list(self._clients.values()):
            if client.outbox:
                self._flush(client)

    def _flush(self, client: _Client) -> bool:
        """Send what waits in the client's outbox, in order; True once it is empty."""
        while client.outbox:
            waiting = client.outbox[0]
            try:
                self.router.send_multipart(waiting.frames, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return False
            except zmq.ZMQError:
                self._client_gone(client.identity)
                return False
            client.outbox.popleft()
            client.outbox_bytes -= waiting.cost
            self.stats["sent"] += 1
        return True

    def _send_error(self, identity: bytes, err: ProtocolError) -> None:
        self.stats["errors"] += 1
        self._send(identity, error_header(err.code, err.message, err.hint, request_id=err.request_id, extra=err.extra))

    # -- clients ------------------------------------------------------------------------------------
    def _touch(self, identity: bytes, now: float) -> _Client:
        client = self._clients.get(identity)
        if client is None:
            if len(self._clients) >= self.limits.max_clients:
                idle = sorted((c for c in self._clients.values() if not c.jobs), key=lambda c: c.last_seen)
                for c in idle[: max(1, len(self._clients) - self.limits.max_clients + 1)]:
                    del self._clients[c.identity]
            client = _Client(identity, now, self.limits.default_heartbeat_timeout_s)
            self._clients[identity] = client
        client.last_seen = now
        return client

    def _cancel_client_jobs(self, client: _Client, reason: str, *, notify: bool) -> None:
        for job in list(client.jobs.values()):
            self._cancel_job(job, reason, notify=notify)

    def _cancel_job(self, job: _Job, reason: str, *, notify: bool = True) -> None:
        with self._cv:
            queued = job.state == JobState.QUEUED.value and job in self._queue
            if queued:
                self._queue.remove(job)
        if queued:
            self._finish_cancelled(job, reason, notify=notify)
        else:  # running: the worker stops at the next step and reports back
            job.cancel_reason = reason
            job.cancel.set()

    def _client_gone(self, identity: bytes) -> None:
        client = self._clients.pop(identity, None)
        if client is None:
            return
        log.info("client %s disconnected; cancelling its %d job(s)", identity.hex(), len(client.jobs))
        self.stats["clients_gone"] += 1
        self._cancel_client_jobs(client, CancelReason.CLIENT_GONE.value, notify=False)

    def _expire_clients(self) -> None:
        now = time.monotonic()
        for client in list(self._clients.values()):
            if now - client.last_seen > client.heartbeat_timeout:
                if client.jobs:
                    log.warning("client %s silent for %.0f s: cancelling its %d job(s)", client.identity.hex(),
                                now - client.last_seen, len(client.jobs))
                    self.stats["clients_expired"] += 1
                self._cancel_client_jobs(client, CancelReason.HEARTBEAT_TIMEOUT.value, notify=True)
                self._clients.pop(client.identity, None)

    # -- requests -----------------------------------------------------------------------------------
    def _handle_request(self, frames: list) -> None:
        self.stats["received"] += 1
        identity = frames[0].bytes
        client = self._touch(identity, time.monotonic())
        try:
            msg = decode(frames[1:], self.codec_limits, SUPPORTED_VERSIONS)
            op = validate_request(msg.header)
            if op is Op.PREDICT:
                self._on_predict(client, msg.header, msg.arrays)
            elif op is Op.RENDER:
                self._on_render(client, msg.header, msg.arrays)
            elif op is Op.HELLO:
                self._on_hello(client, msg.header)
            elif op is Op.PING:
                self._send(identity, {"op": Reply.PONG.value, "id": msg.header["id"], "instance": self.instance,
                                      "time": time.time()})
            elif op is Op.STATUS:
                self._on_status(client, msg.header)
            elif op is Op.CANCEL:
                self._on_cancel(client, msg.header)
            elif op is Op.BYE:
                cancelled = len(client.jobs)  # counted first: cancelling removes the queued ones
                self._cancel_client_jobs(client, CancelReason.CLIENT.value, notify=False)
                self._send(identity, {"op": Reply.BYE.value, "id": msg.header["id"], "cancelled": cancelled})
                self._clients.pop(identity, None)
        except ProtocolError as err:
            self._send_error(identity, err)
        except Exception as exc:  # a bug: answer, log, keep serving
            log.error("error handling a request: %s\n%s", exc, traceback.format_exc())
            self._send_error(identity, ProtocolError(ErrorCode.INTERNAL_ERROR, f"{type(exc).__name__}: {str(exc)[:200]}"))

    def _on_hello(self, client: _Client, header: dict) -> None:
        hb = header.get("heartbeat_timeout_s")
        client.heartbeat_timeout = float(hb) if hb is not None else self.limits.default_heartbeat_timeout_s
        info = header.get("client") or {}
        client.name = str(info.get("name", ""))[:80]
        model = {k: v for k, v in self.engine_info.items() if k not in ("device", "engine", "max_batch", "ray")}
        self._send(client.identity, {
            "op": Reply.HELLO.value,
            "id": header["id"],
            "supported_versions": list(SUPPORTED_VERSIONS),
            "instance": self.instance,
            "server": {"name": "image-dynamics", "version": __version__, "pid": os.getpid()},
            "model": model,
            "device": self.engine_info.get("device", "cpu"),
            "engine": self.engine_info.get("engine", "unknown"),
            "batching": {"max_batch": min(int(self.engine_info.get("max_batch", 1)), self.limits.max_batch)},
            "limits": self.limits.to_wire(),
            "rendering": self.frames.info() if self.frames is not None else None,
            "heartbeat_timeout_s": client.heartbeat_timeout,
            "security": {"curve": self.curve is not None},
        })

    def _on_status(self, client: _Client, header: dict) -> None:
        with self._cv:
            queue_length = len(self._queue)
            running = len(self._running)
        self._send(client.identity, {
            "op": Reply.STATUS.value,
            "id": header["id"],
            "instance": self.instance,
            "uptime_s": round(time.monotonic() - self._started, 3),
            "queue_length": queue_length,
            "running": running,
            "clients": len(self._clients),
            "jobs_in_flight": sum(len(c.jobs) for c in self._clients.values()),
            "your_jobs": [{"id": j.id, "state": j.state, "kind": j.kind} for j in client.jobs.values()],
            "completed": self.stats["completed"],
            "failed": self.stats["failed"],
            "cancelled": self.stats["cancelled"],
        })

    def _on_cancel(self, client: _Client, header: dict) -> None:
        job = client.jobs.get(header["id"])
        if job is None:
            raise ProtocolError(ErrorCode.UNKNOWN_JOB, f"no job {header['id']!r} in flight on this connection",
                                request_id=header["id"])
        self._cancel_job(job, CancelReason.CLIENT.value)

    def _check_admission(self, client: _Client, rid: str) -> None:
        if self._stop.is_set():
            raise ProtocolError(ErrorCode.SHUTTING_DOWN, "the backend is shutting down", request_id=rid)
        if rid in client.jobs:
            raise ProtocolError(ErrorCode.DUPLICATE_JOB, f"job {rid!r} is already in flight", request_id=rid)

    def _on_predict(self, client: _Client, header: dict, arrays: dict) -> None:
        rid = header["id"]
        self._check_admission(client, rid)
        image, options = parse_predict(header, arrays, self.limits, self.engine_info.get("samplers", ()))
        self._enqueue(client, _Job(client.identity, rid, image_to_rgb_uint8(image), options, time.monotonic()))

    def _on_render(self, client: _Client, header: dict, arrays: dict) -> None:
        rid = header["id"]
        self._check_admission(client, rid)
        renderers = self.frames.renderers if self.frames is not None else ()
        image, S, coords, options = parse_render(header, arrays, self.limits, renderers)
        # copies: the received buffers belong to the message, the job outlives it
        job = _Job(client.identity, rid, image_to_rgb_uint8(image), options, time.monotonic(), kind=Op.RENDER.value,
                   volume=np.array(S), coords=None if coords is None else np.array(coords))
        self._enqueue(client, job)

    def _enqueue(self, client: _Client, job: _Job) -> None:
        rid = job.id
        if len(client.jobs) >= self.limits.max_jobs_per_client:
            raise ProtocolError(ErrorCode.QUEUE_FULL,
                                f"this connection already has {len(client.jobs)} jobs in flight (limit "
                                f"{self.limits.max_jobs_per_client})", request_id=rid)
        with self._cv:
            if len(self._queue) >= self.limits.max_queue:
                raise ProtocolError(ErrorCode.QUEUE_FULL,
                                    f"{len(self._queue)} jobs are waiting (limit {self.limits.max_queue})", request_id=rid)
            self._queue.append(job)
            position = len(self._queue) - 1
            self._cv.notify()
        client.jobs[rid] = job
        self.stats["submitted"] += 1
        self._send(client.identity, {"op": Reply.ACCEPTED.value, "id": rid, "queue_position": position,
                                     "queue_length": position + 1})

    # -- worker ---------------------------------------------------------------------------------------
    def _take_batch(self) -> list[_Job]:
        first = self._queue.popleft()
        batch = [first]
        if first.kind == Op.RENDER.value:  # rendered alone, by the FrameService
            return batch
        cap = min(int(getattr(self.engine, "max_batch", 1)), self.limits.max_batch)
        if cap > 1:
            key = first.options.batch_key()
            for job in list(self._queue):
                if len(batch) >= cap:
                    break
                if job.kind == Op.PREDICT.value and job.options.batch_key() == key:
                    self._queue.remove(job)
                    batch.append(job)
        return batch

    def _post(self, push: zmq.Socket, *event) -> None:
        self._events.put(event)
        try:
            push.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass  # the main loop drains the event queue on every pass anyway

    def _work(self) -> None:
        push = self._ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(self._wake_endpoint)
        try:
            while True:
                with self._cv:
                    while not self._queue and not self._stop.is_set():
                        self._cv.wait(0.5)
                    if self._stop.is_set():
                        return
                    batch = self._take_batch()
                    now = time.monotonic()
                    for job in batch:
                        job.state = JobState.RUNNING.value
                        job.started = now
                        self._running[(job.identity, job.id)] = job
                try:
                    self._run_batch(batch, push)
                except Exception as exc:  # pragma: no cover - a bug; fail the jobs, keep the worker
                    log.error("worker: %s\n%s", exc, traceback.format_exc())
                    for job in batch:
                        self._post(push, "failed", job, ErrorCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        finally:
            push.close(linger=0)

    def _run_render(self, job: _Job, push: zmq.Socket) -> None:
        self._post(push, "started", job)

        def progress(step, total, preview):
            job.step = step
            self._post(push, "progress", job, step, total, preview)

        assert self.frames is not None
        try:
            outcome: Any = self.frames.render(job.image, job.volume, job.coords, job.options, progress,
                                              job.cancel.is_set)
        except Exception as exc:
            outcome = exc
        job.image, job.volume, job.coords = np.empty((0, 0, 3), np.uint8), None, None  # free the inputs now
        if isinstance(outcome, JobCancelled) or (isinstance(outcome, BaseException) and job.cancel.is_set()):
            self._post(push, "cancelled", job)
        elif isinstance(outcome, EngineOutOfMemory):
            self._post(push, "failed", job, ErrorCode.OUT_OF_MEMORY, f"out of memory: {outcome}")
        elif isinstance(outcome, BaseException):
            log.error("render job %s failed: %s", job.id, "".join(traceback.format_exception(outcome)).strip())
            self._post(push, "failed", job, ErrorCode.INTERNAL_ERROR,
                       f"rendering failed: {type(outcome).__name__}: {str(outcome)[:300]}")
        else:
            self._post(push, "done", job, outcome[0], outcome[1])

    def _run_batch(self, batch: list[_Job], push: zmq.Socket) -> None:
        if batch[0].kind == Op.RENDER.value:
            self._run_render(batch[0], push)
            return
        engine_jobs = []
        for job in batch:
            self._post(push, "started", job)

            def progress(step, total, preview, job=job):
                job.step = step
                self._post(push, "progress", job, step, total, preview)

            def should_stop(job=job):
                return job.cancel.is_set()

            engine_jobs.append(EngineJob(job.image, job.options, progress, should_stop))
        assert self.engine is not None
        extras: list[dict | None] = [None] * len(batch)
        try:
            if len(engine_jobs) == 1:
                j = engine_jobs[0]
                # an engine may also say where the job ran (Ray: the replica), for the result's meta
                with_meta = getattr(self.engine, "predict_with_meta", None)
                try:
                    if with_meta is not None:
                        S, extras[0] = with_meta(j.image, j.options, j.progress, j.should_stop)
                        outcomes: list = [S]
                    else:
                        outcomes = [self.engine.predict(j.image, j.options, j.progress, j.should_stop)]
                except Exception as exc:
                    outcomes = [exc]
            else:
                outcomes = self.engine.predict_batch(engine_jobs)
        except Exception as exc:  # pragma: no cover - predict_batch itself broke
            outcomes = [exc] * len(batch)
        for job, outcome, extra in zip(batch, outcomes, extras):
            job.image = np.empty((0, 0, 3), np.uint8)  # free the photo now
            if isinstance(outcome, JobCancelled) or (isinstance(outcome, BaseException) and job.cancel.is_set()):
                self._post(push, "cancelled", job)
            elif isinstance(outcome, EngineOutOfMemory):
                self._post(push, "failed", job, ErrorCode.OUT_OF_MEMORY, f"out of memory: {outcome}")
            elif isinstance(outcome, BaseException) and getattr(outcome, "wire_code", None) is not None:
                # an engine error that names its own code and hint (Ray: no replica could run the job)
                log.error("job %s failed: %s", job.id, outcome)
                self._post(push, "failed", job, ErrorCode(outcome.wire_code), str(outcome)[:500],
                           getattr(outcome, "hint", None))
            elif isinstance(outcome, BaseException):
                log.error("job %s failed: %s", job.id, "".join(traceback.format_exception(outcome)).strip())
                self._post(push, "failed", job, ErrorCode.INTERNAL_ERROR,
                           f"the model failed: {type(outcome).__name__}: {str(outcome)[:300]}")
            else:
                self._post(push, "done", job, outcome, extra)

    # -- worker events (main thread) ------------------------------------------------------------------
    def _handle_events(self, budget: int = 10_000) -> None:
        for _ in range(budget):
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            kind, job = event[0], event[1]
            if kind == "started":
                total = job.total or job.options.steps or int(self.engine_info.get("default_steps", 0))
                self._send_progress(job, 0, total, None)
            elif kind == "progress":
                self._send_progress(job, event[2], event[3], event[4])
            else:
                with self._cv:
                    self._running.pop((job.identity, job.id), None)
                if kind == "done" and job.kind == Op.RENDER.value:
                    self._finish_render(job, event[2], event[3])
                elif kind == "done":
                    self._finish_done(job, event[2], event[3] if len(event) > 3 else None)
                elif kind == "cancelled":
                    self._finish_cancelled(job, job.cancel_reason)
                elif kind == "failed":
                    self._finish_failed(job, event[2], event[3], event[4] if len(event) > 4 else None)

    def _live(self, job: _Job) -> _Client | None:
        """The job's client, if it is still connected and still owns this job."""
        client = self._clients.get(job.identity)
        if client is None or client.jobs.get(job.id) is not job:
            return None
        return client

    def _send_progress(self, job: _Job, step: int, total: int, preview) -> None:
        if self._live(job) is None or job.cancel.is_set():
            return
        header = {"op": Reply.PROGRESS.value, "id": job.id, "state": JobState.RUNNING.value, "step": int(step),
                  "total": int(total), "fraction": round(step / total, 6) if total else 0.0}
        self._send(job.identity, header, {"preview": preview} if preview is not None else None, reliable=False)

    def _forget(self, job: _Job) -> _Client | None:
        client = self._live(job)
        if client is not None:
            del client.jobs[job.id]
        return client

    def _finish_done(self, job: _Job, S: np.ndarray, extra_meta: dict | None = None) -> None:
        self.stats["completed"] += 1
        client = self._forget(job)
        if client is None:
            return
        info = self.engine_info
        fps, num_frames = float(info.get("fps", 30.0)), int(info.get("num_frames", 150))
        now = time.monotonic()
        opts = job.options
        meta = {
            "model": info.get("name", ""),
            "untrained_test_model": bool(info.get("untrained_test_model", False)),
            "device": info.get("device", ""),
            "seed": opts.seed,
            "steps": opts.steps if opts.steps is not None else info.get("default_steps"),
            "guidance": opts.guidance if opts.guidance is not None else info.get("default_guidance"),
            "loop_frames": opts.loop_frames,
            "size": [int(S.shape[3]), int(S.shape[2])],
            "sampler": opts.sampler if opts.sampler is not None else info.get("default_sampler"),
        }
        if extra_meta:
            meta.update({k: v for k, v in extra_meta.items() if k not in meta})
        header = {
            "op": Reply.RESULT.value,
            "id": job.id,
            "fps": fps,
            "num_frames": num_frames,
            "freqs_hz": [k * fps / num_frames for k in range(S.shape[0])],
            "source": "predict",
            "meta": meta,
            "elapsed_s": round(now - job.started, 4),
            "queued_s": round(job.started - job.submitted, 4),
        }
        self._send(job.identity, header, {"S": S})

    def _finish_render(self, job: _Job, frames: np.ndarray, meta: dict) -> None:
        self.stats["completed"] += 1
        client = self._forget(job)
        if client is None:
            return
        now = time.monotonic()
        header = {
            "op": Reply.RESULT.value,
            "id": job.id,
            "fps": job.options.fps,
            "renderer": meta.get("renderer", ""),
            "meta": meta,
            "elapsed_s": round(now - job.started, 4),
            "queued_s": round(job.started - job.submitted, 4),
        }
        self._send(job.identity, header, {"frames": frames})

    def _finish_cancelled(self, job: _Job, reason: str, *, notify: bool = True) -> None:
        self.stats["cancelled"] += 1
        client = self._forget(job)
        if client is not None and notify:
            self._send(job.identity, {"op": Reply.CANCELLED.value, "id": job.id, "reason": reason, "step": job.step})
        elif notify and reason == CancelReason.HEARTBEAT_TIMEOUT.value:
            # the client record is gone already; tell it anyway in case it is only slow
            self._send(job.identity, {"op": Reply.CANCELLED.value, "id": job.id, "reason": reason, "step": job.step})

    def _finish_failed(self, job: _Job, code: ErrorCode, message: str, hint: str | None = None) -> None:
        self.stats["failed"] += 1
        client = self._forget(job)
        if client is not None:
            self._send(job.identity, error_header(code, message, hint, request_id=job.id))
