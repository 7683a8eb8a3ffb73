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
        try:
            address = prediction.start_connection_check(get_prefs())
        except prediction.PredictionError as exc:
            prediction.LAST_HELLO_TEXT, prediction.LAST_HELLO_LEVEL = exc.text, "ERROR"
            self.report({"ERROR"}, exc.text)
            return {"CANCELLED"}
        # The answer arrives in the poll step (it may take seconds); the panels show it.
        prediction.ensure_timer()
        self.report({"INFO"}, prediction.LAST_HELLO_TEXT if address is None else f"Testing {address}...")
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_test_connection
