"""The image plane in Blender: its mesh, its stored volume, and the keyframes of its motion.

* ``build_plane_mesh``: the grid mesh (``core.grid``) with UVs and, given a volume, the modal
  bases as point attributes ``id_re_KK`` / ``id_im_KK`` plus ``id_pin``, ``id_moving`` and
  ``id_amplitude``.
* ``store_volume`` / ``get_volume``: the volume itself (``core.volume_io.pack``), kept as ID properties
  of a hidden Text datablock that the plane's settings point at (``Object.image_dynamics.volume``),
  so it is saved in the .blend and survives undo, duplication and reload.
* ``apply_volume``: puts a volume on a plane in one step (the keyframes are computed and a new
  mesh is built completely, then swapped in; on any error the object, its modifiers and its
  F-curves are left exactly as they were).
* ``rebuild_keyframes``: evaluates every motion source of the plane (loop, pokes, wind;
  ``core.coords``) over its frames and writes the modal coordinates as keyframes
  (``keyframes.py``) on the modifier (``geometry_nodes.py``); if that fails, the previous
  keyframes stay. ``settings_changed`` records such a failure in ``UPDATE_ERRORS`` for the panel.
"""

from __future__ import annotations

import math
import zlib

import bpy
import numpy as np
from mathutils import Euler, Matrix, Vector

from . import geometry_nodes as gn
from . import keyframes
from .core import coords as C
from .core import grid as G
from .core import volume_io

_BUSY: set[str] = set()  # objects whose settings are being written by the add-on itself

# Plane session_uid (like prediction's tables: survives renames) -> why its motion could not be
# updated from its settings. The Motion panel shows it; cleared by the next successful update, on
# file load and on unregister.
UPDATE_ERRORS: dict[int, str] = {}

CACHE_MODIFIER = "Image Dynamics Cache"  # the Mesh Cache modifier of Bake to Point Cache


class PlaneModeError(RuntimeError):
    """The plane is not in Object Mode, where Blender would ignore its new mesh (nothing was changed).

    Not a bad result: a caller holding one (the prediction poller) can keep it and apply it again
    once the user has left the mode."""


def require_object_mode(obj, doing: str = "apply the motion") -> None:
    """Raise ``PlaneModeError`` unless ``obj`` is in Object Mode: in Edit Mode Blender ignores
    ``obj.data = mesh``; the paint and sculpt modes work on the mesh being replaced."""
    if obj.mode != "OBJECT":
        mode = obj.mode.replace("_GPENCIL", "").replace("_", " ").title()
        raise PlaneModeError(f"Leave {mode} Mode on {obj.name} to {doing}")


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
    """Give the plane ``volume`` as its motion, in one step (all or nothing).

    Raises ``PlaneModeError`` outside Object Mode, ``volume_io.VolumeFileError`` for an impossible
    volume and ``ValueError`` for motion settings that do not work with it, each before anything
    changes. A plane showing a bake or rendered frames of its old motion goes back to showing
    the (new) mesh motion.
    """
    scene = scene or bpy.context.scene
    require_object_mode(obj)
    volume_io.check(volume, "the motion")
    K = int(volume.S.shape[0])
    # Everything that can fail on the user's settings runs first, while nothing has changed yet.
    coords = compute_coords(obj, scene, volume)
    props = obj.image_dynamics
    grid = plane_grid(obj)
    old_mesh = obj.data
    old_block = props.volume
    old_has_motion, old_num_modes = props.has_motion, props.num_modes
    old_mod = gn.find_modifier(obj)
    old_group = old_mod.node_group if old_mod is not None else None
    old_vis = (old_mod.show_viewport, old_mod.show_render) if old_mod is not None else None
    old_inputs = _input_values(old_mod) if old_mod is not None else {}
    old_paths = _coordinate_path_set(old_mod) if old_mod is not None else set()
    cache = obj.modifiers.get(CACHE_MODIFIER)
    if cache is not None and cache.type != "MESH_CACHE":
        cache = None
    anim = keyframes.snapshot(obj, _modifier_prefix())
    group_names = {ng: ng.name for ng in bpy.data.node_groups}  # ensure_tree may rename an outdated one
    new_mesh = build_plane_mesh(old_mesh.name, grid, volume,
                                props.pin_width if props.pin_border else 0.0, list(old_mesh.materials))
    new_block = None
    _BUSY.add(obj.name)
    try:
        new_block = _new_volume_block(obj, volume)
        obj.data = new_mesh
        if obj.data != new_mesh:  # Blender refused the mesh (a mode the check above missed)
            raise PlaneModeError(f"Blender did not accept the new mesh of {obj.name}: switch it to Object Mode "
                                 "and apply the motion again")
        props.volume = new_block
        mod = gn.ensure_modifier(obj, K)
        props.has_motion = True
        props.num_modes = K
        _write_coords(obj, mod, K, coords, old_paths)
        if cache is not None:  # a bake of the old motion would keep showing it: back to the mesh motion
            mod.show_viewport = mod.show_render = True
            obj.modifiers.remove(cache)  # last: nothing after it can fail
    except BaseException:
        obj.data = old_mesh
        props.volume = old_block
        props.has_motion, props.num_modes = old_has_motion, old_num_modes
        if new_block is not None:
            bpy.data.texts.remove(new_block)
        mod = gn.find_modifier(obj)
        if mod is not None:
            if old_mod is not None:
                mod.node_group = old_group
                mod.show_viewport, mod.show_render = old_vis
                _set_input_values(mod, old_inputs)
            else:
                obj.modifiers.remove(mod)
        keyframes.restore(obj, anim)
        for ng in set(bpy.data.node_groups) - set(group_names):
            if ng.users == 0:
                bpy.data.node_groups.remove(ng)
        for ng, name in group_names.items():
            if ng.name != name:
                ng.name = name
        bpy.data.meshes.remove(new_mesh)
        raise
    finally:
        _BUSY.discard(obj.name)
    UPDATE_ERRORS.pop(obj.session_uid, None)
    if old_mesh.users == 0:
        bpy.data.meshes.remove(old_mesh)
    _release_volume_block(old_block)
    # Frames rendered from the old motion would hide the new one (and show it twice once restored).
    from . import frame_render  # not at the top: frame_render imports this module

    frame_render.restore_mesh_motion(obj)
    # A render still running draws the old motion: its frames must not arrive over the new one.
    if frame_render.cancel_render(obj.session_uid):
        frame_render.MESSAGES[obj.session_uid] = (
            "INFO", "The frame render was cancelled: the plane has new motion. Render Frames again for it.")


def update_pin(obj) -> None:
    props = obj.image_dynamics
    if not props.is_plane or obj.type != "MESH" or obj.name in _BUSY:
        return
    if obj.mode != "OBJECT":
        # Leaving Edit Mode rewrites the mesh from its edit copy, which would drop the weights written now.
        UPDATE_ERRORS[obj.session_uid] = (f"Pin Border was not applied: {obj.name} is in Edit Mode. Leave Edit Mode, "
                                          "then press Update Motion.")
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


def _modifier_prefix() -> str:
    """Data-path prefix of everything animated on the plane's modifier (coordinates and Magnify)."""
    return f'modifiers["{gn.MODIFIER_NAME}"]'


def _coordinate_path_set(mod) -> set[str]:
    """The data paths of every modal-coordinate input of ``mod``'s current node group."""
    if mod is None or mod.node_group is None:
        return set()
    ng = mod.node_group
    num_modes = int(ng.get("image_dynamics_modes", 0))
    ids = gn.input_identifiers(ng)
    return {f'modifiers["{mod.name}"]["{ids[n]}"]' for k in range(num_modes)
            for n in gn.coordinate_socket_names(k) if n in ids}


def _input_values(mod) -> dict:
    """The modifier's input values (ID properties), to put back after a failed write."""
    return {key: mod[key] for key in mod.keys() if isinstance(mod[key], (bool, int, float, str))}


def _set_input_values(mod, values: dict) -> None:
    for key, value in values.items():
        try:
            mod[key] = value
        except (KeyError, TypeError):
            pass


def _write_coords(obj, mod, num_modes: int, c, extra_paths=()) -> None:
    """Replace the coordinate keyframes by ``c`` (None: no source, the inputs rest at 0).

    ``extra_paths``: curves of a previous node group to remove as well (more modes than now)."""
    paths = coordinate_paths(mod, num_modes)
    for path in set(extra_paths) | {path for group in paths for path in group}:
        _remove_fcurve(obj, path)
    ids = gn.input_identifiers(mod.node_group)
    for k in range(num_modes):
        for name in gn.coordinate_socket_names(k):
            mod[ids[name]] = 0.0
    if c is not None:
        for k, (p_req, p_imq, p_rev, p_imv) in enumerate(paths):
            keyframes.write_hermite(obj, p_req, c.frames, c.q[:, k].real, c.dq[:, k].real, c.cyclic)
            keyframes.write_hermite(obj, p_imq, c.frames, c.q[:, k].imag, c.dq[:, k].imag, c.cyclic)
            keyframes.write_hermite(obj, p_rev, c.frames, c.rate[:, k].real, c.drate[:, k].real, c.cyclic)
            keyframes.write_hermite(obj, p_imv, c.frames, c.rate[:, k].imag, c.drate[:, k].imag, c.cyclic)
    obj.update_tag()


def rebuild_keyframes(obj, scene=None) -> C.Coords | None:
    """(Re)write the modal-coordinate keyframes of the plane; returns what was written.

    All or nothing: the coordinates are computed before anything is removed, and a failed write
    puts the previous F-curves and input values back."""
    scene = scene or bpy.context.scene
    mod = gn.find_modifier(obj)
    volume = get_volume(obj)
    if mod is None or volume is None or mod.node_group is None:
        return None
    c = compute_coords(obj, scene, volume)
    anim = keyframes.snapshot(obj, _modifier_prefix())
    inputs = _input_values(mod)
    try:
        _write_coords(obj, mod, volume.S.shape[0], c)
    except BaseException:
        keyframes.restore(obj, anim)
        _set_input_values(mod, inputs)
        raise
    UPDATE_ERRORS.pop(obj.session_uid, None)
    return c


def _remove_fcurve(obj, path: str) -> None:
    fcurves = keyframes.fcurve_collection(obj, create=False)
    if fcurves is not None:
        fc = fcurves.find(path, index=0)
        if fc is not None:
            fcurves.remove(fc)


def record_update_error(obj, exc: BaseException) -> str:
    """Remember why ``obj``'s motion was not updated (shown in the Motion panel); returns the text."""
    text = f"Motion not updated, the previous keyframes are kept: {exc}"
    UPDATE_ERRORS[obj.session_uid] = text
    return text


def update_error(obj) -> str | None:
    """Why the plane's motion does not follow its settings (None: it does)."""
    return UPDATE_ERRORS.get(obj.session_uid) if obj is not None else None


def settings_changed(obj, scene=None) -> None:
    p = obj.image_dynamics
    if obj.name in _BUSY or not p.has_motion or not p.auto_update:
        return
    _BUSY.add(obj.name)
    try:
        rebuild_keyframes(obj, scene or bpy.context.scene)
    except Exception as exc:  # a property update must never raise into the UI: the panel shows it
        print(f"Image Dynamics: {record_update_error(obj, exc)} ({obj.name})")
    finally:
        _BUSY.discard(obj.name)


# -- fingerprint (tests and sanity checks) ---------------------------------------------------------

def scene_fingerprint() -> tuple:
    """A summary of objects, meshes, attributes, modifiers (with their visibility and inputs) and
    F-curves (with their keys): equal before and after an operation that must leave the scene
    unchanged."""
    items = []
    for ob in sorted(bpy.data.objects, key=lambda o: o.name):
        mods = tuple((m.name, m.type, m.show_viewport, m.show_render,
                      getattr(getattr(m, "node_group", None), "name", None), _input_summary(m))
                     for m in ob.modifiers)
        fcs = keyframes.fcurve_collection(ob, create=False)
        fc_items = tuple(sorted(_fcurve_summary(fc) for fc in fcs)) if fcs is not None else ()
        props = ob.image_dynamics
        items.append(("OB", ob.name, ob.data.name if ob.data else None, mods, fc_items, props.has_motion,
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


def _input_summary(mod) -> tuple:
    if mod.type != "NODES":
        return ()
    return tuple(sorted((k, round(v, 6) if isinstance(v, float) else v) for k, v in _input_values(mod).items()))


def _fcurve_summary(fc) -> tuple:
    """Path, keys (a checksum of their values, handles and interpolation) and modifiers of an F-curve."""
    kp = fc.keyframe_points
    n = len(kp)
    crc = 0
    for name, dtype, width in (("co", np.float32, 2), ("handle_left", np.float32, 2),
                               ("handle_right", np.float32, 2), ("interpolation", np.int32, 1)):
        buf = np.empty(n * width, dtype=dtype)
        kp.foreach_get(name, buf)
        crc = zlib.crc32(buf.tobytes(), crc)
    return (fc.data_path, fc.array_index, n, crc, tuple(m.type for m in fc.modifiers))
