"""Test Connection: say hello to the backend and show its model, device and engine."""

from __future__ import annotations

import bpy

from .. import prediction
from ..preferences import get_prefs


class IMAGE_DYNAMICS_OT_test_connection(bpy.types.Operator):
    """Check that the backend answers, and show its model, device and engine"""

    bl_idname = "image_dynamics.test_connection"
    bl_label = "Test Connection"
    bl_options = {"REGISTER"}

    def execute(self, context):
        prefs = get_prefs()
        try:
            address = prediction.ensure_backend(prefs)
            info = prediction.hello(address, prefs.timeout)
        except prediction.PredictionError as exc:
            prediction.LAST_HELLO_TEXT = exc.text
            self.report({"ERROR"}, exc.text)
            return {"CANCELLED"}
        self.report({"INFO"}, f"Connected to {address}: {prediction.summarize_hello(info)}")
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_test_connection
