"""Predictions in flight: the backend client, the jobs, and the poll step that finishes them.

``submit_prediction`` sends the photo and returns at once. ``poll_jobs()`` is the one poll step:
it calls ``job.poll()`` for every job, updates progress, and when a job ends either applies the
result to its plane in one step (``motion.apply_volume``) or records a message saying why not.
Nothing touches the scene before a result arrives, so a failed or cancelled prediction leaves it
exactly as it was. In Blender's UI a ``bpy.app.timers`` function calls ``poll_jobs``; timers never
fire in background mode or in the ``bpy`` module, so scripts and tests call it directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import bpy
import numpy as np

from . import backend_process, motion
from .core import errors, imaging, volume_io
from .preferences import effective_address, get_prefs

POLL_INTERVAL = 0.2

_CLIENTS: dict[str, object] = {}
LAST_HELLO_TEXT = ""


@dataclass
class Pending:
    object_name: str
    job: object
    address: str
    photo: np.ndarray  # (H, W, 3) uint8 sent, top row first
    started: float = field(default_factory=time.monotonic)
    progress: float = 0.0
    state: str = "queued"


PENDING: dict[str, Pending] = {}
MESSAGES: dict[str, tuple[str, str]] = {}  # object name -> (level 'INFO'/'ERROR', text)


class PredictionError(Exception):
    """A prediction could not start or failed: ``code`` for ``core.errors``, ``text`` to show."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def _protocol_client_module():
    try:
        from ._vendor.image_dynamics_protocol import client
    except ImportError as exc:
        raise PredictionError("missing_zmq", errors.describe_failure("missing_zmq")) from exc
    return client


def get_client(address: str, timeout: float):
    client_mod = _protocol_client_module()
    client = _CLIENTS.get(address)
    if client is None:
        client = client_mod.BackendClient(address, timeout=timeout, heartbeat_timeout=max(2.0, 6.0 * timeout),
                                          ping_interval=max(0.5, min(5.0, timeout / 2.0)),
                                          client_name="image-dynamics-blender")
        _CLIENTS[address] = client
    client.timeout = float(timeout)
    return client


def close_clients() -> None:
    for client in list(_CLIENTS.values()):
        try:
            client.close()
        except Exception:
            pass
    _CLIENTS.clear()


def failure_text(exc, address: str) -> tuple[str, str]:
    """``(code, text)`` for a backend error (a ``BackendError`` or a failed job's ``error``)."""
    code = getattr(exc, "code", "internal_error")
    return code, errors.describe_failure(code, getattr(exc, "message", str(exc)), getattr(exc, "hint", ""), address)


def ensure_backend(prefs=None, wait: float = 120.0) -> str:
    """The address to use, starting the local backend first if the preferences ask for one."""
    prefs = prefs or get_prefs()
    if prefs.use_local_backend:
        local = backend_process.LOCAL
        if not local.running:
            try:
                local.start(prefs.backend_executable, model=prefs.model_path,
                            tiny_seed=prefs.tiny_seed if prefs.model_source == "TINY" else None, device=prefs.device)
            except backend_process.BackendStartError as exc:
                raise PredictionError(exc.code, errors.describe_failure(exc.code, exc.message)) from None
        try:
            return local.wait_ready(wait)
        except backend_process.BackendStartError as exc:
            raise PredictionError(exc.code, errors.describe_failure(exc.code, exc.message)) from None
    return effective_address(prefs)


def hello(address: str, timeout: float) -> dict:
    """Check the connection; returns the hello reply or raises ``PredictionError`` with the fix."""
    global LAST_HELLO_TEXT
    code = errors.probe_tcp(address, timeout=min(1.0, timeout))
    if code is not None:
        raise PredictionError(code, errors.describe_failure(code, address=address))
    client = get_client(address, timeout)
    client_mod = _protocol_client_module()
    try:
        info = client.hello(timeout=timeout)
    except client_mod.BackendError as exc:
        code, text = failure_text(exc, address)
        raise PredictionError(code, text) from None
    LAST_HELLO_TEXT = summarize_hello(info)
    return info


def summarize_hello(info: dict) -> str:
    model = info.get("model") or {}
    name = model.get("name", "?")
    if model.get("untrained_test_model"):
        name += " (UNTRAINED TEST MODEL)"
    return f"Model {name} on {info.get('device', '?')} ({info.get('engine', '?')})"


def photo_pixels(image, max_side: int) -> np.ndarray:
    """The plane's photo as (H, W, 3) uint8, top row first, longer side <= ``max_side``."""
    w, h = image.size
    if w == 0 or h == 0:
        raise PredictionError("bad_image", f"The photo {image.name} has no pixels: check that its file exists.")
    buf = np.empty(w * h * image.channels, dtype=np.float32)
    image.pixels.foreach_get(buf)
    rgb = imaging.blender_to_rgb8(buf, w, h, image.channels, bool(image.is_float))
    return imaging.downscale_rgb8(rgb, max_side)


def submit_prediction(obj, scene, prefs=None) -> Pending:
    """Send the plane's photo to the backend; returns the pending prediction (scene untouched)."""
    prefs = prefs or get_prefs()
    if obj.name in PENDING:
        raise PredictionError("busy", f"{obj.name} is already being predicted: wait for it or cancel it.")
    props = obj.image_dynamics
    if not props.is_plane:
        raise PredictionError("no_photo", "The active object is not an Image Dynamics plane: import a photo first.")
    if props.image is None:
        raise PredictionError("no_photo", errors.describe_failure("no_photo"))
    address = ensure_backend(prefs)
    info = hello(address, prefs.timeout)
    photo = photo_pixels(props.image, prefs.max_photo_side)
    settings = scene.image_dynamics
    model = info.get("model") or {}
    size = imaging.output_size(props.photo_width or photo.shape[1], props.photo_height or photo.shape[0],
                               model.get("resolution") or (256, 160), settings.motion_scale)
    loop_frames = None
    if settings.loop_guidance and props.use_loop:
        tau_per_frame = props.speed * float(model.get("fps", 30.0)) / motion.scene_fps(scene)
        loop_frames = max(2, int(round(props.loop_frames * tau_per_frame)))
    client = get_client(address, prefs.timeout)
    job = client.submit(photo, seed=settings.seed, steps=settings.steps or None, loop_frames=loop_frames, size=size)
    pending = Pending(obj.name, job, address, photo)
    PENDING[obj.name] = pending
    MESSAGES[obj.name] = ("INFO", "Prediction queued...")
    return pending


def _result_volume(result, photo: np.ndarray):
    K, _, H, W = result.S.shape
    image = imaging.resize_rgb8(photo, W, H)
    return volume_io.SpectralVolume(S=result.S, fps=result.fps, num_frames=result.num_frames, image=image,
                                    source="predict", meta=dict(result.meta))


def poll_table(table: dict, messages: dict, *, what: str, while_doing: str, apply_failed: str, on_done,
               cancelled: str) -> bool:
    """One poll step for every job in ``table`` (predictions, frame renders): progress, then at the
    end a message in ``messages`` and the job dropped. ``on_done(pending, obj, result)`` applies a
    finished job to its plane and returns the success text; if it raises, ``apply_failed`` (with
    ``{exc}``) is the message and the scene is left as it was. Returns True while any job runs."""

    def finish(pending, level: str, text: str) -> None:
        table.pop(pending.object_name, None)
        messages[pending.object_name] = (level, text)

    for pending in list(table.values()):
        try:
            status = pending.job.poll()
        except Exception as exc:  # never let a poll step raise into a timer
            finish(pending, "ERROR", f"Lost the {what}: {exc}")
            continue
        pending.state = status.state
        pending.progress = float(status.progress)
        if status.state == "done":
            obj = bpy.data.objects.get(pending.object_name)
            if obj is None:
                finish(pending, "ERROR", f"The plane was deleted while {while_doing}; nothing was changed.")
                continue
            try:
                text = on_done(pending, obj, status.result)
            except Exception as exc:
                finish(pending, "ERROR", apply_failed.format(exc=exc))
                continue
            finish(pending, "INFO", text)
        elif status.state == "failed":
            _, text = failure_text(status.error, pending.address)
            finish(pending, "ERROR", text + " The scene was not changed.")
        elif status.state == "cancelled":
            finish(pending, "INFO", cancelled)
    return bool(table)


def _apply_prediction(pending: Pending, obj, result) -> str:
    motion.apply_volume(obj, _result_volume(result, pending.photo), bpy.context.scene)
    _undo_push("Predict Motion")
    untrained = (result.meta or {}).get("untrained_test_model")
    note = " (untrained test model: the motion is meaningless)" if untrained else ""
    return f"Motion predicted in {time.monotonic() - pending.started:.1f} s{note}."


def poll_jobs() -> bool:
    """One poll step for every prediction in flight. Returns True while any is still running."""
    return poll_table(PENDING, MESSAGES, what="prediction", while_doing="its motion was predicted",
                      apply_failed="Could not apply the predicted motion ({exc}); the scene was not changed.",
                      on_done=_apply_prediction, cancelled=errors.CANCELLED_MESSAGE)


def _undo_push(message: str) -> None:
    """Make the applied result one undo step (only where Blender has a UI to undo in)."""
    if bpy.app.background:
        return
    try:
        bpy.ops.ed.undo_push(message=message)
    except Exception:
        pass


def cancel_prediction(object_name: str) -> bool:
    """Cancel a prediction: the backend is told, the add-on forgets the job at once (the scene was
    never touched). Returns False if there was none."""
    return cancel_job(PENDING, MESSAGES, object_name, errors.CANCELLED_MESSAGE)


def cancel_job(jobs: dict, messages: dict, object_name: str, text: str) -> bool:
    """Forget ``object_name``'s job in ``jobs`` and tell the backend to cancel it; ``text`` becomes
    its message. Shared by predictions and frame renders. Returns False if there was none."""
    pending = jobs.pop(object_name, None)
    if pending is None:
        return False
    try:
        pending.job.cancel()
    except Exception:
        pass
    messages[object_name] = ("INFO", text)
    return True


def cancel_all() -> None:
    for name in list(PENDING):
        cancel_prediction(name)


# -- UI glue ----------------------------------------------------------------------------------------

def status_line() -> str | None:
    if not PENDING:
        return None
    parts = []
    for p in PENDING.values():
        parts.append(f"{p.object_name}: {p.state} {int(round(100 * p.progress))}%")
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
    if not bpy.app.timers.is_registered(timer_step):
        bpy.app.timers.register(timer_step, first_interval=POLL_INTERVAL)
