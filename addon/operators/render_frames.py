"""Render Frames on Backend: the plane's motion drawn by the backend's renderer, used as an
image-sequence texture (for shots where the warped mesh stretches). Non-blocking."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty

from .. import frame_render, prediction
from ._common import active_plane_with_motion


class IMAGE_DYNAMICS_OT_render_frames(bpy.types.Operator):
    """Ask the backend to render the plane's motion over the scene's frame range; the frames become the plane's texture (and its mesh stops moving) when they arrive"""

    bl_idname = "image_dynamics.render_frames"
    bl_label = "Render Frames on Backend"
    bl_options = {"REGISTER"}

    renderer: EnumProperty(name="Renderer", items=(
        ("DEFAULT", "Backend Default", "The backend's default (the trained splat renderer where it has one)"),
        ("splat", "Splat", "Softmax splatting + the trained synthesis network"),
        ("mesh", "Mesh Warp", "The photo warped as a mesh"),
        ("backward", "Backward Warp", "The photo sampled backwards along the motion"),
    ), default="DEFAULT")

    @classmethod
    def poll(cls, context):
        obj = active_plane_with_motion(context)
        return obj is not None and prediction.pending_for(obj, frame_render.RENDERS) is None

    def execute(self, context):
        obj = active_plane_with_motion(context)
        try:
            renderer = None if self.renderer == "DEFAULT" else self.renderer
            pending = frame_render.submit_render(obj, context.scene, renderer)
        except prediction.PredictionError as exc:
            frame_render.MESSAGES[prediction.plane_key(obj)] = ("ERROR", exc.text)
            self.report({"ERROR"}, exc.text)
            return {"CANCELLED"}
        frame_render.ensure_timer()  # polls from the UI; in background mode call frame_render.poll_renders()
        if pending.state == "starting":
            self.report({"INFO"}, f"Starting the local backend; {obj.name}'s frames render when it is ready")
        else:
            self.report({"INFO"}, f"Rendering the frames of {obj.name} on the backend...")
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_render_frames
