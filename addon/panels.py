"""The "Image Dynamics" tab of the 3D View sidebar.

Drawing never raises: each panel draws inside a guard that shows a short line instead of a
traceback (an error inside panel drawing breaks the whole sidebar otherwise).
"""

from __future__ import annotations

import bpy

from . import backend_process, frame_render, geometry_nodes, prediction
from .operators._common import active_plane, active_plane_with_motion
from .preferences import effective_address, get_prefs


def _guard(draw):
    def wrapped(self, context):
        try:
            draw(self, context)
        except Exception as exc:  # never break the sidebar
            self.layout.label(text=f"Image Dynamics: {exc}", icon="ERROR")

    return wrapped


class _Base:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Image Dynamics"


class IMAGE_DYNAMICS_PT_main(_Base, bpy.types.Panel):
    bl_label = "Image Dynamics"

    @_guard
    def draw(self, context):
        layout = self.layout
        settings = context.scene.image_dynamics
        col = layout.column(align=True)
        col.operator("image_dynamics.import_photo", icon="IMAGE_PLANE")
        col.operator("image_dynamics.use_active_plane", icon="MESH_PLANE")
        col.prop(settings, "mesh_resolution")
        col.prop(settings, "plane_height")
        col.prop(settings, "shader")
        obj = active_plane(context)
        if obj is None:
            layout.label(text="Select an image plane to animate it.")
            return
        p = obj.image_dynamics
        layout.label(text=f"{obj.name}: {p.grid_nx} x {p.grid_ny} vertices", icon="OBJECT_DATA")


class IMAGE_DYNAMICS_PT_predict(_Base, bpy.types.Panel):
    bl_label = "Predict Motion"
    bl_parent_id = "IMAGE_DYNAMICS_PT_main"

    @_guard
    def draw(self, context):
        layout = self.layout
        settings = context.scene.image_dynamics
        prefs = get_prefs()
        local = backend_process.LOCAL
        row = layout.row()
        if prefs.use_local_backend:
            state = local.address if local.ready else ("starting (loading the model)" if local.running else "stopped")
            row.label(text=f"Local backend: {state}")
        else:
            row.label(text=f"Backend: {effective_address(prefs)}")
        row.operator("image_dynamics.test_connection", text="", icon="LINKED")
        failure = prediction.local_failure_text() if prefs.use_local_backend and not local.running else None
        if failure:  # why it failed to start or exited (its stderr's last lines): not only in the console
            _draw_message(layout.box(), ("ERROR", failure))
        if prediction.LAST_HELLO_TEXT:
            _draw_message(layout, (prediction.LAST_HELLO_LEVEL, prediction.LAST_HELLO_TEXT))
        col = layout.column(align=True)
        col.prop(settings, "seed")
        col.prop(settings, "steps")
        col.prop(settings, "motion_scale")
        col.prop(settings, "loop_guidance")
        obj = active_plane(context)
        if obj is None:
            return
        pending = prediction.pending_for(obj)
        if pending is not None:
            text = prediction.status_text(pending)
            if hasattr(layout, "progress"):
                layout.progress(factor=pending.progress, type="BAR", text=text)
            else:
                layout.label(text=text)
            layout.operator("image_dynamics.cancel_prediction", icon="CANCEL")
        else:
            layout.operator("image_dynamics.predict_motion", icon="PLAY")
        msg = prediction.message_for(obj)
        if msg is not None:
            _draw_message(layout.box(), msg)
        row = layout.row(align=True)
        row.operator("image_dynamics.import_motion", icon="IMPORT")
        row.operator("image_dynamics.export_motion", icon="EXPORT")


def _draw_message(layout, msg: tuple[str, str]) -> None:
    """A job's ``(level, text)`` message, wrapped, with an error icon for errors."""
    for line in _wrap(msg[1], 48):
        layout.label(text=line, icon="ERROR" if msg[0] == "ERROR" else "NONE")


def _wrap(text: str, width: int) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    if cur:
        lines.append(cur)
    return lines


class IMAGE_DYNAMICS_PT_motion(_Base, bpy.types.Panel):
    bl_label = "Motion"
    bl_parent_id = "IMAGE_DYNAMICS_PT_main"

    @classmethod
    def poll(cls, context):
        return active_plane_with_motion(context) is not None

    @_guard
    def draw(self, context):
        from . import motion  # here, not in the shared import line above

        layout = self.layout
        obj = active_plane(context)
        p = obj.image_dynamics
        error = motion.update_error(obj)
        if error:  # a failed update keeps the old keyframes: say so where the settings are
            _draw_message(layout.box(), ("ERROR", error))
        mod = geometry_nodes.find_modifier(obj)
        if mod is not None and mod.node_group is not None:
            ident = geometry_nodes.input_identifiers(mod.node_group).get(geometry_nodes.MAGNIFY)
            if ident:
                layout.prop(mod, f'["{ident}"]', text="Magnify")
        col = layout.column(align=True)
        col.prop(p, "speed")
        col.prop(p, "start_frame")
        col.prop(p, "end_frame")
        box = layout.box()
        box.prop(p, "use_loop")
        sub = box.column(align=True)
        sub.active = p.use_loop
        sub.prop(p, "loop_frames")
        sub.prop(p, "loop_at_rest")
        sub.prop(p, "loop_amount")
        row = layout.row(align=True)
        row.prop(p, "pin_border")
        sub = row.row()
        sub.active = p.pin_border
        sub.prop(p, "pin_width", text="Width")
        col = layout.column(align=True)
        col.prop(p, "auto_update")
        col.operator("image_dynamics.update_motion", icon="FILE_REFRESH")


class IMAGE_DYNAMICS_PT_pokes(_Base, bpy.types.Panel):
    bl_label = "Pokes and Wind"
    bl_parent_id = "IMAGE_DYNAMICS_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    @classmethod
    def poll(cls, context):
        return active_plane_with_motion(context) is not None

    @_guard
    def draw(self, context):
        layout = self.layout
        p = active_plane(context).image_dynamics
        row = layout.row(align=True)
        row.operator("image_dynamics.add_poke", text="Poke at Cursor", icon="CURSOR").source = "CURSOR"
        row.operator("image_dynamics.remove_poke", text="", icon="REMOVE")
        for i, pk in enumerate(p.pokes):
            box = layout.box()
            head = box.row()
            head.prop(pk, "use", text="")
            head.label(text=pk.name)
            col = box.column(align=True)
            col.prop(pk, "frame")
            col.prop(pk, "strength")
            col.prop(pk, "target")
            if pk.target is None:
                col.prop(pk, "u")
                col.prop(pk, "v")
                col.prop(pk, "angle")
        box = layout.box()
        box.prop(p, "use_wind")
        sub = box.column(align=True)
        sub.active = p.use_wind
        sub.prop(p, "wind_object")
        sub.prop(p, "wind_gain")
        col = layout.column(align=True)
        col.prop(p, "damping_alpha")
        col.prop(p, "damping_beta")


class IMAGE_DYNAMICS_PT_output(_Base, bpy.types.Panel):
    bl_label = "Backdrop and Output"
    bl_parent_id = "IMAGE_DYNAMICS_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    @classmethod
    def poll(cls, context):
        return active_plane(context) is not None

    @_guard
    def draw(self, context):
        layout = self.layout
        col = layout.column(align=True)
        col.operator("image_dynamics.fit_to_camera", icon="CAMERA_DATA")
        col.operator("image_dynamics.setup_passes", icon="RENDERLAYERS")
        col.operator("image_dynamics.bake_cache", icon="FILE_CACHE")
        _draw_frame_render(self.layout, active_plane(context))


def _draw_frame_render(layout, obj) -> None:
    """Frames rendered by the backend as the plane's texture (``frame_render.py``)."""
    box = layout.box()
    pending = prediction.pending_for(obj, frame_render.RENDERS)
    if pending is not None:
        box.label(text=f"Frames: {prediction.status_text(pending)}")
        box.operator("image_dynamics.cancel_render_frames", icon="CANCEL")
    else:
        box.operator("image_dynamics.render_frames", icon="RENDER_ANIMATION")
        if frame_render.shows_frames(obj):
            box.operator("image_dynamics.use_mesh_motion", icon="MESH_GRID")
    msg = prediction.message_for(obj, frame_render.MESSAGES)
    if msg is not None:
        _draw_message(box, msg)


classes = (
    IMAGE_DYNAMICS_PT_main,
    IMAGE_DYNAMICS_PT_predict,
    IMAGE_DYNAMICS_PT_motion,
    IMAGE_DYNAMICS_PT_pokes,
    IMAGE_DYNAMICS_PT_output,
)
