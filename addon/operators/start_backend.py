"""Start the local backend (``image-dynamics serve`` as a subprocess)."""

from __future__ import annotations

import bpy

from .. import backend_process
from ..core import errors
from ..preferences import get_prefs


def _watch():
    """Timer: report when the local backend is ready or has exited."""
    try:
        addr = backend_process.LOCAL.poll_ready()
    except backend_process.BackendStartError as exc:
        print("Image Dynamics:", errors.describe_failure(exc.code, exc.message))
        return None
    if addr is not None:
        print(f"Image Dynamics: local backend ready on {addr}")
        return None
    return 0.5


class IMAGE_DYNAMICS_OT_start_backend(bpy.types.Operator):
    """Start `image-dynamics serve` on this computer (it stops when Blender exits)"""

    bl_idname = "image_dynamics.start_backend"
    bl_label = "Start Local Backend"
    bl_options = {"REGISTER"}

    wait: bpy.props.FloatProperty(name="Wait", default=0.0, min=0.0,
                                  description="Seconds to wait for the backend to be ready (0: return at once)")

    def execute(self, context):
        prefs = get_prefs()
        local = backend_process.LOCAL
        try:
            local.start(prefs.backend_executable, model=prefs.model_path,
                        tiny_seed=prefs.tiny_seed if prefs.model_source == "TINY" else None, device=prefs.device)
            if self.wait > 0:
                local.wait_ready(self.wait)
        except backend_process.BackendStartError as exc:
            self.report({"ERROR"}, errors.describe_failure(exc.code, exc.message))
            return {"CANCELLED"}
        if self.wait == 0 and not bpy.app.timers.is_registered(_watch):
            bpy.app.timers.register(_watch, first_interval=0.5)
        self.report({"INFO"}, f"Local backend {'ready on ' + local.address if local.address else 'starting'}")
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_start_backend
