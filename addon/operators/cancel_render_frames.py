"""Cancel the active plane's frame render (the scene stays as it was)."""

from __future__ import annotations

import bpy

from .. import frame_render, prediction


class IMAGE_DYNAMICS_OT_cancel_render_frames(bpy.types.Operator):
    """Stop rendering the frames of the active plane (or waiting for the backend); nothing in the scene changes"""

    bl_idname = "image_dynamics.cancel_render_frames"
    bl_label = "Cancel Frame Render"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return prediction.pending_for(context.active_object, frame_render.RENDERS) is not None

    def execute(self, context):
        key = prediction.plane_key(context.active_object)
        frame_render.cancel_render(key)
        self.report({"INFO"}, frame_render.MESSAGES[key][1])
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_cancel_render_frames
