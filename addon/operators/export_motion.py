"""Export Motion: the active plane's spectral volume as a canonical .npz."""

from __future__ import annotations

import bpy
from bpy.props import StringProperty
from bpy_extras.io_utils import ExportHelper

from .. import motion
from ..core import imaging, volume_io
from ._common import active_plane_with_motion


class IMAGE_DYNAMICS_OT_export_motion(bpy.types.Operator, ExportHelper):
    """Save the active plane's motion (spectral volume) as a .npz file any Image Dynamics tool reads"""

    bl_idname = "image_dynamics.export_motion"
    bl_label = "Export Motion"
    bl_options = {"REGISTER"}

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        obj = active_plane_with_motion(context)
        return obj is not None and motion.has_volume(obj)

    def execute(self, context):
        obj = active_plane_with_motion(context)
        volume = motion.get_volume(obj)
        image = obj.image_dynamics.image
        if image is not None and image.size[0] > 0:
            from .. import prediction

            try:
                rgb = prediction.photo_pixels(image, 1 << 16)
                volume.image = imaging.resize_rgb8(rgb, volume.width, volume.height)
            except Exception:
                volume.image = None
        path = bpy.path.abspath(self.filepath)
        try:
            volume_io.save(path, volume)
        except (OSError, volume_io.VolumeFileError) as exc:
            self.report({"ERROR"}, f"Could not write {path}: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote {path}")
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_export_motion
