"""Image Dynamics: animate a photo with predicted natural motion (Generative Image Dynamics).

A photo becomes a grid plane; its predicted spectral volume becomes modal bases on the mesh
(point attributes) summed by a Geometry Nodes modifier whose inputs, the modal coordinates, are
keyframed from a seamless loop, pokes and wind. The backend that predicts motion is a separate
program (``image-dynamics serve``) reached over ZeroMQ; without it the add-on still imports,
animates, pokes, blows on and exports saved motion files.

Layout: ``operators/`` (one operator per module), ``panels.py``, ``properties.py``,
``preferences.py``, ``geometry_nodes.py``, ``keyframes.py``, ``motion.py``, ``prediction.py``,
``backend_process.py``, ``passes.py``, ``plane.py``; bpy-free helpers in ``core/``; the
backend's bpy-free modules are copied into ``_vendor/`` by ``scripts/build_extension.py``.
"""

from __future__ import annotations

import bpy

from . import backend_process, frame_render, motion, panels, prediction, preferences, properties
from .operators import classes as operator_classes

classes = (
    *properties.classes,
    *preferences.classes,
    *operator_classes,
    *panels.classes,
)


_TIMERS = (prediction.timer_step, frame_render.timer_step, prediction.watch_step)


@bpy.app.handlers.persistent
def _on_load_pre(*_args):
    # The objects of the file being left are about to disappear: forget their jobs.
    prediction.cancel_all()
    prediction.MESSAGES.clear()
    frame_render.cancel_all()
    frame_render.MESSAGES.clear()
    motion.UPDATE_ERRORS.clear()


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    properties.register_properties()
    if _on_load_pre not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister() -> None:
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    for timer in _TIMERS:
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    prediction.cancel_all()
    frame_render.cancel_all()
    prediction.stop_connects()  # their threads close their own sockets
    prediction.close_clients()
    backend_process.LOCAL.stop(timeout=3.0)  # blocks at most ~5 s, only if it ignores SIGTERM
    motion.UPDATE_ERRORS.clear()
    properties.unregister_properties()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
