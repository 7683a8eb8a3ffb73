"""Import Motion: a canonical spectral-volume .npz onto the active plane (no backend needed)."""

from __future__ import annotations

import os

import bpy
from bpy.props import StringProperty
from bpy_extras.io_utils import ImportHelper

from .. import motion, plane
from ..core import volume_io
from ._common import active_plane


class IMAGE_DYNAMICS_OT_import_motion(bpy.types.Operator, ImportHelper):
    """Load a spectral volume (.npz) as the motion of the active plane (or of a new plane showing the file's image)"""

    bl_idname = "image_dynamics.import_motion"
    bl_label = "Import Motion"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})

    def execute(self, context):
        path = bpy.path.abspath(self.filepath)
        try:
            volume = volume_io.load(path)
        except volume_io.VolumeFileError as exc:
            self.report({"ERROR"}, f"{exc}")
            return {"CANCELLED"}
        obj = active_plane(context)
        created = None
        # a new plane becomes the only selected object; a failed import puts the selection back
        selected = [o for o in context.view_layer.objects if o.select_get()]
        active = context.view_layer.objects.active
        if obj is None:
            settings = context.scene.image_dynamics
            name = os.path.splitext(os.path.basename(path))[0]
            if volume.image is not None:
                image = plane.image_from_rgb8(name, volume.image)
            else:
                import numpy as np

                image = plane.image_from_rgb8(name, np.full((volume.height, volume.width, 3), 128, np.uint8))
            try:
                obj = created = plane.create_plane(context, image, settings.mesh_resolution, settings.plane_height,
                                                   settings.shader, name=name)
            except Exception as exc:
                bpy.data.images.remove(image)
                self.report({"ERROR"}, f"Could not make a plane for the motion: {exc}")
                return {"CANCELLED"}
        try:
            motion.apply_volume(obj, volume, context.scene)
        except Exception as exc:
            if created is not None:
                _remove_plane(created)
                for o in selected:
                    o.select_set(True)
                context.view_layer.objects.active = active
            self.report({"ERROR"}, f"Could not apply the motion: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Motion of {obj.name}: {volume.num_freqs} modes at {volume.width} x {volume.height}")
        return {"FINISHED"}


def _remove_plane(obj) -> None:
    """Remove a plane made for a failed import with its mesh, material and image (the scene as before)."""
    me = obj.data
    image = obj.image_dynamics.image
    materials = [m for m in me.materials if m is not None]
    bpy.data.objects.remove(obj)
    if me.users == 0:
        bpy.data.meshes.remove(me)
    for mat in materials:
        if mat.users == 0:
            bpy.data.materials.remove(mat)
    if image is not None and image.users == 0:
        bpy.data.images.remove(image)


OPERATOR = IMAGE_DYNAMICS_OT_import_motion
