"""Cancel the active plane's frame render (the scene stays as it was)."""

from __future__ import annotations

import bpy

from .. import frame_render


class IMAGE_DYNAMICS_OT_cancel_render_frames(bpy.types.Operator):
    """Stop rendering the frames of the active plane; nothing in the scene changes"""

    bl_idname = "image_dynamics.cancel_render_frames"
    bl_label = "Cancel Frame Render"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.name in frame_render.RENDERS

    def execute(self, context):
        frame_render.cancel_render(context.active_object.name)
        self.report({"INFO"}, frame_render.MESSAGES[context.active_object.name][1])
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_cancel_render_frames
