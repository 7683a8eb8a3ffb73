"""Import a photo as an image plane: a grid mesh with UVs and a material showing the photo."""

from __future__ import annotations

import os

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from .. import plane


class IMAGE_DYNAMICS_OT_import_photo(bpy.types.Operator, ImportHelper):
    """Import a photo as a plane whose vertices lie on the image grid, ready for motion"""

    bl_idname = "image_dynamics.import_photo"
    bl_label = "Import Photo as Plane"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: StringProperty(default="*.png;*.jpg;*.jpeg;*.tif;*.tiff;*.exr;*.hdr;*.webp;*.bmp", options={"HIDDEN"})
    resolution: IntProperty(name="Mesh Resolution", description="Vertices along the photo's longer side", default=0,
                            min=0, max=4096)
    height: FloatProperty(name="Height", default=0.0, min=0.0, unit="LENGTH",
                          description="Plane height (0: the panel's setting)")
    shader: EnumProperty(name="Shader", items=(("SCENE", "Panel Setting", ""), ("EMISSION", "Emission", ""),
                                               ("PRINCIPLED", "Principled", "")), default="SCENE")

    def execute(self, context):
        settings = context.scene.image_dynamics
        path = bpy.path.abspath(self.filepath)
        if not os.path.isfile(path):
            self.report({"ERROR"}, f"No such file: {path}")
            return {"CANCELLED"}
        try:
            image = bpy.data.images.load(path, check_existing=True)
        except RuntimeError as exc:
            self.report({"ERROR"}, f"Blender cannot read {os.path.basename(path)}: {exc}")
            return {"CANCELLED"}
        try:
            obj = plane.create_plane(context, image, self.resolution or settings.mesh_resolution,
                                     self.height or settings.plane_height,
                                     settings.shader if self.shader == "SCENE" else self.shader)
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Imported {image.name} as {obj.name} ({obj.image_dynamics.grid_nx} x "
                              f"{obj.image_dynamics.grid_ny} vertices)")
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_import_photo
