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
        return obj is not None and prediction.pending_for(obj) is None

    def execute(self, context):
        obj = active_plane(context)
        try:
            pending = prediction.submit_prediction(obj, context.scene)
        except prediction.PredictionError as exc:
            prediction.MESSAGES[prediction.plane_key(obj)] = ("ERROR", exc.text)
            self.report({"ERROR"}, exc.text)
            return {"CANCELLED"}
        prediction.ensure_timer()  # polls from the UI; in background mode call prediction.poll_jobs()
        if pending.state == "starting":
            self.report({"INFO"}, f"Starting the local backend; {obj.name}'s prediction starts when it is ready")
        else:
            self.report({"INFO"}, f"Predicting the motion of {obj.name}...")
        return {"FINISHED"}


OPERATOR = IMAGE_DYNAMICS_OT_predict_motion
