"""The image plane in Blender: its mesh, its stored volume, and the keyframes of its motion.

* ``build_plane_mesh``: the grid mesh (``core.grid``) with UVs and, given a volume, the modal
  bases as point attributes ``id_re_KK`` / ``id_im_KK`` plus ``id_pin``, ``id_moving`` and
  ``id_amplitude``.
* ``store_volume`` / ``get_volume``: the volume itself (``core.volume_io.pack``), kept as ID properties
  of a hidden Text datablock that the plane's settings point at (``Object.image_dynamics.volume``),
  so it is saved in the .blend and survives undo, duplication and reload.
* ``apply_volume``: puts a volume on a plane in one step (a new mesh is built completely, then
  swapped in; on any error the object is left exactly as it was).
* ``rebuild_keyframes``: evaluates every motion source of the plane (loop, pokes, wind;
  ``core.coords``) over its frames and writes the modal coordinates as keyframes
  (``keyframes.py``) on the modifier (``geometry_nodes.py``).
"""

from __future__ import annotations

import math

import bpy
import numpy as np
from mathutils import Euler, Matrix, Vector

from . import geometry_nodes as gn
from . import keyframes
from .core import coords as C
from .core import grid as G
from .core import volume_io

_BUSY: set[str] = set()  # objects whose settings are being written by the add-on itself


# -- volume storage ------------------------------------------------------------------------------

# Why a Text datablock and not the mesh: the depsgraph copies a mesh with all its ID properties on
# every evaluation, i.e. every frame (17 MB for a 256 x 256, 16-mode volume: about 20 ms of CPU per
# frame, measured at 16k and 262k vertices). Text datablocks are not part of the depsgraph (not even
# when referenced from the mesh, measured), so nothing copies the volume until Python reads it. The pointer lives in the object's
# settings: a duplicate (Shift+D, Alt+D) shares the datablock (it is never changed in place, a new
# volume gets a new one); deleting the plane leaves it without users, so it is not saved again.

def _new_volume_block(obj, volume):
    # "." hides it from Blender's datablock menus; the text says what it is to whoever finds it.
    txt = bpy.data.texts.new(f".Image Dynamics motion of {obj.name}")
    # A new Text starts with an extra "real" user that would keep it in saved files forever; the
    # plane's pointer is to be its only user, so it goes when the plane does.
    txt.user_clear()
    try:
        txt.from_string(f"The spectral volume of the Image Dynamics plane {obj.name!r}, kept in this "
                        "datablock's custom properties. Exported with Image Dynamics > Export Motion.\n")
        for key, value in volume_io.pack(volume).items():
            txt[volume_io.PROP_PREFIX + key] = value
    except BaseException:
        bpy.data.texts.remove(txt)
        raise
    return txt


def _release_volume_block(txt) -> None:
    if txt is not None and txt.users == 0:
        bpy.data.texts.remove(txt)


def _volume_source(obj):
    """The ID holding the plane's volume: its Text datablock, or (files saved before the Text
    datablock) its mesh; None if it has none."""
    if obj is None or obj.type != "MESH":
        return None
    key = volume_io.PROP_PREFIX + "S"
    txt = obj.image_dynamics.volume
    if txt is not None and key in txt:
        return txt
    if obj.data is not None and key in obj.data:
        return obj.data
    return None


def store_volume(obj, volume) -> None:
    """Make ``volume`` the plane's stored volume (a new datablock; the old one goes if unused)."""
    props = obj.image_dynamics
    old = props.volume
    props.volume = _new_volume_block(obj, volume)
    _release_volume_block(old)


def has_volume(obj) -> bool:
    return _volume_source(obj) is not None


def get_volume(obj):
    """The spectral volume stored for the plane (None if it has none)."""
    src = _volume_source(obj)
    if src is None:
        return None
    props = {key: src[volume_io.PROP_PREFIX + key] for key in ("S", "S_shape", "fps", "num_frames")}
    for key in ("source", "meta_json"):
        props[key] = src.get(volume_io.PROP_PREFIX + key, "")
    return volume_io.unpack(props)


def plane_grid(obj) -> G.PlaneGrid:
    p = obj.image_dynamics
    return G.PlaneGrid(p.grid_nx, p.grid_ny, p.width, p.height)


# -- mesh ----------------------------------------------------------------------------------------

def _set_attr(mesh, name: str, dtype: str, values: np.ndarray) -> None:
    attr = mesh.attributes.get(name)
    if attr is not None and (attr.data_type != dtype or attr.domain != "POINT"):
        mesh.attributes.remove(attr)
        attr = None
    if attr is None:
        attr = mesh.attributes.new(name, dtype, "POINT")
    key = "vector" if dtype == "FLOAT_VECTOR" else "value"
    attr.data.foreach_set(key, np.ascontiguousarray(values, dtype=np.float32).reshape(-1))


def build_plane_mesh(name: str, grid: G.PlaneGrid, volume=None, pin_border: float = 0.0, materials=()):
    """A new mesh datablock for the plane (see module doc)."""
    me = bpy.data.meshes.new(name)
    try:
        verts = grid.vertex_positions()
        faces = grid.faces()
        nf = faces.shape[0]
        me.vertices.add(grid.num_vertices)
        me.vertices.foreach_set("co", verts.reshape(-1))
        me.loops.add(nf * 4)
        me.loops.foreach_set("vertex_index", faces.reshape(-1))
        me.polygons.add(nf)
        me.polygons.foreach_set("loop_start", (np.arange(nf, dtype=np.int32) * 4))
        me.update(calc_edges=True)
        uv_layer = me.uv_layers.new(name="UVMap")
        uv = grid.vertex_uv().astype(np.float32)
        uv_layer.data.foreach_set("uv", uv[faces.reshape(-1)].reshape(-1))
        for mat in materials:
            me.materials.append(mat)
        _set_attr(me, gn.PIN_ATTRIBUTE, "FLOAT", G.pin_weights(grid, pin_border))
        if volume is not None:
            re, im = G.vertex_bases(volume.S, grid)
            for k in range(volume.S.shape[0]):
                rname, iname = G.basis_attribute_names(k)
                _set_attr(me, rname, "FLOAT_VECTOR", re[k])
                _set_attr(me, iname, "FLOAT_VECTOR", im[k])
            amp = G.vertex_amplitude(volume.S, grid, skip_dc=False)
            _set_attr(me, "id_amplitude", "FLOAT", amp)
            _set_attr(me, gn.MOVING_ATTRIBUTE, "FLOAT", G.moving_mask(G.vertex_amplitude(volume.S, grid, skip_dc=True)))
        me.validate()
        return me
    except BaseException:
        bpy.data.meshes.remove(me)
        raise


def apply_volume(obj, volume, scene=None) -> None:
    """Give the plane ``volume`` as its motion, in one step (all or nothing)."""
    scene = scene or bpy.context.scene
    props = obj.image_dynamics
    grid = plane_grid(obj)
    old_mesh = obj.data
    old_block = props.volume
    old_has_motion, old_num_modes = props.has_motion, props.num_modes
    had_modifier = gn.find_modifier(obj) is not None
    old_group = gn.find_modifier(obj).node_group if had_modifier else None
    groups_before = set(bpy.data.node_groups)
    new_mesh = build_plane_mesh(old_mesh.name, grid, volume,
                                props.pin_width if props.pin_border else 0.0, list(old_mesh.materials))
    new_block = None
    _BUSY.add(obj.name)
    try:
        new_block = _new_volume_block(obj, volume)
        obj.data = new_mesh
        props.volume = new_block
        gn.ensure_modifier(obj, volume.S.shape[0])
        props.has_motion = True
        props.num_modes = int(volume.S.shape[0])
        rebuild_keyframes(obj, scene)
    except BaseException:
        obj.data = old_mesh
        props.volume = old_block
        props.has_motion, props.num_modes = old_has_motion, old_num_modes
        if new_block is not None:
            bpy.data.texts.remove(new_block)
        mod = gn.find_modifier(obj)
        if mod is not None:
            if had_modifier:
                mod.node_group = old_group
            else:
                obj.modifiers.remove(mod)
        for ng in set(bpy.data.node_groups) - groups_before:
            if ng.users == 0:
                bpy.data.node_groups.remove(ng)
        bpy.data.meshes.remove(new_mesh)
        raise
    finally:
        _BUSY.discard(obj.name)
    if old_mesh.users == 0:
        bpy.data.meshes.remove(old_mesh)
    _release_volume_block(old_block)


def update_pin(obj) -> None:
    props = obj.image_dynamics
    if not props.is_plane or obj.type != "MESH" or obj.name in _BUSY:
        return
    grid = plane_grid(obj)
    if len(obj.data.vertices) != grid.num_vertices:
        return
    _set_attr(obj.data, gn.PIN_ATTRIBUTE, "FLOAT", G.pin_weights(grid, props.pin_width if props.pin_border else 0.0))
    obj.data.update()


# -- motion sources -> keyframes -------------------------------------------------------------------

def scene_fps(scene) -> float:
    return scene.render.fps / scene.render.fps_base


def time_map(obj, scene, volume) -> C.TimeMap:
    p = obj.image_dynamics
    return C.TimeMap(float(p.start_frame), scene_fps(scene), float(volume.fps), float(p.speed))


def motion_frames(obj, scene) -> tuple[int, int]:
    p = obj.image_dynamics
    end = p.end_frame if p.end_frame > p.start_frame else scene.frame_end
    return p.start_frame, max(end, p.start_frame + 1)


def poke_geometry(obj, poke, grid: G.PlaneGrid, vol_w: int, vol_h: int):
    """(pixel_xy, direction_xy) of a poke in volume pixels (x right, y down)."""
    if poke.target is not None:
        inv = obj.matrix_world.inverted()
        loc = inv @ poke.target.matrix_world.translation
        axis = obj.matrix_world.to_3x3().inverted() @ (poke.target.matrix_world.to_3x3() @ Vector((1, 0, 0)))
        px = grid.local_to_pixel(loc.x, loc.y, vol_w, vol_h)
        d = grid.local_dir_to_pixel(axis.x, axis.y, vol_w, vol_h)
    else:
        px = (poke.u * vol_w - 0.5, (1.0 - poke.v) * vol_h - 0.5)
        d = grid.local_dir_to_pixel(math.cos(poke.angle), math.sin(poke.angle), vol_w, vol_h)
    return px, d


def _eval_fcurve(id_data, path: str, index: int, frame: float, default: float) -> float:
    fc = keyframes.find_fcurve(id_data, path, index)
    return float(fc.evaluate(frame)) if fc is not None else float(default)


def wind_samples(obj, wind, frames: np.ndarray, grid: G.PlaneGrid, vol_w: int, vol_h: int, gain: float):
    """Image-space wind per frame: directions (N, 2) and strengths (N,) in px / s^2.

    Strength and an Euler rotation are read from the wind object's F-curves at each frame (so
    keyframes count); its field's noise adds smooth gusts (``core.coords.wind_noise``, seeded by
    the field's seed). The force acts along the field's Z axis; only its component in the photo's
    plane pushes.
    """
    field = wind.field
    n = frames.shape[0]
    dirs = np.zeros((n, 2))
    strengths = np.zeros(n)
    to_local = obj.matrix_world.to_3x3().inverted()
    rot_animated = any(keyframes.find_fcurve(wind, "rotation_euler", i) is not None for i in range(3))
    parent_world = (wind.parent.matrix_world @ wind.matrix_parent_inverse) if wind.parent else Matrix.Identity(4)
    for i, f in enumerate(frames):
        if rot_animated:
            eul = Euler([_eval_fcurve(wind, "rotation_euler", j, f, wind.rotation_euler[j]) for j in range(3)],
                        wind.rotation_euler.order)
            world_rot = parent_world.to_3x3() @ eul.to_matrix()
        else:
            world_rot = wind.matrix_world.to_3x3()
        axis = to_local @ (world_rot @ Vector((0.0, 0.0, 1.0)))
        full = axis.length
        inplane = math.hypot(axis.x, axis.y)
        if full == 0.0 or inplane == 0.0:
            continue
        d = grid.local_dir_to_pixel(axis.x, axis.y, vol_w, vol_h)
        dirs[i] = d
        s = _eval_fcurve(wind, "field.strength", 0, f, field.strength)
        strengths[i] = s * gain * inplane / full
    noise = C.wind_noise(n, min(1.0, float(field.noise) / 10.0), seed=int(getattr(field, "seed", 0)))
    return dirs, strengths * noise


def compute_coords(obj, scene, volume=None) -> C.Coords | None:
    """The plane's modal coordinates per scene frame from all its enabled sources (None: none)."""
    p = obj.image_dynamics
    volume = volume or get_volume(obj)
    if volume is None:
        return None
    K = volume.S.shape[0]
    tm = time_map(obj, scene, volume)
    pokes = [pk for pk in p.pokes if pk.use]
    wind = p.wind_object if (p.use_wind and p.wind_object is not None and p.wind_object.field is not None) else None
    if not (p.use_loop or pokes or wind):
        return None
    if p.use_loop and not pokes and wind is None:
        frames = np.arange(p.start_frame, p.start_frame + p.loop_frames + 1, dtype=np.float64)
        return C.loop_coords(K, frames, tm, p.loop_frames, volume.num_frames, p.loop_at_rest, p.loop_amount)
    f0, f1 = motion_frames(obj, scene)
    frames = np.arange(f0, f1 + 1, dtype=np.float64)
    parts = []
    if p.use_loop:
        c = C.loop_coords(K, frames, tm, p.loop_frames, volume.num_frames, p.loop_at_rest, p.loop_amount)
        c.cyclic = False
        parts.append(c)
    freqs = np.arange(K, dtype=np.float64) * volume.fps / volume.num_frames
    grid = plane_grid(obj)
    H, W = volume.S.shape[2:]
    for pk in pokes:
        px, d = poke_geometry(obj, pk, grid, W, H)
        parts.append(C.poke_coords(volume.S, freqs, frames, tm, pk.frame, px, d, pk.strength,
                                   p.damping_alpha, p.damping_beta))
    if wind is not None:
        dirs, strengths = wind_samples(obj, wind, frames, grid, W, H, p.wind_gain)
        parts.append(C.wind_coords(volume.S, freqs, frames, tm, dirs, strengths, p.damping_alpha, p.damping_beta))
    return C.sum_coords(parts) if len(parts) > 1 else parts[0]


def coordinate_paths(mod, num_modes: int) -> list[tuple[str, str, str, str]]:
    ids = gn.input_identifiers(mod.node_group)
    out = []
    for k in range(num_modes):
        out.append(tuple(f'modifiers["{mod.name}"]["{ids[n]}"]' for n in gn.coordinate_socket_names(k)))
    return out


def rebuild_keyframes(obj, scene=None) -> C.Coords | None:
    """(Re)write the modal-coordinate keyframes of the plane; returns what was written."""
    scene = scene or bpy.context.scene
    mod = gn.find_modifier(obj)
    volume = get_volume(obj)
    if mod is None or volume is None or mod.node_group is None:
        return None
    K = volume.S.shape[0]
    paths = coordinate_paths(mod, K)
    for group in paths:
        for path in group:
            _remove_fcurve(obj, path)
    ids = gn.input_identifiers(mod.node_group)
    for k in range(K):
        for name in gn.coordinate_socket_names(k):
            mod[ids[name]] = 0.0
    c = compute_coords(obj, scene, volume)
    if c is None:
        obj.update_tag()
        return None
    for k, (p_req, p_imq, p_rev, p_imv) in enumerate(paths):
        keyframes.write_hermite(obj, p_req, c.frames, c.q[:, k].real, c.dq[:, k].real, c.cyclic)
        keyframes.write_hermite(obj, p_imq, c.frames, c.q[:, k].imag, c.dq[:, k].imag, c.cyclic)
        keyframes.write_hermite(obj, p_rev, c.frames, c.rate[:, k].real, c.drate[:, k].real, c.cyclic)
        keyframes.write_hermite(obj, p_imv, c.frames, c.rate[:, k].imag, c.drate[:, k].imag, c.cyclic)
    obj.update_tag()
    return c


def _remove_fcurve(obj, path: str) -> None:
    fcurves = keyframes.fcurve_collection(obj, create=False)
    if fcurves is not None:
        fc = fcurves.find(path, index=0)
        if fc is not None:
            fcurves.remove(fc)


def settings_changed(obj, scene=None) -> None:
    p = obj.image_dynamics
    if obj.name in _BUSY or not p.has_motion or not p.auto_update:
        return
    _BUSY.add(obj.name)
    try:
        rebuild_keyframes(obj, scene or bpy.context.scene)
    except Exception as exc:  # a property update must never raise into the UI
        print(f"Image Dynamics: could not update the motion of {obj.name}: {exc}")
    finally:
        _BUSY.discard(obj.name)


# -- fingerprint (tests and sanity checks) ---------------------------------------------------------

def scene_fingerprint() -> tuple:
    """A summary of objects, meshes, attributes, modifiers and F-curves: equal before and after an
    operation that must leave the scene unchanged."""
    items = []
    for ob in sorted(bpy.data.objects, key=lambda o: o.name):
        mods = tuple((m.name, m.type) for m in ob.modifiers)
        fcs = keyframes.fcurve_collection(ob, create=False)
        fc_paths = tuple(sorted(fc.data_path for fc in fcs)) if fcs is not None else ()
        props = ob.image_dynamics
        items.append(("OB", ob.name, ob.data.name if ob.data else None, mods, fc_paths, props.has_motion,
                      props.num_modes, props.volume.name if props.volume else None,
                      tuple(round(v, 6) for row in ob.matrix_world for v in row)))
    for me in sorted(bpy.data.meshes, key=lambda m: m.name):
        attrs = tuple(sorted((a.name, a.data_type, a.domain) for a in me.attributes))
        co = np.empty(len(me.vertices) * 3, dtype=np.float32)
        me.vertices.foreach_get("co", co)
        items.append(("ME", me.name, len(me.vertices), attrs, tuple(sorted(me.keys())), float(co.sum())))
    items.append(("NG", tuple(sorted(ng.name for ng in bpy.data.node_groups))))
    items.append(("AC", tuple(sorted(a.name for a in bpy.data.actions))))
    items.append(("TX", tuple(sorted(t.name for t in bpy.data.texts))))
    return tuple(items)
