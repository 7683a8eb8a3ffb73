"""Jobs on the backend (predictions here, frame renders in ``frame_render``): the client, the
jobs, and the one poll step that takes them from the click to the result.

Blender's UI thread never waits for the backend. ``submit_prediction`` reads the photo and returns
at once with a ``Pending`` job, which ``poll_jobs()`` (the poll step) then moves through:

1. ``starting``   - the add-on's local backend is still loading its model (Start a Local Backend);
2. ``connecting`` - a worker thread (``Connect``) probes the address and says hello: DNS, a TCP
   connect and a ZeroMQ hello can each take seconds;
3. ``queued`` / ``running`` - the request was sent; ``job.poll()`` reports progress;
4. ``waiting``    - the result arrived while the plane is in Edit Mode; it is applied once the
   plane is back in Object Mode.

At the end the result is applied to its plane in one step (``motion.apply_volume``) or a message
says why not. Nothing touches the scene before that, so a failed or cancelled prediction leaves it
exactly as it was. Jobs and messages are keyed by the plane's ``session_uid``: it survives
renames, and a new object that takes an old name gets a new one. In Blender's UI a
``bpy.app.timers`` function calls ``poll_jobs``; timers never fire in background mode or in the
``bpy`` module, so scripts and tests call it directly (and ``watch_step`` for the local backend).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import bpy
import numpy as np

from . import backend_process, motion
from .core import errors, imaging, jobs, volume_io
from .preferences import get_prefs

POLL_INTERVAL = 0.2
WATCH_INTERVAL = 0.5

# The generic too_large sentence names only the motion resolution; a prediction's photo can be the
# cause too (the image limit, or the request's size).
TOO_LARGE_MESSAGE = ("The photo or the requested motion is too large for this backend ({message}): lower Photo "
                     "Size Sent in the add-on preferences, or Motion Resolution in the Predict Motion panel.")

_CLIENTS: dict[str, object] = {}
LAST_HELLO_TEXT = ""
LAST_HELLO_LEVEL = "INFO"
CHECK: "Connect | None" = None  # Test Connection in flight
_CONNECTS: list["Connect"] = []  # worker threads started and not known to have ended


class PredictionError(Exception):
    """A job could not start or failed: ``code`` for ``core.errors``, ``text`` to show."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass
class Pending:
    """One job of a plane, from the click to its result (see the module docstring)."""

    key: int  # the plane's session_uid
    object_name: str  # its name at the click (for messages)
    launch: Callable  # (client, hello info, pending) -> Job: sends the request
    local: bool  # runs on (or waits for) the add-on's local backend
    timeout: float
    address: str | None = None  # None while the local backend starts
    photo: np.ndarray | None = None  # (H, W, 3) uint8 sent, top row first (predictions)
    job: object | None = None
    connect: "Connect | None" = None
    result: object | None = None  # arrived, not applied yet (the plane is in Edit Mode)
    note: str = ""  # added to the success message
    started: float = field(default_factory=time.monotonic)
    progress: float = 0.0
    state: str = "connecting"

    def abort(self) -> None:
        """Stop local work the job started after its result arrived (frame renders write files
        on a thread); called whenever the job is dropped before it completes."""


PENDING: dict[int, Pending] = {}
MESSAGES: dict[int, tuple[str, str]] = {}  # plane session_uid -> (level 'INFO'/'ERROR', text)


def plane_key(obj) -> int:
    return obj.session_uid


def pending_for(obj, table: dict | None = None):
    return (PENDING if table is None else table).get(obj.session_uid) if obj is not None else None


def message_for(obj, messages: dict | None = None):
    return (MESSAGES if messages is None else messages).get(obj.session_uid) if obj is not None else None


def find_plane(key: int, name_hint: str = ""):
    """The object with session_uid ``key`` (renamed or not), or None if it is gone."""
    obj = bpy.data.objects.get(name_hint) if name_hint else None
    if obj is not None and obj.session_uid == key:
        return obj
    for obj in bpy.data.objects:
        if obj.session_uid == key:
            return obj
    return None


# -- the client -------------------------------------------------------------------------------------

def _protocol_client_module():
    try:
        from ._vendor.image_dynamics_protocol import client
    except ImportError as exc:
        raise PredictionError("missing_zmq", errors.describe_failure("missing_zmq")) from exc
    return client


def _new_client(client_mod, address: str, timeout: float):
    return client_mod.BackendClient(address, timeout=timeout, heartbeat_timeout=max(2.0, 6.0 * timeout),
                                    ping_interval=max(0.5, min(5.0, timeout / 2.0)),
                                    client_name="image-dynamics-blender")


def _bad_address(address: str, exc) -> PredictionError:
    return PredictionError("bad_address", f"Cannot connect to the backend address {address} ({exc}): fix it in "
                                          "the add-on preferences (tcp://HOST:PORT).")


def get_client(address: str, timeout: float):
    """The shared client of ``address`` (made if needed; connecting is lazy, so this never waits)."""
    client_mod = _protocol_client_module()
    client = _CLIENTS.get(address)
    if client is None:
        try:
            client = _new_client(client_mod, address, timeout)
        except client_mod.zmq.ZMQError as exc:
            raise _bad_address(address, exc) from None
        _CLIENTS[address] = client
    client.timeout = float(timeout)
    return client


def close_client(address: str | None) -> None:
    client = _CLIENTS.pop(address, None) if address else None
    if client is not None:
        try:
            client.close()
        except Exception:  # closing must never raise into a timer or unregister
            pass


def close_clients() -> None:
    for address in list(_CLIENTS):
        close_client(address)


class Connect:
    """Probe + hello in a worker thread, so that the UI thread never waits for DNS, a TCP connect
    or a hello that nobody answers. ``done`` once it ended with ``info`` (the hello reply) or
    ``error`` ((code, text)). With ``keep`` its hello'd client is handed over (``take_client``)
    to become the address's shared client; otherwise the thread closes it."""

    def __init__(self, address: str, timeout: float, keep: bool | None = None) -> None:
        self._mod = _protocol_client_module()  # pyzmq missing: said at once, on the UI thread
        self.address = address
        self.timeout = float(timeout)
        self.keep = (address not in _CLIENTS) if keep is None else keep
        self.info: dict | None = None
        self.error: tuple[str, str] | None = None
        self._client = None
        self._abandoned = False
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="image-dynamics-connect", daemon=True)
        _CONNECTS.append(self)
        self.thread.start()

    def _run(self) -> None:
        client = None
        ok = False
        try:
            code = errors.probe_tcp(self.address, timeout=min(2.0, self.timeout))
            if code is not None:
                self.error = (code, errors.describe_failure(code, address=self.address))
                return
            client = _new_client(self._mod, self.address, self.timeout)
            self.info = client.hello(timeout=self.timeout)
            ok = True
        except self._mod.BackendError as exc:
            self.error = failure_text(exc, self.address)
        except self._mod.zmq.ZMQError as exc:
            err = _bad_address(self.address, exc)
            self.error = (err.code, err.text)
        except Exception as exc:  # a worker thread must report, never die silently
            self.error = ("internal_error", f"Could not reach the backend at {self.address}: {exc}.")
        finally:
            with self._lock:
                if ok and self.keep and not self._abandoned:
                    self._client, client = client, None
                self._done.set()
            if client is not None:
                client.close()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def take_client(self):
        with self._lock:
            client, self._client = self._client, None
        return client

    def abandon(self) -> None:
        """Not wanted any more: the thread closes its client when its hello returns."""
        with self._lock:
            self._abandoned = True
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _client_after(conn: Connect):
    """The shared client for ``conn.address``: the one ``conn`` said hello with, if it is the first."""
    client = conn.take_client()
    if client is not None:
        if conn.address in _CLIENTS:
            client.close()
        else:
            _CLIENTS[conn.address] = client
    return get_client(conn.address, conn.timeout)


def _prune_connects() -> None:
    _CONNECTS[:] = [c for c in _CONNECTS if c.thread.is_alive()]


def stop_connects(wait: float = 0.5) -> None:
    """Abandon every worker thread and give them ``wait`` seconds in all to end (a hello that
    nobody answers ends by itself after the preferences' timeout; the thread then closes its
    socket)."""
    global CHECK
    CHECK = None
    end = time.monotonic() + wait
    for conn in list(_CONNECTS):
        conn.abandon()
    for conn in list(_CONNECTS):
        conn.thread.join(timeout=max(0.0, end - time.monotonic()))
    _prune_connects()


def failure_text(exc, address: str | None, overrides: dict | None = None) -> tuple[str, str]:
    """``(code, text)`` for a backend error (a ``BackendError`` or a failed job's ``error``);
    ``overrides`` maps codes to templates with ``{message}`` (e.g. frame renders' too_large)."""
    code = getattr(exc, "code", "internal_error")
    message = getattr(exc, "message", str(exc))
    if overrides and code in overrides:
        return code, overrides[code].format(message=(message or "no details").strip().rstrip("."))
    return code, errors.describe_failure(code, message, getattr(exc, "hint", ""), address or "")


def _note_hello(info: dict) -> None:
    global LAST_HELLO_TEXT, LAST_HELLO_LEVEL
    LAST_HELLO_TEXT, LAST_HELLO_LEVEL = summarize_hello(info), "INFO"


def summarize_hello(info: dict) -> str:
    model = info.get("model") or {}
    name = model.get("name", "?")
    if model.get("untrained_test_model"):
        name += " (UNTRAINED TEST MODEL)"
    return f"Model {name} on {info.get('device', '?')} ({info.get('engine', '?')})"


# -- where requests go --------------------------------------------------------------------------------

def _start_local(prefs) -> None:
    local = backend_process.LOCAL
    if not local.running:
        try:
            local.start(prefs.backend_executable, model=prefs.model_path,
                        tiny_seed=prefs.tiny_seed if prefs.model_source == "TINY" else None, device=prefs.device)
        except backend_process.BackendStartError as exc:
            raise PredictionError(exc.code, errors.describe_failure(exc.code, exc.message)) from None
    ensure_watch()


def backend_target(prefs=None) -> tuple[str | None, bool]:
    """``(address, local)`` to send a request to, without waiting. With Start a Local Backend the
    backend is started if needed, and the address is None until it is ready. A malformed address
    raises ``PredictionError`` with the fix."""
    prefs = prefs or get_prefs()
    if prefs.use_local_backend:
        _start_local(prefs)
        local = backend_process.LOCAL
        try:
            return local.poll_ready(), True
        except backend_process.BackendStartError as exc:  # it exited just now
            raise PredictionError(exc.code, errors.describe_failure(exc.code, exc.message)) from None
    address = (prefs.address or "").strip()
    problem = jobs.check_address(address)
    if problem is not None:
        raise PredictionError("bad_address", problem)
    return address, False


def local_failure_text() -> str | None:
    """Why the local backend failed to start or exited (with its stderr's last lines), if it did."""
    err = backend_process.LOCAL.last_error
    return errors.describe_failure(err.code, err.message) if err is not None else None


def hello(address: str, timeout: float) -> dict:
    """Blocking hello (scripts only; the UI uses ``Connect`` without waiting): returns the reply or
    raises ``PredictionError`` with the fix."""
    problem = jobs.check_address(address)
    if problem is not None:
        raise PredictionError("bad_address", problem)
    conn = Connect(address, timeout)
    conn.thread.join()
    if conn.error is not None:
        raise PredictionError(*conn.error)
    _client_after(conn)
    _note_hello(conn.info)
    return conn.info


def start_connection_check(prefs=None) -> str | None:
    """Test Connection without waiting: the address being tested, or None while the local
    backend starts (it is started if needed). ``poll_jobs`` finishes it into ``LAST_HELLO_TEXT``."""
    global CHECK, LAST_HELLO_TEXT, LAST_HELLO_LEVEL
    prefs = prefs or get_prefs()
    address, _local = backend_target(prefs)
    if CHECK is not None:
        CHECK.abandon()
        CHECK = None
    if address is None:
        LAST_HELLO_TEXT, LAST_HELLO_LEVEL = ("The local backend is starting (it loads the model first): test again "
                                             "in a moment."), "INFO"
        return None
    CHECK = Connect(address, float(prefs.timeout), keep=False)
    LAST_HELLO_TEXT, LAST_HELLO_LEVEL = f"Testing the connection to {address}...", "INFO"
    return address


def poll_check() -> bool:
    """One poll step of Test Connection; True while it runs."""
    global CHECK, LAST_HELLO_TEXT, LAST_HELLO_LEVEL
    conn = CHECK
    if conn is None:
        return False
    if not conn.done:
        return True
    CHECK = None
    if conn.error is not None:
        LAST_HELLO_TEXT, LAST_HELLO_LEVEL = conn.error[1], "ERROR"
    else:
        _note_hello(conn.info)
    return False


# -- predictions ----------------------------------------------------------------------------------------

def photo_pixels(image, max_side: int) -> np.ndarray:
    """The plane's photo as (H, W, 3) uint8, top row first, longer side <= ``max_side``."""
    w, h = image.size
    if w == 0 or h == 0:
        raise PredictionError("bad_image", f"The photo {image.name} has no pixels: check that its file exists.")
    buf = np.empty(w * h * image.channels, dtype=np.float32)
    image.pixels.foreach_get(buf)
    rgb = imaging.blender_to_rgb8(buf, w, h, image.channels, bool(image.is_float))
    return imaging.downscale_rgb8(rgb, max_side)


def start_pending(pending: Pending, messages: dict, what: str) -> None:
    """Enter the first phase: connect now, or wait for the local backend."""
    if pending.address is not None:
        pending.connect = Connect(pending.address, pending.timeout)
        pending.state = "connecting"
        messages[pending.key] = ("INFO", f"Connecting to the backend for the {what}...")
    else:
        pending.state = "starting"
        messages[pending.key] = ("INFO", f"The local backend is starting (it loads the model first); the {what} "
                                         "starts when it is ready.")


def submit_prediction(obj, scene, prefs=None) -> Pending:
    """Start predicting the plane's motion; returns the pending job at once (scene untouched)."""
    prefs = prefs or get_prefs()
    key = plane_key(obj)
    if key in PENDING:
        raise PredictionError("busy", f"{obj.name} is already being predicted: wait for it or cancel it.")
    props = obj.image_dynamics
    if not props.is_plane:
        raise PredictionError("no_photo", "The active object is not an Image Dynamics plane: import a photo first.")
    if props.image is None:
        raise PredictionError("no_photo", errors.describe_failure("no_photo"))
    photo = photo_pixels(props.image, prefs.max_photo_side)
    settings = scene.image_dynamics
    # Read now: the request must describe the scene as it was at the click.
    photo_w, photo_h = props.photo_width or photo.shape[1], props.photo_height or photo.shape[0]
    seed, steps, motion_scale = int(settings.seed), int(settings.steps), float(settings.motion_scale)
    loop_len = int(props.loop_frames) if settings.loop_guidance and props.use_loop else None
    speed, scene_fps = float(props.speed), float(motion.scene_fps(scene))

    def launch(client, info: dict, pending: Pending):
        model = info.get("model") or {}
        size = imaging.output_size(photo_w, photo_h, model.get("resolution") or (256, 160), motion_scale)
        loop_frames = None
        if loop_len is not None:
            tau_per_frame = speed * float(model.get("fps", 30.0)) / scene_fps
            loop_frames = max(2, int(round(loop_len * tau_per_frame)))
        return client.submit(photo, seed=seed, steps=steps or None, loop_frames=loop_frames, size=size)

    address, local = backend_target(prefs)
    pending = Pending(key, obj.name, launch, local, float(prefs.timeout), address=address, photo=photo)
    start_pending(pending, MESSAGES, "prediction")
    PENDING[key] = pending
    return pending


def _result_volume(result, photo: np.ndarray):
    K, _, H, W = result.S.shape
    image = imaging.resize_rgb8(photo, W, H)
    return volume_io.SpectralVolume(S=result.S, fps=result.fps, num_frames=result.num_frames, image=image,
                                    source="predict", meta=dict(result.meta))


# -- the poll step --------------------------------------------------------------------------------------

def _local_address(what: str) -> str | None:
    """The local backend's address once ready, None while it loads; raises ``PredictionError``
    with its failure (stderr included) if it exited or was stopped."""
    local = backend_process.LOCAL
    try:
        address = local.poll_ready()
    except backend_process.BackendStartError:
        address = None  # kept in local.last_error
    if address is not None or local.running:
        return address
    raise PredictionError("backend_exited", local_failure_text()
                          or f"The local backend was stopped before the {what} was sent: start it and try again.")


def _local_backend_gone(pending: Pending) -> bool:
    """True if the local backend that ``pending`` was sent to exited or was replaced."""
    local = backend_process.LOCAL
    try:
        local.poll_ready()
    except backend_process.BackendStartError:
        pass
    return local.address != pending.address


def _advance(pending: Pending, messages: dict, what: str, failure_texts: dict | None) -> bool:
    """Move a job through its phases before the request is sent. True once it has been sent;
    raises ``PredictionError`` when it cannot be."""
    if pending.job is not None or pending.result is not None:
        return True
    if pending.connect is None:  # waiting for the local backend
        address = _local_address(what)
        if address is None:
            return False
        pending.address = address
        start_pending(pending, messages, what)
        return False
    conn = pending.connect
    if not conn.done:
        return False
    pending.connect = None
    if conn.error is not None:
        if pending.local and not backend_process.LOCAL.running and local_failure_text():
            raise PredictionError("backend_exited", local_failure_text())
        raise PredictionError(*conn.error)
    _note_hello(conn.info)
    client = _client_after(conn)
    client_mod = _protocol_client_module()
    try:
        pending.job = pending.launch(client, conn.info, pending)
    except client_mod.BackendError as exc:
        raise PredictionError(*failure_text(exc, pending.address, failure_texts)) from None
    except client_mod.zmq.ZMQError as exc:
        raise PredictionError("backend_unreachable", f"Could not send the {what} to {pending.address} ({exc}): "
                                                     "check the backend and try again.") from None
    pending.state = "queued"
    messages[pending.key] = ("INFO", f"The {what} was sent to the backend...")
    return True


def _drop(pending: Pending) -> None:
    """Stop whatever ``pending`` has under way (its worker threads, its job on the backend)."""
    pending.abort()
    if pending.connect is not None:
        pending.connect.abandon()
        pending.connect = None
    if pending.job is not None:
        try:
            pending.job.cancel()
        except Exception:  # the backend is told if it can be; the job is forgotten anyway
            pass


def poll_table(table: dict, messages: dict, *, what: str, apply_failed: str, on_done, cancelled: str,
               failure_texts: dict | None = None, needs_object_mode: bool = False) -> bool:
    """One poll step for every job in ``table`` (predictions, frame renders): its phases, its
    progress, then at the end a message in ``messages`` and the job dropped. ``on_done(pending,
    obj, result)`` applies a finished job to its plane and returns the success text, or None to be
    called again on a later step (work still under way off the UI thread); if it raises
    ``PredictionError`` its text is the message, any other exception gives ``apply_failed`` (with
    ``{exc}``), and the scene is left as it was. With
    ``needs_object_mode`` a result waits while its plane is in another mode. Returns True while
    any job runs."""

    def finish(pending: Pending, level: str, text: str) -> None:
        table.pop(pending.key, None)
        messages[pending.key] = (level, text)

    _prune_connects()
    for pending in list(table.values()):
        try:
            if not _advance(pending, messages, what, failure_texts):
                continue
        except PredictionError as exc:
            _drop(pending)
            finish(pending, "ERROR", exc.text)
            continue
        except Exception as exc:  # never let a poll step raise into a timer, never fail silently
            _drop(pending)
            finish(pending, "ERROR", f"Could not send the {what}: {exc}. The scene was not changed.")
            continue
        if pending.result is None:
            if pending.local and _local_backend_gone(pending):
                _drop(pending)
                text = local_failure_text() or "The local backend was stopped."
                finish(pending, "ERROR", f"{text} The {what} was lost; the scene was not changed.")
                continue
            try:
                status = pending.job.poll()
            except Exception as exc:  # never let a poll step raise into a timer
                finish(pending, "ERROR", f"Lost the {what}: {exc}. The scene was not changed.")
                continue
            pending.state = status.state
            pending.progress = float(status.progress)
            if status.state == "failed":
                _, text = failure_text(status.error, pending.address, failure_texts)
                finish(pending, "ERROR", text + " The scene was not changed.")
                continue
            if status.state == "cancelled":
                reason = getattr(pending.job, "cancel_reason", None)
                finish(pending, "INFO" if reason in (None, "client") else "ERROR",
                       jobs.cancel_text(reason, what, cancelled))
                continue
            if status.state != "done":
                continue
            pending.result = status.result
        obj = find_plane(pending.key, pending.object_name)
        if obj is None:
            pending.abort()
            finish(pending, "ERROR", f"{pending.object_name} was deleted before its {what} finished; nothing was "
                                     "changed.")
            continue
        if needs_object_mode and obj.mode != "OBJECT":
            # Applying rewrites the mesh, which Edit Mode holds a copy of: keep the result until then.
            if pending.state != "waiting":
                pending.state = "waiting"
                messages[pending.key] = ("INFO", jobs.edit_mode_text(obj.name, obj.mode))
            continue
        try:
            text = on_done(pending, obj, pending.result)
        except PredictionError as exc:
            pending.abort()
            finish(pending, "ERROR", exc.text)
            continue
        except Exception as exc:
            pending.abort()
            finish(pending, "ERROR", apply_failed.format(exc=exc))
            continue
        if text is None:
            continue
        finish(pending, "INFO", text)
    return bool(table)


def _apply_prediction(pending: Pending, obj, result) -> str:
    motion.apply_volume(obj, _result_volume(result, pending.photo), bpy.context.scene)
    _undo_push("Predict Motion")
    untrained = (result.meta or {}).get("untrained_test_model")
    note = " (untrained test model: the motion is meaningless)" if untrained else ""
    return f"Motion predicted in {time.monotonic() - pending.started:.1f} s{note}."


def poll_jobs() -> bool:
    """One poll step for every prediction in flight (and Test Connection). True while any runs."""
    checking = poll_check()
    running = poll_table(PENDING, MESSAGES, what="prediction",
                         apply_failed="Could not apply the predicted motion ({exc}); the scene was not changed.",
                         on_done=_apply_prediction, cancelled=errors.CANCELLED_MESSAGE, needs_object_mode=True,
                         failure_texts={"too_large": TOO_LARGE_MESSAGE})
    return running or checking


def _undo_push(message: str) -> None:
    """Make the applied result one undo step (only where Blender has a UI to undo in)."""
    if bpy.app.background:
        return
    try:
        bpy.ops.ed.undo_push(message=message)
    except Exception:
        pass


def cancel_prediction(key: int) -> bool:
    """Cancel the prediction of the plane with session_uid ``key``: the backend is told, the
    add-on forgets the job at once (the scene was never touched). False if there was none."""
    return cancel_job(PENDING, MESSAGES, key, errors.CANCELLED_MESSAGE)


def cancel_job(table: dict, messages: dict, key: int, text: str) -> bool:
    """Forget job ``key`` of ``table`` and stop what it has under way; ``text`` becomes its
    message. Shared by predictions and frame renders. Returns False if there was none."""
    pending = table.pop(key, None)
    if pending is None:
        return False
    _drop(pending)
    messages[key] = ("INFO", text)
    return True


def cancel_local_jobs(table: dict, messages: dict, address: str | None, text: str) -> None:
    """Cancel the jobs of ``table`` that run on (or wait for) the local backend at ``address``."""
    for key, pending in list(table.items()):
        if pending.local or (address is not None and pending.address == address):
            cancel_job(table, messages, key, text)


def cancel_all() -> None:
    for key in list(PENDING):
        cancel_prediction(key)


# -- the local backend's watcher ---------------------------------------------------------------------

_WATCHED: dict = {"address": None, "state": None}


def watch_step():
    """Timer: follow the add-on's local backend while there is one. Redraws when it becomes ready
    or exits (why it exited stays in ``LOCAL.last_error`` for the UI), closes the client of one
    that went away (else its socket keeps reconnecting to a dead port), and finishes stopping
    old processes. Stops itself when there is nothing left to follow."""
    local = backend_process.LOCAL
    local.reap()
    try:
        address = local.poll_ready()
    except backend_process.BackendStartError:
        address = None
        print("Image Dynamics:", local_failure_text())
    if _WATCHED["address"] not in (None, address):
        close_client(_WATCHED["address"])
    if address is not None and _WATCHED["address"] != address:
        print(f"Image Dynamics: local backend ready on {address}")
    _WATCHED["address"] = address
    state = (local.running, address, local.last_error)
    if state != _WATCHED["state"]:
        _WATCHED["state"] = state
        redraw(("VIEW_3D", "PREFERENCES"))
    return WATCH_INTERVAL if (local.proc is not None or local.stopping) else None


def ensure_watch() -> None:
    # persistent: the local backend outlives the open file (it must still be followed, and reaped)
    if not bpy.app.timers.is_registered(watch_step):
        bpy.app.timers.register(watch_step, first_interval=WATCH_INTERVAL, persistent=True)


# -- UI glue --------------------------------------------------------------------------------------------

def status_text(pending: Pending) -> str:
    """A job's phase and progress, for the panels."""
    if pending.state == "starting":
        return "Starting the local backend..."
    if pending.state == "connecting":
        return "Connecting to the backend..."
    if pending.state == "waiting":
        return "Waiting for Object Mode"
    return f"{pending.state.capitalize()} {int(round(100 * pending.progress))}%"


def status_line() -> str | None:
    if not PENDING:
        return None
    parts = [f"{p.object_name}: {status_text(p)}" for p in PENDING.values()]
    return "Image Dynamics: predicting " + ", ".join(parts)


def _windows():
    wm = getattr(bpy.context, "window_manager", None)
    return wm.windows if wm is not None else ()


def redraw(area_types: tuple[str, ...]) -> None:
    """Tag the areas of ``area_types`` in every window for redraw (the timer steps of predictions
    and frame renders both call it)."""
    for win in _windows():
        for area in win.screen.areas:
            if area.type in area_types:
                area.tag_redraw()


def _show_status() -> None:
    text = status_line()
    for win in _windows():
        try:
            win.workspace.status_text_set(text)
        except Exception:
            pass


def timer_step():
    """The ``bpy.app.timers`` function: one poll step, a redraw, and the next interval (or stop)."""
    running = poll_jobs()
    _show_status()
    redraw(("VIEW_3D", "PREFERENCES"))
    return POLL_INTERVAL if running else None


def ensure_timer() -> None:
    # persistent: a Test Connection under way outlives loading another file (its jobs do not)
    if not bpy.app.timers.is_registered(timer_step):
        bpy.app.timers.register(timer_step, first_interval=POLL_INTERVAL, persistent=True)
