"""Frames rendered by the backend, used as the plane's texture (an image sequence).

For shots where the deformed mesh stretches, the backend's image-based renderer (``render`` op)
draws the photo's frames instead. ``submit_render`` sends the plane's photo, its spectral volume
(times the Pin Border weights when the plane pins its outline) and the modal coordinates of every
scene frame - read back from the keyframed modifier inputs, so the frames show exactly the motion
the mesh shows (loop, pokes and wind), times the modifier's Magnify - and returns at once; the
request goes out from the poll step once the backend said hello (``prediction`` explains the
phases), with the photo shrunk if frames x pixels would pass the backend's ``max_render_pixels``.
``poll_renders()`` is the one poll step (a ``bpy.app.timers`` function calls it; tests call it
directly). When frames arrive they are written as PNGs into a
new folder next to the .blend (``//image_dynamics_frames/``; a temporary folder for an unsaved
file; never the extension's folder) by a worker thread (``core.frame_writer``: encoding hundreds
of frames would freeze the UI), the job in the ``writing`` state meanwhile. A later poll step,
once every file is written, loads them as an image sequence on the plane's Image Texture node
(frame_start = the scene's first frame, cyclic) and switches the Geometry Nodes displacement off
so the motion is not shown twice. Nothing touches the scene before that, so a failed or
cancelled render (cancelled while writing too: the partial folder is removed) leaves it exactly
as it was.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass

import bpy
import numpy as np

from . import geometry_nodes as gn
from . import keyframes, motion, prediction
from .core import grid as G
from .core import frame_writer, imaging, jobs, png
from .preferences import get_prefs

POLL_INTERVAL = 0.2
FRAMES_FOLDER = "image_dynamics_frames"
FRAME_PATTERN = "frame_{:04d}.png"  # Blender reads the number as the sequence frame (1 = first)
STOP_WAIT = 2.0  # seconds a cancel waits for the writer thread to end (it stops between files)
SEQUENCE_TAG = "image_dynamics_frames"  # custom property on the images this module makes

CANCELLED_MESSAGE = "Rendering cancelled; the scene was not changed."
# A render's size is frames x photo pixels: the fix is the frame range or the photo size, not
# the motion resolution that errors.describe_failure suggests for predictions.
TOO_LARGE_MESSAGE = ("The frames are too large for this backend ({message}): shorten the frame range, or lower "
                     "Photo Size Sent in the add-on preferences.")
WRITE_FAILED_MESSAGE = ("Could not write the rendered frames into {folder} ({reason}): check that the folder is "
                        "writable and the disk has space. The scene was not changed.")

RENDERS: dict[int, "PendingRender"] = {}  # plane session_uid -> its render
MESSAGES: dict[int, tuple[str, str]] = {}


@dataclass
class PendingRender(prediction.Pending):
    frame_start: int = 1
    frames: int = 0
    writer: frame_writer.FrameWriter | None = None  # writing the arrived frames (state "writing")

    def abort(self) -> None:
        # The thread must not go on writing into a folder nobody will use (cancel, unregister).
        if self.writer is not None:
            self.writer.stop(wait=STOP_WAIT)


def plane_coordinates(obj, frames: np.ndarray) -> np.ndarray:
    """(N, K) complex64 modal coordinates at scene ``frames``: the keyframed modifier inputs (or
    their static values), times Magnify (evaluated per frame too, it may be animated)."""
    mod = gn.find_modifier(obj)
    if mod is None or mod.node_group is None:
        raise prediction.PredictionError("no_motion", f"{obj.name} has no motion modifier: import or predict motion.")
    ids = gn.input_identifiers(mod.node_group)
    K = int(obj.image_dynamics.num_modes)

    def values(name: str) -> np.ndarray:
        path = f'modifiers["{mod.name}"]["{ids[name]}"]'
        fc = keyframes.find_fcurve(obj, path, 0)
        if fc is None:
            return np.full(frames.shape[0], float(mod[ids[name]]))
        return np.array([fc.evaluate(float(f)) for f in frames])

    q = np.zeros((frames.shape[0], K), np.complex128)
    for k in range(K):
        re_name, im_name = gn.coordinate_socket_names(k)[:2]
        q[:, k] = values(re_name) + 1j * values(im_name)
    return (q * values(gn.MAGNIFY)[:, None]).astype(np.complex64)


def fit_photo(photo: np.ndarray, frames: int, modes: int, limits: dict) -> tuple[np.ndarray, str]:
    """The photo to send for ``frames`` frames of a ``modes``-frequency volume within the backend's
    hello ``limits`` (the aspect ratio kept), and a note for the user when it had to be shrunk.
    Raises ``PredictionError`` when no size fits."""
    h, w = photo.shape[:2]
    try:
        fw, fh = jobs.fit_render_size(w, h, frames, limits.get("max_render_pixels"), limits.get("max_render_frames"),
                                      modes)
    except jobs.RenderTooLarge as exc:
        raise prediction.PredictionError("too_large", exc.text) from None
    if (fw, fh) == (w, h):
        return photo, ""
    small = imaging.downscale_rgb8(photo, max(fw, fh) * 2)  # box filter first: bilinear alone would alias
    return imaging.resize_rgb8(small, fw, fh), (f" The frames are {fw} x {fh}, smaller than the photo sent "
                                                f"({w} x {h}), to fit the backend's limit of "
                                                f"{limits.get('max_render_pixels')} pixels per render.")


def submit_render(obj, scene, renderer: str | None = None, prefs=None) -> PendingRender:
    """Start rendering the plane's frames over the scene's frame range; returns the pending job
    at once (scene untouched)."""
    prefs = prefs or get_prefs()
    key = prediction.plane_key(obj)
    if key in RENDERS:
        raise prediction.PredictionError("busy", f"Frames of {obj.name} are already being rendered.")
    props = obj.image_dynamics
    volume = motion.get_volume(obj)
    if not props.is_plane or props.image is None or volume is None:
        raise prediction.PredictionError("no_motion", f"{obj.name} needs a photo and motion first "
                                                      "(predict or import motion).")
    f0, f1 = int(scene.frame_start), int(scene.frame_end)
    frames = np.arange(f0, f1 + 1, dtype=np.float64)
    coords = plane_coordinates(obj, frames)
    photo = prediction.photo_pixels(props.image, prefs.max_photo_side)
    S = volume.S
    if props.pin_border:  # the mesh pins its outline in Geometry Nodes; the frames must match it
        K, _, H, W = S.shape
        S = S * G.pin_weight_image(motion.plane_grid(obj), W, H, props.pin_width)[None, None]
    fps, volume_fps, volume_num_frames = motion.scene_fps(scene), volume.fps, volume.num_frames

    def launch(client, info: dict, pending: PendingRender):
        available = (info.get("rendering") or {}).get("renderers")
        if not available:
            raise prediction.PredictionError("unsupported", "This backend cannot render frames: update it.")
        if renderer is not None and renderer not in available:
            raise prediction.PredictionError("bad_option", f"The backend has no {renderer} renderer "
                                                           f"(it offers {', '.join(available)}).")
        sent, pending.note = fit_photo(photo, len(frames), S.shape[0], info.get("limits") or {})
        return client.submit_render(sent, S, coords=coords, fps=fps, renderer=renderer, volume_fps=volume_fps,
                                    volume_num_frames=volume_num_frames)

    address, local = prediction.backend_target(prefs)
    pending = PendingRender(key, obj.name, launch, local, float(prefs.timeout), address=address, frame_start=f0,
                            frames=len(frames))
    prediction.start_pending(pending, MESSAGES, "frame render")
    RENDERS[key] = pending
    return pending


def output_folder(object_name: str) -> str:
    """A new, empty folder for one render: next to the saved .blend, else in the temp folder."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", object_name).strip("._") or "plane"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if bpy.data.filepath:
        root = os.path.join(os.path.dirname(os.path.abspath(bpy.data.filepath)), FRAMES_FOLDER)
        os.makedirs(root, exist_ok=True)
        return tempfile.mkdtemp(prefix=f"{safe}_{stamp}_", dir=root)
    return tempfile.mkdtemp(prefix=f"{FRAMES_FOLDER}_{safe}_{stamp}_")


def write_frames(frames: np.ndarray, folder: str) -> list[str]:
    """uint8 (N, H, W, 3) top-first frames -> frame_0001.png ... in ``folder``."""
    paths = []
    for i, frame in enumerate(frames):
        path = os.path.join(folder, FRAME_PATTERN.format(i + 1))
        png.write_png(path, frame)
        paths.append(path)
    return paths


def _texture_node(obj):
    """The plane material's Image Texture node that shows the photo (or earlier frames)."""
    photo = obj.image_dynamics.image
    for slot in obj.material_slots:
        mat = slot.material
        if mat is None or mat.node_tree is None:
            continue
        for node in mat.node_tree.nodes:
            if node.type == "TEX_IMAGE" and node.image is not None and (
                    node.image == photo or node.image.get(SEQUENCE_TAG)):
                return node
    return None


def apply_frames(obj, scene, frames: np.ndarray, frame_start: int) -> str:
    """Write the frames and show them on the plane, all or nothing; returns the folder. Blocks
    while writing (scripts); the poll step writes on a thread instead (``_apply_render``)."""
    if _texture_node(obj) is None:
        raise RuntimeError(f"{obj.name}'s material has no Image Texture node showing its photo")
    folder = output_folder(obj.name)
    try:
        show_frames(obj, write_frames(frames, folder), frame_start)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def shows_frames(obj) -> bool:
    """True while the plane shows backend-rendered frames instead of its displaced mesh."""
    node = _texture_node(obj) if obj is not None and obj.type == "MESH" else None
    return node is not None and bool(node.image.get(SEQUENCE_TAG))


def restore_mesh_motion(obj) -> bool:
    """Undo ``apply_frames``: the photo back on the texture node, the modal-sum modifier back on.

    The frames' image datablock goes if nothing else uses it; the PNG files stay on disk (the user
    may want them). Returns False if the plane was not showing frames.
    """
    if not shows_frames(obj):
        return False
    node = _texture_node(obj)
    frames = node.image
    node.image = obj.image_dynamics.image
    mod = gn.find_modifier(obj)
    if mod is not None:
        mod.show_viewport = True
        mod.show_render = True
    if frames.users == 0:
        bpy.data.images.remove(frames)
    MESSAGES[prediction.plane_key(obj)] = ("INFO", "Back to the mesh motion; the rendered frames stay in their folder.")
    return True


def _write_failed(folder: str, exc: BaseException) -> prediction.PredictionError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    return prediction.PredictionError("write_failed", WRITE_FAILED_MESSAGE.format(folder=folder, reason=reason))


def _start_writing(pending: PendingRender, obj, result) -> None:
    """Main thread: a new folder (``bpy.data.filepath`` is read here), then the writer thread."""
    if _texture_node(obj) is None:  # checked before seconds of writing, not after
        raise RuntimeError(f"{obj.name}'s material has no Image Texture node showing its photo")
    try:
        folder = output_folder(obj.name)
    except OSError as exc:
        raise _write_failed(getattr(exc, "filename", None) or FRAMES_FOLDER, exc) from None
    pending.writer = frame_writer.FrameWriter(result.frames, folder, FRAME_PATTERN).start()
    pending.state, pending.progress = "writing", 0.0


def show_frames(obj, paths: list[str], frame_start: int) -> None:
    """Written frames -> the plane's image sequence, the displacement off; all or nothing (the
    files stay: the caller owns them)."""
    node = _texture_node(obj)
    if node is None:
        raise RuntimeError(f"{obj.name}'s material has no Image Texture node showing its photo")
    image = None
    old_image = node.image
    mod = gn.find_modifier(obj)
    old_vis = (mod.show_viewport, mod.show_render) if mod is not None else None
    try:
        image = bpy.data.images.load(paths[0], check_existing=False)
        image.name = f"{obj.name} frames"
        image.source = "SEQUENCE"
        image[SEQUENCE_TAG] = True
        node.image = image
        user = node.image_user
        user.frame_duration = len(paths)
        user.frame_start = int(frame_start)
        user.frame_offset = 0
        user.use_cyclic = True  # past the range the clip repeats (a looping plane loops on)
        user.use_auto_refresh = True
        if mod is not None:  # the frames already move: a displaced mesh would show it twice
            mod.show_viewport = False
            mod.show_render = False
    except BaseException:
        node.image = old_image
        if mod is not None and old_vis is not None:
            mod.show_viewport, mod.show_render = old_vis
        if image is not None:
            bpy.data.images.remove(image)
        raise


def _apply_render(pending: PendingRender, obj, result) -> str | None:
    """Step by step: start the writer, follow it (None while it writes), then show the frames."""
    writer = pending.writer
    if writer is None:
        _start_writing(pending, obj, result)
        return None
    pending.progress = writer.progress
    if not writer.done:
        return None
    if writer.error is not None:
        raise _write_failed(writer.folder, writer.error)
    try:
        show_frames(obj, writer.paths, pending.frame_start)
    except BaseException:
        writer.stop()  # the thread has ended: this removes the folder
        raise
    pending.writer = None  # the files are the plane's now: nothing to stop or remove
    return (f"{result.frames.shape[0]} frames ({result.renderer} renderer) in "
            f"{time.monotonic() - pending.started:.1f} s, saved in {writer.folder}.{pending.note}")


def poll_renders() -> bool:
    """One poll step for every render in flight. Returns True while any is still running."""
    return prediction.poll_table(RENDERS, MESSAGES, what="frame render",
                                 apply_failed="Could not use the rendered frames ({exc}); the scene was not changed.",
                                 on_done=_apply_render, cancelled=CANCELLED_MESSAGE,
                                 failure_texts={"too_large": TOO_LARGE_MESSAGE})


def cancel_render(key: int) -> bool:
    """Cancel the render of the plane with session_uid ``key``: the backend is told (or the
    writer thread stopped and its folder removed), the add-on forgets the job (the scene was
    never touched)."""
    return prediction.cancel_job(RENDERS, MESSAGES, key, CANCELLED_MESSAGE)


def cancel_all() -> None:
    for key in list(RENDERS):
        cancel_render(key)


def timer_step():
    """The ``bpy.app.timers`` function: one poll step, a redraw, the next interval (or stop)."""
    running = poll_renders()
    prediction.redraw(("VIEW_3D",))
    return POLL_INTERVAL if running else None


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(timer_step):
        bpy.app.timers.register(timer_step, first_interval=POLL_INTERVAL)
