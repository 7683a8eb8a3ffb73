"""Add a poke: a pull-and-release at a point of the photo (from the 3D cursor or an object)."""

from __future__ import annotations

import math

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, StringProperty

from .. import motion
from ._common import active_plane_with_motion


class IMAGE_DYNAMICS_OT_add_poke(bpy.types.Operator):
    """Poke the photo: pull the point under the 3D cursor (or an object) and let it go at a frame"""

    bl_idname = "image_dynamics.add_poke"
    bl_label = "Add Poke"
    bl_options = {"REGISTER", "UNDO"}

    source: EnumProperty(name="Point", items=(
        ("CURSOR", "3D Cursor", "The point of the photo under the 3D cursor"),
        ("TARGET", "Object", "Follow an object (e.g. an Empty): its position and X axis"),
        ("UV", "Coordinates", "The X / Y given below"),
    ), default="CURSOR")
    target: StringProperty(name="Object", description="Name of the object to follow (Point: Object)")
    u: FloatProperty(name="X", default=0.5, min=0.0, max=1.0)
    v: FloatProperty(name="Y", default=0.5, min=0.0, max=1.0)
    angle: FloatProperty(name="Direction", default=0.0, subtype="ANGLE")
    strength: FloatProperty(name="Strength", default=8.0, description="Pull, in motion pixels")
    frame: IntProperty(name="Frame", default=-1, description="Frame of the release (-1: the current frame)")

    @classmethod
    def poll(cls, context):
        return active_plane_with_motion(context) is not None

    def execute(self, context):
        obj = active_plane_with_motion(context)
        p = obj.image_dynamics
        u, v = self.u, self.v
        target = None
        if self.source == "CURSOR":
            local = obj.matrix_world.inverted() @ context.scene.cursor.location
            u = local.x / p.width + 0.5
            v = local.y / p.height + 0.5
            if not (0.0 <= u <= 1.0 and 0.0 <= v <= 1.0):
                self.report({"ERROR"}, "The 3D cursor is not over the photo: place it on the plane and poke again.")
                return {"CANCELLED"}
        elif self.source == "TARGET":
            target = bpy.data.objects.get(self.target)
            if target is None or target == obj:
                self.report({"ERROR"}, "Choose another object (e.g. an Empty) to poke from.")
                return {"CANCELLED"}
        motion._BUSY.add(obj.name)
        try:
            poke = p.pokes.add()
            poke.name = f"Poke {len(p.pokes)}"
            poke.u = min(max(u, 0.0), 1.0)
            poke.v = min(max(v, 0.0), 1.0)
            poke.angle = self.angle
            poke.strength = self.strength
            poke.frame = context.scene.frame_current if self.frame < 0 else self.frame
            poke.target = target
            p.active_poke = len(p.pokes) - 1
        finally:
            motion._BUSY.discard(obj.name)
        motion.settings_changed(obj, context.scene)
        what = f"{poke.name} at frame {poke.frame} ({math.degrees(poke.angle):.0f} deg, strength {poke.strength:g})"
        failed = motion.update_error(obj)
        if failed:  # the poke stays (like any setting); the motion keeps its previous keys
            self.report({"WARNING"}, f"{what} added, but the motion was not updated: {failed}")
        else:
            self.report({"INFO"}, what)
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_add_poke
