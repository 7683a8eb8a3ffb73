"""Add-on preferences: where the backend is, or how to start a local one."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy.types import AddonPreferences

from . import backend_process

ADDON_PACKAGE = __package__


class _Defaults:
    """Stands in for the preferences when the add-on is not registered as an extension (scripts)."""

    address = "tcp://127.0.0.1:5555"
    timeout = 10.0
    use_local_backend = False
    backend_executable = ""
    model_source = "TINY"
    model_path = ""
    tiny_seed = 0
    device = "auto"
    max_photo_side = 1024


def get_prefs():
    addon = bpy.context.preferences.addons.get(ADDON_PACKAGE)
    if addon is None or addon.preferences is None:
        return _Defaults()
    return addon.preferences


def effective_address(prefs=None) -> str:
    """The local backend's address while it runs, else the configured one."""
    prefs = prefs or get_prefs()
    if prefs.use_local_backend and backend_process.LOCAL.ready:
        return backend_process.LOCAL.address
    return prefs.address


class IMAGE_DYNAMICS_AddonPreferences(AddonPreferences):
    bl_idname = ADDON_PACKAGE

    address: StringProperty(
        name="Backend Address",
        description="ZeroMQ address of a running `image-dynamics serve` (tcp://HOST:PORT)",
        default="tcp://127.0.0.1:5555",
    )
    timeout: FloatProperty(
        name="Timeout",
        description="Seconds without an answer before the backend counts as gone",
        default=10.0, min=1.0, max=600.0, unit="TIME_ABSOLUTE",
    )
    use_local_backend: BoolProperty(
        name="Start a Local Backend",
        description="Run `image-dynamics serve` on this computer as a subprocess (stopped when Blender exits)",
        default=False,
    )
    backend_executable: StringProperty(
        name="Backend Executable",
        description="The image-dynamics program of the backend's Python environment (e.g. .venv/bin/image-dynamics); "
                    "empty: search PATH",
        default="", subtype="FILE_PATH",
    )
    model_source: EnumProperty(
        name="Model",
        items=(
            ("FOLDER", "Model Folder", "A saved motion predictor folder"),
            ("TINY", "Tiny Test Model", "An UNTRAINED tiny model: its motion is meaningless (plumbing tests only)"),
        ),
        default="FOLDER",
    )
    model_path: StringProperty(name="Model Folder", default="", subtype="DIR_PATH")
    tiny_seed: IntProperty(name="Seed", default=0, min=0)
    device: EnumProperty(
        name="Device",
        items=(("auto", "Auto", "GPU if available"), ("cpu", "CPU", ""), ("cuda", "CUDA", "")),
        default="auto",
    )
    max_photo_side: IntProperty(
        name="Photo Size Sent",
        description="The photo is shrunk to at most this many pixels on its longer side before it is sent",
        default=1024, min=64, max=8192,
    )

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "address")
        col.prop(self, "timeout")
        box = layout.box()
        box.prop(self, "use_local_backend")
        sub = box.column()
        sub.active = self.use_local_backend
        sub.prop(self, "backend_executable")
        sub.prop(self, "model_source")
        if self.model_source == "FOLDER":
            sub.prop(self, "model_path")
        else:
            sub.prop(self, "tiny_seed")
        sub.prop(self, "device")
        row = sub.row()
        local = backend_process.LOCAL
        from . import prediction
        from .panels import _draw_message

        if local.running:
            row.operator("image_dynamics.stop_backend", icon="CANCEL")
            row.label(text=f"Running: {local.address or 'starting (loading the model)...'}")
        else:
            row.operator("image_dynamics.start_backend", icon="PLAY")
            failure = prediction.local_failure_text()
            if failure:  # why it failed to start or exited (its stderr's last lines): not only in the console
                _draw_message(box.box(), ("ERROR", failure))
        layout.prop(self, "max_photo_side")
        layout.operator("image_dynamics.test_connection", icon="LINKED")
        if prediction.LAST_HELLO_TEXT:
            _draw_message(layout, (prediction.LAST_HELLO_LEVEL, prediction.LAST_HELLO_TEXT))


classes = (IMAGE_DYNAMICS_AddonPreferences,)
