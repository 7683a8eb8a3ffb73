"""Stop the local backend."""

from __future__ import annotations

import bpy

from .. import backend_process, prediction


class IMAGE_DYNAMICS_OT_stop_backend(bpy.types.Operator):
    """Stop the local backend started by the add-on (its predictions are cancelled)"""

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
        backend_process.LOCAL.stop()
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_stop_backend
