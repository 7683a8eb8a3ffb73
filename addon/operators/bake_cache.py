"""Optional bake: the evaluated motion to a PC2 file played by a Mesh Cache modifier."""

from __future__ import annotations

import os

import bpy
import numpy as np
from bpy.props import StringProperty

from .. import geometry_nodes as gn
from ..core import pc2
from ._common import active_plane_with_motion

CACHE_MODIFIER = "Image Dynamics Cache"


def default_cache_path(obj) -> str:
    if bpy.data.filepath:
        return bpy.path.abspath(f"//image_dynamics_cache/{bpy.path.clean_name(obj.name)}.pc2")
    from ..preferences import ADDON_PACKAGE

    try:
        folder = bpy.utils.extension_path_user(ADDON_PACKAGE, path="cache", create=True)
    except (ValueError, AttributeError):
        import tempfile

        folder = tempfile.gettempdir()
    return os.path.join(folder, f"{bpy.path.clean_name(obj.name)}.pc2")


def bake(obj, scene, path: str, frame_start: int, frame_end: int) -> str:
    depsgraph = bpy.context.evaluated_depsgraph_get()
    current = scene.frame_current, scene.frame_subframe
    n = len(obj.data.vertices)
    frames = list(range(frame_start, frame_end + 1))
    out = np.empty((len(frames), n, 3), dtype=np.float32)
    try:
        for i, f in enumerate(frames):
            scene.frame_set(f)
            ev = obj.evaluated_get(depsgraph)
            me = ev.to_mesh()
            try:
                if len(me.vertices) != n:
                    raise RuntimeError("the evaluated mesh changed its vertex count; bake only the Image Dynamics motion")
                buf = np.empty(n * 3, dtype=np.float32)
                me.vertices.foreach_get("co", buf)
                out[i] = buf.reshape(n, 3)
            finally:
                ev.to_mesh_clear()
    finally:
        scene.frame_set(current[0], subframe=current[1])
    pc2.write_pc2(path, out, frame_start, 1.0)
    return path


class IMAGE_DYNAMICS_OT_bake_cache(bpy.types.Operator):
    """Bake the motion to a PC2 point cache and play it with a Mesh Cache modifier (the node modifier is turned off)"""

    bl_idname = "image_dynamics.bake_cache"
    bl_label = "Bake to Point Cache"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="File", subtype="FILE_PATH", default="")

    @classmethod
    def poll(cls, context):
        return active_plane_with_motion(context) is not None

    def execute(self, context):
        obj = active_plane_with_motion(context)
        scene = context.scene
        mod = gn.find_modifier(obj)
        if mod is None:
            self.report({"ERROR"}, "The plane has no Image Dynamics modifier to bake.")
            return {"CANCELLED"}
        old = obj.modifiers.get(CACHE_MODIFIER)
        if old is not None:
            obj.modifiers.remove(old)
        mod.show_viewport = mod.show_render = True
        path = bpy.path.abspath(self.filepath) if self.filepath else default_cache_path(obj)
        try:
            bake(obj, scene, path, scene.frame_start, scene.frame_end)
        except (OSError, RuntimeError) as exc:
            self.report({"ERROR"}, f"Bake failed: {exc}")
            return {"CANCELLED"}
        cache = obj.modifiers.new(CACHE_MODIFIER, "MESH_CACHE")
        cache.cache_format = "PC2"
        cache.filepath = path
        cache.interpolation = "LINEAR"
        cache.time_mode = "FRAME"
        cache.play_mode = "SCENE"
        cache.frame_start = float(scene.frame_start)  # the default 0 plays the cache one frame off
        cache.deform_mode = "OVERWRITE"
        mod.show_viewport = mod.show_render = False
        self.report({"INFO"}, f"Baked frames {scene.frame_start}-{scene.frame_end} to {path}")
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_bake_cache
