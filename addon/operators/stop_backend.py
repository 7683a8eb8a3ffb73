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
        local = backend_process.LOCAL
        address = local.address
        prediction.cancel_local_jobs(prediction.PENDING, prediction.MESSAGES, address,
                                     "Cancelled: the local backend was stopped; the scene was not changed.")
        prediction.cancel_local_jobs(frame_render.RENDERS, frame_render.MESSAGES, address,
                                     "Rendering cancelled: the local backend was stopped; the scene was not changed.")
        prediction.close_client(address)  # else its socket keeps reconnecting to the dead port
        local.stop_soon()  # returns at once; the watch timer reaps (or kills) the process
        prediction.ensure_watch()
        self.report({"INFO"}, "Local backend stopped")
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_stop_backend
