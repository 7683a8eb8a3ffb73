"""Backdrop: fit the plane to the active camera."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, FloatProperty

from .. import plane
from ._common import active_plane


class IMAGE_DYNAMICS_OT_fit_to_camera(bpy.types.Operator):
    """Place the plane in front of the active camera, facing it, filling its frame"""

    bl_idname = "image_dynamics.fit_to_camera"
    bl_label = "Fit to Camera"
    bl_options = {"REGISTER", "UNDO"}

    distance: FloatProperty(name="Distance", default=0.0, min=0.0, unit="LENGTH",
                            description="Distance from the camera (0: keep the current distance)")
    mode: EnumProperty(name="Fit", items=(("FILL", "Fill", "Cover the whole frame (crops the photo)"),
                                          ("FIT", "Fit", "Show the whole photo inside the frame")), default="FILL")

    @classmethod
    def poll(cls, context):
        return active_plane(context) is not None and context.scene.camera is not None

    def execute(self, context):
        obj = active_plane(context)
        plane.fit_to_camera(obj, context.scene.camera, context.scene, self.distance or None, self.mode)
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_fit_to_camera
