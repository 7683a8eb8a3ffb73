"""Small helpers shared by the operators."""

from __future__ import annotations


def active_plane(context):
    """The active object if it is an Image Dynamics plane, else None."""
    obj = getattr(context, "active_object", None)
    if obj is not None and obj.type == "MESH" and obj.image_dynamics.is_plane:
        return obj
    return None


def active_plane_with_motion(context):
    obj = active_plane(context)
    if obj is not None and obj.image_dynamics.has_motion:
        return obj
    return None
