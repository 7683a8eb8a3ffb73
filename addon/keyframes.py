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

from dataclasses import dataclass, field

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


def _group(fcurves, id_data, name: str = GROUP_NAME):
    groups = getattr(fcurves, "data", None)
    groups = getattr(groups, "groups", None)
    if groups is None:
        action = id_data.animation_data.action
        groups = getattr(action, "groups", None)
    if groups is None:
        return None
    return groups.get(name) or groups.new(name)


# -- snapshots: a failed rewrite puts the previous F-curves back -------------------------------------

_KEY_FLOATS = (("co", 2), ("handle_left", 2), ("handle_right", 2), ("back", 1), ("amplitude", 1), ("period", 1))
_KEY_ENUMS = ("interpolation", "handle_left_type", "handle_right_type", "easing", "type")
_CURVE_PROPS = ("extrapolation", "mute", "lock", "hide", "select")


@dataclass
class _CurveState:
    data_path: str
    index: int
    group: str | None
    props: dict
    keys: dict  # attribute -> flat array (foreach_get)
    modifiers: list  # (type, {property: value})


@dataclass
class AnimationSnapshot:
    """What ``restore`` needs to put an ID's F-curves under a data-path prefix back exactly."""

    prefix: str
    had_animation_data: bool
    action: object
    slot: object
    curves: list = field(default_factory=list)


def _rna_values(struct) -> dict:
    out = {}
    for prop in struct.bl_rna.properties:
        if prop.is_readonly or prop.type not in {"BOOLEAN", "INT", "FLOAT", "ENUM"} or prop.identifier == "rna_type":
            continue
        value = getattr(struct, prop.identifier)
        out[prop.identifier] = tuple(value) if getattr(prop, "is_array", False) else value
    return out


def snapshot(id_data, prefix: str) -> AnimationSnapshot:
    """Record the ID's F-curves whose data path starts with ``prefix`` (read-only)."""
    ad = id_data.animation_data
    snap = AnimationSnapshot(prefix, ad is not None, ad.action if ad is not None else None,
                             getattr(ad, "action_slot", None) if ad is not None else None)
    fcurves = fcurve_collection(id_data, create=False)
    for fc in (fcurves or ()):
        if not fc.data_path.startswith(prefix):
            continue
        kp = fc.keyframe_points
        n = len(kp)
        keys = {}
        for name, width in _KEY_FLOATS:
            buf = np.empty(n * width, dtype=np.float32)
            kp.foreach_get(name, buf)
            keys[name] = buf
        for name in _KEY_ENUMS:
            buf = np.empty(n, dtype=np.int32)
            kp.foreach_get(name, buf)
            keys[name] = buf
        mods = [(m.type, _rna_values(m)) for m in fc.modifiers]
        snap.curves.append(_CurveState(fc.data_path, fc.array_index, fc.group.name if fc.group else None,
                                       {name: getattr(fc, name) for name in _CURVE_PROPS}, keys, mods))
    return snap


def restore(id_data, snap: AnimationSnapshot) -> None:
    """Put back exactly the F-curves ``snapshot`` recorded (under its prefix), and drop an action or
    animation data that did not exist then."""
    remove_fcurves(id_data, snap.prefix)
    ad = id_data.animation_data
    if snap.action is None:
        if ad is not None and ad.action is not None:
            made = ad.action
            ad.action = None
            if made.users == 0:
                bpy.data.actions.remove(made)
        if not snap.had_animation_data and ad is not None and len(ad.drivers) == 0:
            id_data.animation_data_clear()
        return
    if ad is not None and hasattr(ad, "action_slot") and ad.action_slot != snap.slot:
        try:
            ad.action_slot = snap.slot
        except (AttributeError, TypeError, RuntimeError):
            pass
    if not snap.curves:
        return
    fcurves = fcurve_collection(id_data)
    for cs in snap.curves:
        fc = fcurves.new(cs.data_path, index=cs.index)
        if cs.group is not None:
            try:
                fc.group = _group(fcurves, id_data, cs.group)
            except (AttributeError, TypeError, RuntimeError):
                pass
        kp = fc.keyframe_points
        kp.add(len(cs.keys["co"]) // 2)
        # enums (handle types) before the handles: setting a type may recompute the handles
        for name in ("co", *_KEY_ENUMS, *(n for n, _ in _KEY_FLOATS if n != "co")):
            kp.foreach_set(name, cs.keys[name])
        for name, value in cs.props.items():
            setattr(fc, name, value)
        for mtype, values in cs.modifiers:
            m = fc.modifiers.new(mtype)
            for name, value in values.items():
                try:
                    setattr(m, name, value)
                except (AttributeError, TypeError, ValueError, RuntimeError):
                    pass
        fc.update()
