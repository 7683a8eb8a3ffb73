"""Start the local backend (``image-dynamics serve`` as a subprocess)."""

from __future__ import annotations

import bpy

from .. import backend_process, prediction
from ..core import errors
from ..preferences import get_prefs


class IMAGE_DYNAMICS_OT_start_backend(bpy.types.Operator):
    """Start `image-dynamics serve` on this computer (it stops when Blender exits)"""

    bl_idname = "image_dynamics.start_backend"
    bl_label = "Start Local Backend"
    bl_options = {"REGISTER"}

    wait: bpy.props.FloatProperty(name="Wait", default=0.0, min=0.0, options={"SKIP_SAVE"},
                                  description="Seconds to wait for the backend to be ready (0: return at once; "
                                              "scripts only, Blender's UI would freeze meanwhile)")

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
        finally:
            prediction.ensure_watch()  # follows it: ready, or why it failed (shown in the panels)
        self.report({"INFO"}, f"Local backend {'ready on ' + local.address if local.address else 'starting'}")
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_start_backend
