"""Render passes: motion AOVs, the Vector pass and a compositor writing them to EXR."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, StringProperty

from .. import passes
from ._common import active_plane


class IMAGE_DYNAMICS_OT_setup_passes(bpy.types.Operator):
    """Add motion AOVs (magnitude, displacement, moving mask) and the Vector pass, and write them to an EXR"""

    bl_idname = "image_dynamics.setup_passes"
    bl_label = "Set Up Motion Passes"
    bl_options = {"REGISTER", "UNDO"}

    vector: BoolProperty(name="Vector Pass", default=True,
                         description="Enable the Vector pass (turns motion blur off: Blender offers it only then)")
    compositor: BoolProperty(name="Write EXR", default=True, description="Add a File Output node to the compositor")
    multilayer: BoolProperty(name="Multilayer", default=True, description="One multilayer EXR (else one per pass)")
    directory: StringProperty(name="Folder", default="//image_dynamics_passes/", subtype="DIR_PATH")

    @classmethod
    def poll(cls, context):
        return active_plane(context) is not None

    def execute(self, context):
        obj = active_plane(context)
        mats = [s.material for s in obj.material_slots if s.material is not None]
        if not mats:
            self.report({"ERROR"}, "The plane has no material: re-import the photo.")
            return {"CANCELLED"}
        for mat in mats:
            passes.setup_material_aovs(mat)
        passes.setup_view_layer(context.view_layer, vector=self.vector)
        if self.vector:
            context.scene.render.use_motion_blur = False
        if self.compositor:
            passes.setup_compositor(context.scene, context.view_layer, self.directory, self.multilayer)
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_setup_passes
