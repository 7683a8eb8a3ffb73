"""Rewrite the modal-coordinate keyframes from the plane's motion settings."""

from __future__ import annotations

import bpy

from .. import motion
from ._common import active_plane_with_motion


class IMAGE_DYNAMICS_OT_update_motion(bpy.types.Operator):
    """Recompute the loop, pokes, wind and border pinning, and rewrite the motion keyframes"""

    bl_idname = "image_dynamics.update_motion"
    bl_label = "Update Motion"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return active_plane_with_motion(context) is not None

    def execute(self, context):
        obj = active_plane_with_motion(context)
        if obj.mode != "OBJECT":
            self.report({"ERROR"}, f"Leave Edit Mode on {obj.name} first: Blender keeps mesh changes made now only "
                                   "in its edit copy.")
            return {"CANCELLED"}
        motion.update_pin(obj)  # also brings back a Pin Border change made in Edit Mode
        try:
            c = motion.rebuild_keyframes(obj, context.scene)
        except Exception as exc:  # the keyframes were not touched; the Motion panel keeps saying why
            self.report({"ERROR"}, motion.record_update_error(obj, exc))
            return {"CANCELLED"}
        if c is None:
            self.report({"INFO"}, "No motion source is on (Loop, a Poke or Wind): the plane stays still.")
        else:
            self.report({"INFO"}, f"Motion keyframes written for frames {int(c.frames[0])}-{int(c.frames[-1])}")
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_update_motion
