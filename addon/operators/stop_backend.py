"""Stop the local backend."""

from __future__ import annotations

import bpy

from .. import backend_process, frame_render, prediction


class IMAGE_DYNAMICS_OT_stop_backend(bpy.types.Operator):
    """Stop the local backend started by the add-on (its predictions and frame renders are cancelled)"""

    bl_idname = "image_dynamics.stop_backend"
    bl_label = "Stop Local Backend"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return backend_process.LOCAL.running

    def execute(self, context):
        address = backend_process.LOCAL.address
        for name, pending in list(prediction.PENDING.items()):
            if pending.address == address:
                prediction.cancel_prediction(name)
        for name, pending in list(frame_render.RENDERS.items()):
            if pending.address == address:
                frame_render.cancel_render(name)
        backend_process.LOCAL.stop()
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_stop_backend
