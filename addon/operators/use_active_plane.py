"""Adopt the active object (a plane showing an image) as an Image Dynamics plane."""

from __future__ import annotations

import bpy
from bpy.props import IntProperty

from .. import motion, plane


class IMAGE_DYNAMICS_OT_use_active_plane(bpy.types.Operator):
    """Use the active image plane (e.g. from Import Images as Planes): its mesh becomes a grid on the image"""

    bl_idname = "image_dynamics.use_active_plane"
    bl_label = "Use Active Image Plane"
    bl_options = {"REGISTER", "UNDO"}

    resolution: IntProperty(name="Mesh Resolution", default=0, min=0, max=4096,
                            description="Vertices along the longer side (0: the panel's setting)")

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.type == "MESH" and not obj.image_dynamics.is_plane

    def execute(self, context):
        obj = context.active_object
        try:
            plane.adopt_plane(obj, self.resolution or context.scene.image_dynamics.mesh_resolution)
        except motion.PlaneModeError as exc:
            self.report({"ERROR"}, f"{exc}.")
            return {"CANCELLED"}
        except ValueError as exc:
            self.report({"ERROR"}, f"{exc}: import a photo with Import Photo as Plane instead.")
            return {"CANCELLED"}
        except Exception as exc:  # a report, not a traceback
            self.report({"ERROR"}, f"Could not use {obj.name} as an image plane: {exc}")
            return {"CANCELLED"}
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_use_active_plane
