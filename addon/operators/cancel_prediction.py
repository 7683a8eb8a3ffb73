"""Cancel the active plane's prediction (the scene stays as it was)."""

from __future__ import annotations

import bpy

from .. import prediction


class IMAGE_DYNAMICS_OT_cancel_prediction(bpy.types.Operator):
    """Stop predicting the motion of the active plane; nothing in the scene changes"""

    bl_idname = "image_dynamics.cancel_prediction"
    bl_label = "Cancel Prediction"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.name in prediction.PENDING

    def execute(self, context):
        prediction.cancel_prediction(context.active_object.name)
        self.report({"INFO"}, prediction.MESSAGES[context.active_object.name][1])
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_cancel_prediction
