"""Show the plane's own (mesh) motion again after Render Frames on Backend."""

from __future__ import annotations

import bpy

from .. import frame_render, prediction


class IMAGE_DYNAMICS_OT_use_mesh_motion(bpy.types.Operator):
    """Show the photo moved by the plane's mesh again instead of the backend-rendered frames"""

    bl_idname = "image_dynamics.use_mesh_motion"
    bl_label = "Back to Mesh Motion"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return (obj is not None and prediction.pending_for(obj, frame_render.RENDERS) is None
                and frame_render.shows_frames(obj))

    def execute(self, context):
        obj = context.active_object
        frame_render.restore_mesh_motion(obj)
        self.report({"INFO"}, prediction.message_for(obj, frame_render.MESSAGES)[1])
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_use_mesh_motion
