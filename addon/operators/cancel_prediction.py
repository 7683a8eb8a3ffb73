"""Cancel the active plane's prediction (the scene stays as it was)."""

from __future__ import annotations

import bpy

from .. import prediction


class IMAGE_DYNAMICS_OT_cancel_prediction(bpy.types.Operator):
    """Stop predicting the motion of the active plane (or waiting for the backend); nothing in the scene changes"""

    bl_idname = "image_dynamics.cancel_prediction"
    bl_label = "Cancel Prediction"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return prediction.pending_for(context.active_object) is not None

    def execute(self, context):
        key = prediction.plane_key(context.active_object)
        prediction.cancel_prediction(key)
        self.report({"INFO"}, prediction.MESSAGES[key][1])
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_cancel_prediction
