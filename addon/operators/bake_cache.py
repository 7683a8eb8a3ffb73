"""Optional bake: the evaluated motion to a PC2 file played by a Mesh Cache modifier."""

from __future__ import annotations

import os
from contextlib import contextmanager

import bpy
import numpy as np
from bpy.props import StringProperty

from .. import frame_render, motion
from .. import geometry_nodes as gn
from ..core import pc2
from ._common import active_plane_with_motion

CACHE_MODIFIER = motion.CACHE_MODIFIER


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


@contextmanager
def _showing_mesh_motion(obj, mod):
    """While baking: the node modifier on and an earlier bake's Mesh Cache off, so the depsgraph
    evaluates the motion itself; every flag is put back afterwards, whatever happens."""
    saved = [(m, m.show_viewport, m.show_render) for m in obj.modifiers if m == mod or m.name == CACHE_MODIFIER]
    try:
        for m, _, _ in saved:
            m.show_viewport = m.show_render = m == mod
        yield
    finally:
        for m, viewport, render in saved:
            m.show_viewport, m.show_render = viewport, render


def bake(obj, scene, path: str, frame_start: int, frame_end: int) -> str:
    """Write the plane's motion over the frames to ``path`` (PC2); the scene is left unchanged."""
    mod = gn.find_modifier(obj)
    current = scene.frame_current, scene.frame_subframe
    n = len(obj.data.vertices)
    frames = list(range(frame_start, frame_end + 1))
    out = np.empty((len(frames), n, 3), dtype=np.float32)
    with _showing_mesh_motion(obj, mod):
        depsgraph = bpy.context.evaluated_depsgraph_get()
        try:
            for i, f in enumerate(frames):
                scene.frame_set(f)
                ev = obj.evaluated_get(depsgraph)
                me = ev.to_mesh()
                try:
                    if len(me.vertices) != n:
                        raise RuntimeError("the evaluated mesh changed its vertex count: bake only the Image "
                                           "Dynamics motion (turn other modifiers off)")
                    buf = np.empty(n * 3, dtype=np.float32)
                    me.vertices.foreach_get("co", buf)
                    out[i] = buf.reshape(n, 3)
                finally:
                    ev.to_mesh_clear()
        finally:
            scene.frame_set(current[0], subframe=current[1])
    pc2.write_pc2(path, out, frame_start, 1.0)  # atomic: an earlier bake's file stays whole on failure
    return path


def play_cache(obj, mod, path: str, frame_start: int):
    """Show the baked file: a new Mesh Cache modifier replaces an earlier bake's, the node modifier
    goes off."""
    old = obj.modifiers.get(CACHE_MODIFIER)
    cache = obj.modifiers.new(CACHE_MODIFIER, "MESH_CACHE")
    try:
        cache.cache_format = "PC2"
        cache.filepath = path
        cache.interpolation = "LINEAR"
        cache.time_mode = "FRAME"
        cache.play_mode = "SCENE"
        cache.frame_start = float(frame_start)  # the default 0 plays the cache one frame off
        cache.deform_mode = "OVERWRITE"
    except BaseException:
        obj.modifiers.remove(cache)
        raise
    if old is not None:
        obj.modifiers.remove(old)
    cache.name = CACHE_MODIFIER  # it got a ".001" while the old one was there
    mod.show_viewport = mod.show_render = False
    return cache


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
            self.report({"ERROR"}, "The plane has no Image Dynamics modifier to bake: import or predict motion again.")
            return {"CANCELLED"}
        if frame_render.shows_frames(obj):  # the bake would move the mesh under frames that already move
            self.report({"ERROR"}, "The plane shows frames rendered on the backend: use Back to Mesh Motion first, "
                                   "then bake.")
            return {"CANCELLED"}
        path = bpy.path.abspath(self.filepath) if self.filepath else default_cache_path(obj)
        # Bake first, change the modifiers only once the file is written: a failed bake changes nothing.
        try:
            bake(obj, scene, path, scene.frame_start, scene.frame_end)
        except OSError as exc:
            self.report({"ERROR"}, f"Bake failed, nothing was changed: cannot write {path} ({exc.strerror or exc}). "
                                   "Choose a file in a folder you can write to.")
            return {"CANCELLED"}
        except Exception as exc:  # a report, not a traceback
            self.report({"ERROR"}, f"Bake failed, nothing was changed: {exc}")
            return {"CANCELLED"}
        try:
            play_cache(obj, mod, path, scene.frame_start)
        except Exception as exc:
            self.report({"ERROR"}, f"Baked to {path} but could not add the Mesh Cache modifier: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Baked frames {scene.frame_start}-{scene.frame_end} to {path}")
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_bake_cache
