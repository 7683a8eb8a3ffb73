"""Write the modal coordinates as keyframes on the Geometry Nodes modifier's inputs.

Each mode k has four keyframed inputs: Re q_k, Im q_k (the displacement) and Re / Im of dq_k/dt
(per second, for the ``velocity`` attribute). Keys sit on every frame; each key's Bezier handles
are placed a third of a frame away along the exact derivative, which makes Blender's Bezier
interpolation a cubic Hermite spline of the true curve: sub-frames (motion blur, frame_set with a
subframe) follow the motion to fourth order, not a straight line. A loop's keys span one period
and get a Cycles F-modifier.

Works with both animation APIs: Blender 4.2-4.3 ``Action.fcurves`` and the slotted actions of 4.4+
(``Action.fcurves`` was removed in 5.0): F-curves then live in the channelbag of the object's slot
(``bpy_extras.anim_utils.action_ensure_channelbag_for_slot``).
"""

from __future__ import annotations

import bpy
import numpy as np

GROUP_NAME = "Image Dynamics"


def _channelbag_api():
    try:
        from bpy_extras.anim_utils import action_ensure_channelbag_for_slot
    except ImportError:
        return None
    return action_ensure_channelbag_for_slot


def fcurve_collection(id_data, create: bool = True):
    """The F-curve collection the ID's animation writes to (None if it has none and not ``create``)."""
    ad = id_data.animation_data
    if ad is None:
        if not create:
            return None
        ad = id_data.animation_data_create()
    action = ad.action
    if action is None:
        if not create:
            return None
        action = bpy.data.actions.new(f"{id_data.name} Image Dynamics")
        ad.action = action
    ensure = _channelbag_api()
    if ensure is not None and hasattr(action, "slots"):
        slot = getattr(ad, "action_slot", None)
        if slot is None:
            if not create:
                return None
            suitable = [s for s in action.slots if s.target_id_type in (id_data.id_type, "UNSPECIFIED")]
            slot = suitable[0] if suitable else action.slots.new(id_data.id_type, id_data.name)
            ad.action_slot = slot
        if not create:
            for layer in action.layers:
                for strip in layer.strips:
                    bag = strip.channelbag(slot) if hasattr(strip, "channelbag") else None
                    if bag is not None:
                        return bag.fcurves
            return None
        return ensure(action, slot).fcurves
    return action.fcurves


def remove_fcurves(id_data, prefix: str) -> int:
    """Remove every F-curve whose data path starts with ``prefix``; returns how many."""
    fcurves = fcurve_collection(id_data, create=False)
    if fcurves is None:
        return 0
    doomed = [fc for fc in fcurves if fc.data_path.startswith(prefix)]
    for fc in doomed:
        fcurves.remove(fc)
    return len(doomed)


def find_fcurve(id_data, data_path: str, index: int = 0):
    fcurves = fcurve_collection(id_data, create=False)
    if fcurves is None:
        return None
    return fcurves.find(data_path, index=index)


def write_hermite(id_data, data_path: str, frames: np.ndarray, values: np.ndarray, slopes: np.ndarray,
                  cyclic: bool = False, index: int = 0):
    """(Re)write one F-curve: a key per frame with handles along ``slopes`` (value per frame)."""
    fcurves = fcurve_collection(id_data)
    fc = fcurves.find(data_path, index=index)
    if fc is not None:
        fcurves.remove(fc)
    fc = fcurves.new(data_path, index=index)
    try:
        fc.group = _group(fcurves, id_data)
    except (AttributeError, TypeError, RuntimeError):
        pass
    frames = np.asarray(frames, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    slopes = np.asarray(slopes, dtype=np.float64)
    n = frames.shape[0]
    kp = fc.keyframe_points
    kp.add(n)
    gap = np.diff(frames) if n > 1 else np.ones(1)
    left = np.concatenate([[gap[0]], gap]) / 3.0
    right = np.concatenate([gap, [gap[-1]]]) / 3.0
    co = np.stack([frames, values], axis=1)
    hl = np.stack([frames - left, values - slopes * left], axis=1)
    hr = np.stack([frames + right, values + slopes * right], axis=1)
    kp.foreach_set("co", co.astype(np.float32).reshape(-1))
    for p in kp:  # free handles: Blender must not recompute them
        p.interpolation = "BEZIER"
        p.handle_left_type = "FREE"
        p.handle_right_type = "FREE"
    kp.foreach_set("handle_left", hl.astype(np.float32).reshape(-1))
    kp.foreach_set("handle_right", hr.astype(np.float32).reshape(-1))
    if cyclic:
        fc.modifiers.new("CYCLES")
    fc.update()
    return fc


def _group(fcurves, id_data):
    groups = getattr(fcurves, "data", None)
    groups = getattr(groups, "groups", None)
    if groups is None:
        action = id_data.animation_data.action
        groups = getattr(action, "groups", None)
    if groups is None:
        return None
    return groups.get(GROUP_NAME) or groups.new(GROUP_NAME)
