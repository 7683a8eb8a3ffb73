"""``BackendClient``: talk to ``image-dynamics serve`` (standard library + numpy + pyzmq only).

Two ways to use it::

    # scripts: blocking
    with BackendClient("tcp://127.0.0.1:5555") as client:
        info = client.hello()
        result = client.predict(image, seed=1, steps=25, size=(256, 160), progress=print)
        result.S            # complex64 (K, 2, H, W), as in the canonical spectral-volume file

    # rendered frames of a photo and its motion: uint8 (N, H, W, 3)
    frames = client.render_frames(image, result.S, frames=90, fps=30, loop=True).frames

    # Blender: non-blocking; a timer calls job.poll() (or client.poll()) and returns at once
    job = client.submit(image, seed=1)          # or client.submit_render(image, S, frames=90)
    status = job.poll()     # JobStatus(state='queued'|'running'|'done'|'failed'|'cancelled', progress, ...)
    job.cancel()

One client = one DEALER socket; use it from one thread only (make one client per thread).

Heartbeats and restarts. The hello request declares ``heartbeat_timeout_s``: the backend cancels
the jobs of a client it has not heard from for that long. While jobs are in flight the client
pings every ``ping_interval`` seconds (from ``poll``), so keep calling ``poll`` (Blender timers
do). Every pong and hello reply carries the backend's ``instance`` id. A new instance means the
backend restarted: jobs in flight fail with ``backend_restarted``; a backend that stops answering
pings for ``timeout`` seconds fails them with ``backend_unreachable``. Either way the client
opens a new DEALER socket and says hello again by itself, so the next request just works.
A connection that drops and comes back (ZeroMQ reconnects by itself) is a new connection to the
backend, which forgets the jobs of the old one: the client asks for ``status`` at once, and when it
shows the same instance, the jobs it does not list fail with ``backend_unreachable`` (retryable). The backend's ZeroMQ drops a connection that sends a
frame over its size limit; after ``hello`` the client refuses such a request before sending it
(``too_large``), from the limits in the hello reply.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from .codec import CodecLimits, decode, encode, frame_bytes
from .messages import (
    DEFAULT_ADDRESS,
    DEFAULT_HINTS,
    PROTOCOL_VERSION,
    RETRYABLE,
    ErrorCode,
    JobState,
    Op,
    ProtocolError,
    Reply,
)

__all__ = ["BackendClient", "BackendError", "Job", "JobStatus", "PredictResult", "RenderResult", "load_public_key",
           "load_key_pair"]

ProgressCallback = Callable[[int, int, "np.ndarray | None"], None]
_TERMINAL = (JobState.DONE.value, JobState.FAILED.value, JobState.CANCELLED.value)


class BackendError(Exception):
    """A request failed: ``code`` (an ``ErrorCode`` value), ``message``, ``hint`` a user can act on."""

    def __init__(self, code: str, message: str, hint: str | None = None, *, retryable: bool | None = None,
                 job_id: str | None = None, header: dict | None = None) -> None:
        super().__init__(message)
        self.code = code.value if isinstance(code, ErrorCode) else str(code)
        self.message = message
        try:
            known = ErrorCode(self.code)
        except ValueError:
            known = None
        self.hint = hint if hint is not None else (DEFAULT_HINTS.get(known, "") if known else "")
        self.retryable = retryable if retryable is not None else (known in RETRYABLE if known else False)
        self.job_id = job_id
        self.header = header or {}

    @classmethod
    def from_header(cls, header: dict) -> "BackendError":
        return cls(str(header.get("code") or "internal_error"), str(header.get("message") or "unknown error"),
                   header.get("hint") if isinstance(header.get("hint"), str) else None,
                   retryable=header.get("retryable") if isinstance(header.get("retryable"), bool) else None,
                   job_id=header.get("id"), header=header)

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


@dataclass
class PredictResult:
    """A predicted spectral volume plus the facts of the canonical file."""

    S: np.ndarray  # complex64 (K, 2, H, W)
    fps: float
    num_frames: int
    freqs_hz: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    job_id: str = ""

    def save(self, path: str | os.PathLike, image: np.ndarray | None = None) -> None:
        """Write the canonical spectral-volume ``.npz`` (plain arrays, no pickle)."""
        arrays = {
            "S": self.S.astype(np.complex64),
            "freqs_hz": np.asarray(self.freqs_hz, dtype=np.float32),
            "fps": np.float32(self.fps),
            "num_frames": np.int32(self.num_frames),
            "source": np.array("predict"),
            "meta_json": np.array(json.dumps(self.meta, sort_keys=True)),
        }
        if image is not None:
            arrays["image"] = np.asarray(image, dtype=np.uint8)
        np.savez_compressed(path, **arrays)


@dataclass
class RenderResult:
    """Rendered frames of a render job."""

    frames: np.ndarray  # uint8 (N, H, W, 3), row 0 the top
    fps: float
    renderer: str
    meta: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    job_id: str = ""


@dataclass(frozen=True)
class JobStatus:
    state: str  # queued / running / done / failed / cancelled
    progress: float  # 0..1
    step: int
    total: int
    result: PredictResult | RenderResult | None = None
    error: BackendError | None = None
    preview: np.ndarray | None = None
    queue_position: int | None = None

    @property
    def done(self) -> bool:
        return self.state in _TERMINAL


class Job:
    """One predict or render request (``kind``). ``poll()`` never blocks; ``wait()`` does."""

    def __init__(self, client: "BackendClient", job_id: str, on_progress: ProgressCallback | None,
                 deadline: float | None, kind: str = "predict") -> None:
        self._client = client
        self.id = job_id
        self.kind = kind
        self.on_progress = on_progress
        self.deadline = deadline
        self.state = JobState.QUEUED.value
        self.step = 0
        self.total = 0
        self.queue_position: int | None = None
        self.preview: np.ndarray | None = None
        self.result: PredictResult | RenderResult | None = None
        self.error: BackendError | None = None
        self.cancel_reason: str | None = None
        self.cancel_requested = False
        self.accepted = False  # the backend answered (accepted, progress or result): it has the job

    @property
    def done(self) -> bool:
        return self.state in _TERMINAL

    @property
    def progress(self) -> float:
        if self.state == JobState.DONE.value:
            return 1.0
        return self.step / self.total if self.total else 0.0

    def status(self) -> JobStatus:
        return JobStatus(self.state, self.progress, self.step, self.total, self.result, self.error, self.preview,
                         self.queue_position)

    def poll(self) -> JobStatus:
        """Process whatever arrived (for every job of the client) and return this job's status."""
        if not self.done:
            self._client.poll(0)
        return self.status()

    def cancel(self) -> None:
        """Ask the backend to stop this job; it ends in state 'cancelled' (or 'done' if it won the race)."""
        if self.done or self.cancel_requested:
            return
        self.cancel_requested = True
        self._client._send_quiet({"op": Op.CANCEL.value, "id": self.id})

    def wait(self, timeout: float | None = None) -> PredictResult | RenderResult:
        """Block until the job ends; returns the result or raises ``BackendError``.

        Without ``timeout`` this still ends: a live backend answers every job it was sent (an error
        carries the job id), and a silent backend or a dropped connection fails the job (see the
        module docstring)."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            left = 0.1 if end is None else min(0.1, end - time.monotonic())
            if left <= 0:
                raise BackendError(ErrorCode.TIMEOUT, f"job {self.id} did not finish within {timeout:g} s", job_id=self.id)
            self._client.poll(left)
        if self.state == JobState.DONE.value:
            assert self.result is not None
            return self.result
        if self.state == JobState.CANCELLED.value:
            raise BackendError(ErrorCode.CANCELLED, f"job {self.id} was cancelled ({self.cancel_reason})", job_id=self.id)
        assert self.error is not None
        raise self.error

    # -- driven by the client ----------------------------------------------------------------
    def _fail(self, error: BackendError) -> None:
        if not self.done:
            self.error = error
            self.state = JobState.FAILED.value

    def _succeed(self, result: PredictResult | RenderResult) -> None:
        self.result = result
        if self.total:
            self.step = self.total
        self.state = JobState.DONE.value

    def _handle(self, header: dict, arrays: dict[str, np.ndarray]) -> None:
        op = header.get("op")
        if op in (Reply.ACCEPTED.value, Reply.PROGRESS.value, Reply.RESULT.value):
            self.accepted = True
        if op == Reply.ACCEPTED.value:
            qp = header.get("queue_position")
            self.queue_position = qp if isinstance(qp, int) else None
        elif op == Reply.PROGRESS.value:
            self.state = JobState.RUNNING.value
            self.step = int(header.get("step") or 0)
            self.total = int(header.get("total") or 0)
            self.queue_position = None
            if "preview" in arrays:
                self.preview = np.array(arrays["preview"])
            if self.on_progress is not None:
                self.on_progress(self.step, self.total, self.preview)
        elif op == Reply.RESULT.value and self.kind == "render":
            frames = arrays.get("frames")
            if frames is None or frames.dtype != np.uint8 or frames.ndim != 4:
                self._fail(BackendError(ErrorCode.INTERNAL_ERROR, "render result without uint8 'frames'", job_id=self.id))
                return
            self._succeed(RenderResult(
                frames=np.array(frames),
                fps=float(header.get("fps", 30.0)),
                renderer=str(header.get("renderer", "")),
                meta=header.get("meta") if isinstance(header.get("meta"), dict) else {},
                elapsed_s=float(header.get("elapsed_s", 0.0)),
                job_id=self.id,
            ))
        elif op == Reply.RESULT.value:
            if "S" not in arrays:
                self._fail(BackendError(ErrorCode.INTERNAL_ERROR, "result without the array 'S'", job_id=self.id))
                return
            self._succeed(PredictResult(
                S=np.array(arrays["S"], dtype=np.complex64),
                fps=float(header.get("fps", 30.0)),
                num_frames=int(header.get("num_frames", 150)),
                freqs_hz=np.asarray(header.get("freqs_hz", []), dtype=np.float32),
                meta=header.get("meta") if isinstance(header.get("meta"), dict) else {},
                elapsed_s=float(header.get("elapsed_s", 0.0)),
                job_id=self.id,
            ))
        elif op == Reply.CANCELLED.value:
            self.cancel_reason = str(header.get("reason", "client"))
            self.state = JobState.CANCELLED.value
        elif op == Reply.ERROR.value:
            self._fail(BackendError.from_header(header))


def _image_array(image: np.ndarray) -> np.ndarray:
    """The photo as sent: uint8 as it is, other numbers as float32."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        if img.dtype.kind not in "fiu":
            raise TypeError(f"image must be uint8 or float, got {img.dtype}")
        img = img.astype(np.float32)
    return img


def _wait_or_cancel(job: Job) -> Any:
    """``job.wait()``; the job is cancelled if that raises (a timeout, Ctrl-C, a lost backend)."""
    try:
        return job.wait()
    except BaseException:
        job.cancel()
        raise


def _as_key(value: str | bytes) -> bytes:
    return value.encode("ascii") if isinstance(value, str) else bytes(value)


def load_public_key(value: str | bytes | os.PathLike) -> bytes:
    """A Z85 public key (40 characters), or a path to a key file written by ``image-dynamics keys``."""
    if isinstance(value, (str, bytes)) and len(value) == 40 and not os.path.exists(os.fsdecode(value)):
        return _as_key(value)
    import zmq.auth

    public, _ = zmq.auth.load_certificate(os.fspath(value))
    return public


def load_key_pair(value: tuple | str | os.PathLike) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys, or a path to a ``.key_secret`` file."""
    if isinstance(value, tuple):
        return _as_key(value[0]), _as_key(value[1])
    import zmq.auth

    public, secret = zmq.auth.load_certificate(os.fspath(value))
    if not secret:
        raise ValueError(f"{os.fspath(value)} holds no secret key (pass the .key_secret file)")
    return public, secret


class BackendClient:
    """A connection to one backend. See the module docstring."""

    def __init__(self, address: str | None = None, *, server_public_key=None, client_keys=None,
                 timeout: float = 10.0, heartbeat_timeout: float = 60.0, ping_interval: float | None = None,
                 client_name: str = "image-dynamics-client", context: zmq.Context | None = None) -> None:
        self.timeout = float(timeout)
        self.heartbeat_timeout = float(heartbeat_timeout)
        self.ping_interval = float(ping_interval) if ping_interval else min(5.0, self.heartbeat_timeout / 4.0)
        self.client_name = client_name
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._address: str | None = None
        self._server_key: bytes | None = None
        self._client_keys: tuple[bytes, bytes] | None = None
        self._prefix = uuid.uuid4().hex[:8]
        self._counter = itertools.count(1)
        self._jobs: dict[str, Job] = {}
        self._replies: dict[str, dict | BackendError | None] = {}
        self._auto_hello: str | None = None
        self._last_ping = 0.0
        self._ping_outstanding_since: float | None = None
        self._reconnect_probe: str | None = None  # the status request sent when the connection came back
        self._cut_off: dict[str, Job] = {}  # jobs sent on a connection that dropped
        self._connected_once = False
        self._limits = CodecLimits(max_message_bytes=2**40)
        self.server_info: dict[str, Any] | None = None
        self.instance: str | None = None
        self.last_unrouted_error: dict | None = None
        self.reconnects = 0
        if address is not None:
            self.connect(address, server_public_key=server_public_key, client_keys=client_keys)

    # -- connection ---------------------------------------------------------------------------
    def connect(self, address: str = DEFAULT_ADDRESS, server_public_key=None, client_keys=None) -> "BackendClient":
        """Connect (lazily: nothing is sent yet). With ``server_public_key`` the connection uses
        CurveZMQ; ``client_keys`` is this client's (public, secret) pair or its .key_secret file
        (a fresh throwaway pair is made if omitted, which a server with an allow-list refuses)."""
        self._address = address
        self._server_key = load_public_key(server_public_key) if server_public_key is not None else None
        if self._server_key is not None:
            self._client_keys = load_key_pair(client_keys) if client_keys is not None else zmq.curve_keypair()
        else:
            self._client_keys = None
        self._open_socket()
        return self

    def _open_socket(self) -> None:
        self._close_socket()
        if self._address is None:
            raise BackendError(ErrorCode.BACKEND_UNREACHABLE, "the client is not connected", "call connect(address) first")
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        sock.setsockopt(zmq.HEARTBEAT_IVL, 2000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
        if self._server_key is not None:
            assert self._client_keys is not None
            sock.curve_serverkey = self._server_key
            sock.curve_publickey, sock.curve_secretkey = self._client_keys
        self._monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        sock.connect(self._address)
        self._sock = sock
        self._connected_once = False
        self._ping_outstanding_since = None

    def _close_socket(self, linger_ms: int = 0) -> None:
        if self._sock is not None:
            try:
                self._sock.disable_monitor()
            except zmq.ZMQError:
                pass
            if self._monitor is not None:
                self._monitor.close(linger=0)
            self._sock.close(linger=linger_ms)
        self._sock = None
        self._monitor = None

    def close(self) -> None:
        """Say bye (the backend cancels this client's jobs and forgets it) and close the socket."""
        if self._sock is not None:
            self._send_quiet({"op": Op.BYE.value, "id": self._new_id("bye")})
            self._close_socket(linger_ms=200)  # returns at once; the bye leaves in the background

    def __enter__(self) -> "BackendClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sending --------------------------------------------------------------------------------
    def _new_id(self, kind: str) -> str:
        return f"{kind}-{self._prefix}-{next(self._counter)}"

    def _send(self, header: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
        self._send_frames(encode({"protocol": PROTOCOL_VERSION, **header}, arrays or {}))

    def _send_frames(self, frames: list) -> None:
        if self._sock is None:
            raise BackendError(ErrorCode.BACKEND_UNREACHABLE, "the client is not connected", "call connect(address) first")
        try:
            self._sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            raise BackendError(ErrorCode.BACKEND_UNREACHABLE, "cannot send to the backend: its send queue is full") from None

    def _check_size(self, frames: list, job_id: str) -> None:
        """Refuse a request over the limits of the last hello reply before sending it: the backend
        answers a too-big message with too_large, but its ZeroMQ drops the connection on a frame over
        max_message_bytes, and either way the bytes would cross the wire for nothing."""
        limits = (self.server_info or {}).get("limits")
        if not isinstance(limits, dict):
            return  # no hello yet (or a backend that reports none): the backend checks
        header_bytes = frame_bytes(frames[0]).nbytes
        total = header_bytes + sum(frame_bytes(f).nbytes for f in frames[1:])
        for size, name, what in ((header_bytes, "max_header_bytes", "header"),
                                 (total, "max_message_bytes", "request (header and arrays)")):
            limit = limits.get(name)
            if isinstance(limit, int) and not isinstance(limit, bool) and size > limit:
                raise BackendError(
                    ErrorCode.TOO_LARGE,
                    f"job {job_id} was not sent: its {what} is {size} bytes, over the backend's limit of {limit} "
                    f"bytes ({name} in its hello reply)",
                    "downscale the photo (uint8 RGB is a quarter of float32 RGBA) or send a smaller volume; the "
                    "backend's --max-message-mb flag raises the limit",
                    job_id=job_id)

    def _send_quiet(self, header: dict) -> None:
        try:
            self._send(header)
        except BackendError:
            pass

    def _request(self, op: Op, extra: dict | None = None, timeout: float | None = None) -> dict:
        request_id = self._new_id(op.value)
        self._replies[request_id] = None
        try:
            self._send({"op": op.value, "id": request_id, **(extra or {})})
            timeout = self.timeout if timeout is None else float(timeout)
            end = time.monotonic() + timeout
            while self._replies.get(request_id) is None:
                left = end - time.monotonic()
                if left <= 0:
                    raise BackendError(ErrorCode.TIMEOUT, f"no answer to {op.value} from {self._address} within {timeout:g} s")
                self.poll(min(left, 0.1))
            reply = self._replies[request_id]
        finally:
            self._replies.pop(request_id, None)
        if isinstance(reply, BackendError):
            raise reply
        assert isinstance(reply, dict)
        return reply

    def _hello_fields(self) -> dict:
        return {"client": {"name": self.client_name, "protocol": PROTOCOL_VERSION},
                "heartbeat_timeout_s": self.heartbeat_timeout}

    def hello(self, timeout: float | None = None) -> dict:
        """Handshake: returns the backend's hello reply (model, device, engine, limits, ...)."""
        reply = self._request(Op.HELLO, self._hello_fields(), timeout)
        self._note_instance(reply.get("instance"))
        self.server_info = reply
        return reply

    def ping(self, timeout: float | None = None) -> dict:
        reply = self._request(Op.PING, None, timeout)
        return reply

    def status(self, timeout: float | None = None) -> dict:
        return self._request(Op.STATUS, None, timeout)

    def submit(self, image: np.ndarray, *, seed: int = 0, steps: int | None = None, guidance: float | None = None,
               loop_frames: int | None = None, size: tuple[int, int] | None = None, sampler: str | None = None,
               preview: bool = False, progress: ProgressCallback | None = None, timeout: float | None = None,
               job_id: str | None = None) -> Job:
        """Send a predict request; returns a ``Job`` at once. ``image``: (H, W, 3) uint8 RGB (or
        float32 0..1, or 4 / 1 channels), row 0 at the top. ``size``: (width, height) of the output.
        ``timeout``: the job fails with 'timeout' (and is cancelled) if not done by then."""
        img = _image_array(image)
        options: dict[str, Any] = {"seed": int(seed)}
        if steps is not None:
            options["steps"] = int(steps)
        if guidance is not None:
            options["guidance"] = float(guidance)
        if loop_frames is not None:
            options["loop_frames"] = int(loop_frames)
        if size is not None:
            options["size"] = [int(size[0]), int(size[1])]
        if sampler is not None:
            options["sampler"] = str(sampler)
        if preview:
            options["preview"] = True
        return self._start_job(Op.PREDICT, job_id or self._new_id("job"), options, {"image": img}, progress, timeout,
                               "predict")

    def predict(self, image: np.ndarray, *, progress: ProgressCallback | None = None, timeout: float | None = None,
                **options) -> PredictResult:
        """Blocking predict: returns the ``PredictResult`` or raises ``BackendError``."""
        job = self.submit(image, progress=progress, timeout=timeout, **options)
        return _wait_or_cancel(job)

    def submit_render(self, image: np.ndarray, S: np.ndarray, *, frames: int | None = None, fps: float | None = None,
                      loop: bool = False, magnify: float | None = None, speed: float | None = None,
                      renderer: str | None = None, coords: np.ndarray | None = None,
                      volume_fps: float | None = None, volume_num_frames: int | None = None,
                      progress: ProgressCallback | None = None, timeout: float | None = None,
                      job_id: str | None = None) -> Job:
        """Send a render request; returns a ``Job`` at once (its result a ``RenderResult``).

        ``image``: the photo as for ``submit`` (the frames have its size); ``S``: the spectral
        volume (K, 2, h, w), resampled by the backend to the photo's size if it differs. Either
        ``frames`` (+ ``fps``, ``speed``, ``loop``: the backend times the clip) or ``coords``
        (frames, K) complex: the modal coordinates of each frame, D = magnify * Re(sum_k S_k q_k).
        ``volume_fps`` / ``volume_num_frames``: the volume's own clock (default 30 / 150)."""
        img = _image_array(image)
        options: dict[str, Any] = {}
        for name, value, cast in (("frames", frames, int), ("fps", fps, float), ("magnify", magnify, float),
                                  ("speed", speed, float), ("renderer", renderer, str),
                                  ("volume_fps", volume_fps, float), ("volume_num_frames", volume_num_frames, int)):
            if value is not None:
                options[name] = cast(value)
        if loop:
            options["loop"] = True
        arrays = {"image": img, "S": np.asarray(S, dtype=np.complex64)}
        if coords is not None:
            arrays["coords"] = np.asarray(coords, dtype=np.complex64)
        return self._start_job(Op.RENDER, job_id or self._new_id("render"), options, arrays, progress, timeout,
                               "render")

    def _start_job(self, op: Op, job_id: str, options: dict, arrays: dict[str, np.ndarray],
                   progress: ProgressCallback | None, timeout: float | None, kind: str) -> Job:
        job = Job(self, job_id, progress, None if timeout is None else time.monotonic() + float(timeout), kind=kind)
        frames = encode({"protocol": PROTOCOL_VERSION, "op": op.value, "id": job_id, "options": options}, arrays)
        self._check_size(frames, job_id)
        self._send_frames(frames)
        self._jobs[job_id] = job
        if self._last_ping == 0.0:
            self._last_ping = time.monotonic()
        return job

    def render_frames(self, image: np.ndarray, S: np.ndarray, *, progress: ProgressCallback | None = None,
                      timeout: float | None = None, **options) -> RenderResult:
        """Blocking render: returns the ``RenderResult`` or raises ``BackendError`` (see ``submit_render``)."""
        job = self.submit_render(image, S, progress=progress, timeout=timeout, **options)
        return _wait_or_cancel(job)

    @property
    def jobs_in_flight(self) -> list[Job]:
        return list(self._jobs.values())

    # -- receiving --------------------------------------------------------------------------------
    def poll(self, timeout: float = 0.0) -> int:
        """Handle everything that arrived (waiting up to ``timeout`` seconds for the first message),
        send heartbeats, check deadlines. Never blocks longer than ``timeout``. Returns the number
        of messages handled."""
        if self._sock is None:
            return 0
        handled = 0
        self._check_monitor()
        wait_ms = max(0, int(timeout * 1000))
        while self._sock is not None and self._sock.poll(wait_ms, zmq.POLLIN):
            wait_ms = 0
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            handled += 1
            self._dispatch(frames)
            if handled >= 10_000:
                break
        self._housekeeping()
        return handled

    def _check_monitor(self) -> None:
        while self._monitor is not None and self._monitor.poll(0, zmq.POLLIN):
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            kind = event.get("event")
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                if self._connected_once and (self._jobs or self.instance is not None):
                    # A reconnection: the backend may have restarted. Ask at once (the reply's
                    # instance says). Either way it sees a new connection and has forgotten the jobs
                    # sent on the old one (a request that made its ZeroMQ drop the connection was
                    # never read at all); status lists the jobs it has on the new one.
                    self._cut_off.update(self._jobs)
                    self._reconnect_probe = self._send_ping(Op.STATUS)
                self._connected_once = True

    def _send_ping(self, op: Op = Op.PING) -> str:
        now = time.monotonic()
        self._last_ping = now
        if self._ping_outstanding_since is None:
            self._ping_outstanding_since = now
        request_id = self._new_id(op.value)
        self._send_quiet({"op": op.value, "id": request_id})
        return request_id

    def _fail_cut_off(self, alive: set) -> None:
        """The backend answered on the new connection with the same instance: the jobs sent on the old
        connection will never be answered. Fail them (retryable), but not those it lists in ``alive``
        (sent while disconnected, they went out on the new connection)."""
        for job in self._cut_off.values():
            if job.done or job.id in alive:
                continue
            if job.accepted:
                message = (f"the connection to the backend dropped while job {job.id} was in flight; the backend "
                           "cancels the jobs of a closed connection")
            else:
                message = (f"the connection to the backend dropped before job {job.id} was accepted, so the backend "
                           "never got it (its ZeroMQ drops the connection of a request over its max_message_bytes)")
            job._fail(BackendError(ErrorCode.BACKEND_UNREACHABLE, message,
                                   "submit the job again; if it fails again before being accepted, send a smaller "
                                   "photo or volume", job_id=job.id))
            self._jobs.pop(job.id, None)
        self._cut_off.clear()

    def _housekeeping(self) -> None:
        now = time.monotonic()
        for job in list(self._jobs.values()):
            if job.deadline is not None and now > job.deadline and not job.done:
                job.cancel()
                job._fail(BackendError(ErrorCode.TIMEOUT, f"job {job.id} did not finish in time", job_id=job.id))
            if job.done:
                self._jobs.pop(job.id, None)
        if not self._jobs and self._auto_hello is None:
            self._ping_outstanding_since = None
            return
        if now - self._last_ping >= self.ping_interval:
            self._send_ping()
        if self._ping_outstanding_since is not None and now - self._ping_outstanding_since > self.timeout:
            self._backend_lost(BackendError(
                ErrorCode.BACKEND_UNREACHABLE,
                f"the backend at {self._address} has not answered for {self.timeout:g} s; its jobs are lost"))

    def _backend_lost(self, error: BackendError) -> None:
        for job in list(self._jobs.values()):
            job._fail(BackendError(error.code, error.message, error.hint, job_id=job.id))
        self._jobs.clear()
        self._cut_off.clear()
        self._reconnect_probe = None
        self.reconnects += 1
        self._open_socket()
        self._auto_hello = self._new_id("hello")
        self._send_ping()
        self._send_quiet({"op": Op.HELLO.value, "id": self._auto_hello, **self._hello_fields()})

    def _note_instance(self, instance: Any) -> None:
        if not isinstance(instance, str):
            return
        if self.instance is not None and instance != self.instance:
            self.instance = instance
            if self._jobs:
                self._backend_lost(BackendError(
                    ErrorCode.BACKEND_RESTARTED,
                    "the backend restarted and lost the jobs in flight"))
            else:
                self._auto_hello = None
        self.instance = instance

    def _dispatch(self, frames) -> None:
        try:
            msg = decode(frames, self._limits)
        except ProtocolError:
            return  # not for us to answer; a broken reply is dropped
        header, arrays = msg.header, msg.arrays
        op, rid = header.get("op"), header.get("id")
        self._ping_outstanding_since = None  # anything from the backend proves it is alive
        if rid is not None and rid == self._reconnect_probe:
            self._reconnect_probe = None
            self._note_instance(header.get("instance"))  # a restart fails every job first
            jobs = header.get("your_jobs") if op == Reply.STATUS.value else None
            self._fail_cut_off({j.get("id") for j in jobs if isinstance(j, dict)} if isinstance(jobs, list) else set())
            return
        if op == Reply.PONG.value:
            self._note_instance(header.get("instance"))
            if rid in self._replies:
                self._replies[rid] = header
            return
        if op == Reply.HELLO.value:
            if rid is not None and rid == self._auto_hello:
                self._auto_hello = None
                self.server_info = header
                self._note_instance(header.get("instance"))
                return
        if rid in self._replies:
            self._replies[rid] = BackendError.from_header(header) if op == Reply.ERROR.value else header
            return
        job = self._jobs.get(rid) if isinstance(rid, str) else None
        if job is not None:
            job._handle(header, arrays)
            if job.done:
                self._jobs.pop(job.id, None)
        elif op == Reply.ERROR.value:  # an error about a message whose id could not be read (or a past job)
            self.last_unrouted_error = header
