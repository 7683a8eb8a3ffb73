"""Predict Motion: send the plane's photo to the backend without blocking Blender."""

from __future__ import annotations

import bpy

from .. import prediction
from ._common import active_plane


class IMAGE_DYNAMICS_OT_predict_motion(bpy.types.Operator):
    """Ask the backend how the photo moves; the result becomes the plane's motion when it arrives"""

    bl_idname = "image_dynamics.predict_motion"
    bl_label = "Predict Motion"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        obj = active_plane(context)
        return obj is not None and obj.name not in prediction.PENDING

    def execute(self, context):
        obj = active_plane(context)
        try:
            prediction.submit_prediction(obj, context.scene)
        except prediction.PredictionError as exc:
            prediction.MESSAGES[obj.name] = ("ERROR", exc.text)
            self.report({"ERROR"}, exc.text)
            return {"CANCELLED"}
        prediction.ensure_timer()  # polls from the UI; in background mode call prediction.poll_jobs()
        self.report({"INFO"}, f"Predicting the motion of {obj.name}...")
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_predict_motion
