"""Remove the active poke."""

from __future__ import annotations

import bpy

from .. import motion
from ._common import active_plane_with_motion


class IMAGE_DYNAMICS_OT_remove_poke(bpy.types.Operator):
    """Remove the selected poke"""

    bl_idname = "image_dynamics.remove_poke"
    bl_label = "Remove Poke"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        obj = active_plane_with_motion(context)
        return obj is not None and len(obj.image_dynamics.pokes) > 0

    def execute(self, context):
        obj = active_plane_with_motion(context)
        p = obj.image_dynamics
        i = min(max(p.active_poke, 0), len(p.pokes) - 1)
        p.pokes.remove(i)
        p.active_poke = max(0, i - 1)
        motion.settings_changed(obj, context.scene)
        failed = motion.update_error(obj)
        if failed:  # the poke is gone; the motion keeps its previous keys until the cause is fixed
            self.report({"WARNING"}, f"Poke removed, but the motion was not updated: {failed}")
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_remove_poke
