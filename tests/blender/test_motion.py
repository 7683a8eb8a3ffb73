"""The plane's motion in real Blender: evaluated vertices against the project's numpy motion math.

Every test imports a small synthetic spectral volume (motion only in the photo's left half) with
the add-on's Import Motion operator, sets the plane's motion options, and reads the
depsgraph-evaluated mesh at whole frames and sub-frames.
"""

from __future__ import annotations

import math
import os
import types

import numpy as np
import pytest
from blender_helpers import H, K, W, PlaneModel, evaluated, import_volume, synthetic_volume, write_volume

from image_dynamics.motion import loops, modal, spectral, volume_file


@pytest.fixture
def plane(addon, scene, tmp_path):
    """(bpy, pkg, obj, S, model) for a plane with the default synthetic volume."""
    bpy, pkg = addon
    S = synthetic_volume(0)
    obj = import_volume(bpy, write_volume(tmp_path / "v.npz", S))
    return bpy, pkg, obj, S, PlaneModel(pkg, obj, S)


def test_import_motion_builds_plane_with_modal_bases(plane):
    bpy, pkg, obj, S, model = plane
    p = obj.image_dynamics
    assert p.is_plane and p.has_motion and p.num_modes == K
    assert (p.grid_nx, p.grid_ny) == (128, 80)  # mesh resolution 128 along the longer side, aspect 32:20
    names = {a.name for a in obj.data.attributes}
    for k in range(K):
        assert {f"id_re_{k:02d}", f"id_im_{k:02d}"} <= names
    assert {"id_pin", "id_moving", "id_amplitude"} <= names
    mod = obj.modifiers["Image Dynamics"]
    assert mod.type == "NODES" and mod.node_group.name.startswith("Image Dynamics Modal Sum")
    # Re S_k of mode 3 at the vertices, in local units with y flipped
    re = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.attributes["id_re_03"].data.foreach_get("vector", re)
    expect = model.local(model.Sv[3].real)
    np.testing.assert_allclose(re.reshape(-1, 3), expect, atol=1e-6)
    # the stored volume round-trips exactly
    np.testing.assert_array_equal(pkg.motion.get_volume(obj).S, S)


def test_canonical_loop_matches_spectral_reconstruction(plane):
    """Loop of T = 150 frames, not started at rest, 30 fps: exactly ``spectral_to_motion``."""
    bpy, pkg, obj, S, model = plane
    p = obj.image_dynamics
    p.loop_frames = 150
    p.loop_at_rest = False
    amp = None
    for frame, sub in [(1, 0.0), (2, 0.0), (17, 0.0), (60, 0.0), (10, 0.5), (37, 0.25), (44, 0.75)]:
        t = frame + sub - 1.0  # the motion starts at frame 1
        D = spectral.spectral_to_motion(model.Sv, 150, times=np.array([t]))[0]
        expect = model.positions(D)
        got = evaluated(bpy, obj, frame, sub, attrs=("velocity",))
        amp = np.abs(expect - model.rest).max()
        assert amp > 0.1
        # whole frames: keys hold the exact values; sub-frames: cubic Hermite between keys
        tol = 2e-6 if sub == 0.0 else 2e-4 * amp
        np.testing.assert_allclose(got["co"], expect, atol=tol, err_msg=f"frame {frame}+{sub}")
        # the velocity attribute (units per second) is the analytic derivative
        V = loops.ModalMotion.from_spectral(model.Sv, 150).velocity([t], dtype=np.float64)[0] * 30.0
        vexp = model.local(V)
        vtol = 1e-5 * np.abs(vexp).max() + 1e-5 if sub == 0.0 else 1e-3 * np.abs(vexp).max()
        np.testing.assert_allclose(got["velocity"], vexp, atol=vtol)


def test_loop_of_other_length_is_seamless_and_snapped(plane):
    bpy, pkg, obj, S, model = plane
    p = obj.image_dynamics
    p.loop_frames = 48
    p.loop_at_rest = True
    first = evaluated(bpy, obj, 1, attrs=("velocity",))
    last = evaluated(bpy, obj, 49, attrs=("velocity",))
    np.testing.assert_allclose(first["co"], model.rest, atol=1e-6)  # starts on the undistorted photo
    np.testing.assert_allclose(last["co"], first["co"], atol=1e-6)  # ... and comes back to it
    vscale = np.abs(first["velocity"]).max()
    np.testing.assert_allclose(last["velocity"], first["velocity"], atol=1e-5 * vscale)  # no kink at the seam
    # the cyclic keys repeat beyond the first period
    np.testing.assert_allclose(evaluated(bpy, obj, 60)["co"], evaluated(bpy, obj, 12)["co"], atol=1e-6)
    snapped = loops.snap_to_loop(model.Sv, 48)
    for frame, sub in [(9, 0.0), (30, 0.5)]:
        D = snapped.displacement([frame + sub - 1.0], dtype=np.float64)[0]
        expect = model.positions(D)
        tol = 2e-6 if sub == 0 else 2e-4 * np.abs(expect - model.rest).max()
        np.testing.assert_allclose(evaluated(bpy, obj, frame, sub)["co"], expect, atol=tol)


def _damped(q0: complex, f_hz: float, t: np.ndarray, alpha=0.4, beta=0.08) -> np.ndarray:
    """Textbook under-damped oscillator released from q0 at rest (independent of modal.py)."""
    w = 2 * math.pi * f_hz
    g = alpha + beta * w * w
    wd = math.sqrt(w * w - g * g / 4)
    return q0 * np.exp(-g * t / 2) * (np.cos(wd * t) + g / (2 * wd) * np.sin(wd * t))


def test_poke_response_is_the_damped_oscillator(addon, scene, tmp_path):
    bpy, pkg = addon
    S = synthetic_volume(1, modes=[5])  # one mode: 1 Hz
    obj = import_volume(bpy, write_volume(tmp_path / "v.npz", S))
    model = PlaneModel(pkg, obj, S)
    p = obj.image_dynamics
    p.use_loop = False
    res = bpy.ops.image_dynamics.add_poke(source="UV", u=0.25, v=0.5, angle=math.radians(30), strength=6.0, frame=10)
    assert res == {"FINISHED"}
    px = (0.25 * W - 0.5, 0.5 * H - 0.5)
    d = model.grid.local_dir_to_pixel(math.cos(math.radians(30)), math.sin(math.radians(30)), W, H)
    q0 = modal.poke_coordinates(S, px, d, 6.0)[5]
    assert abs(q0) > 0
    before = evaluated(bpy, obj, 9)["co"]
    np.testing.assert_allclose(before, model.rest, atol=1e-6)  # nothing moves before the poke
    for frame, sub in [(10, 0.0), (13, 0.0), (25, 0.0), (40, 0.5)]:
        t = (frame + sub - 10) / 30.0
        q = np.zeros(K, complex)
        q[5] = _damped(q0, 1.0, np.array([t]))[0]
        D = modal.displacement_from_coords(model.Sv, q)
        expect = model.positions(D)
        got = evaluated(bpy, obj, frame, sub)["co"]
        amp = np.abs(expect - model.rest).max()
        np.testing.assert_allclose(got, expect, atol=2e-6 + (3e-3 * amp if sub else 1e-5 * amp))
    # a poke at a still part of the photo (right half) moves nothing there
    assert np.abs(evaluated(bpy, obj, 13)["co"] - model.rest)[model.rest[:, 0] > 0.2].max() < 1e-6


def test_pokes_superpose(plane):
    bpy, pkg, obj, S, model = plane
    obj.image_dynamics.use_loop = False
    bpy.ops.image_dynamics.add_poke(source="UV", u=0.2, v=0.3, angle=0.0, strength=4.0, frame=5)
    a = evaluated(bpy, obj, 20)["co"] - model.rest
    obj.image_dynamics.pokes[0].use = False
    bpy.ops.image_dynamics.add_poke(source="UV", u=0.4, v=0.7, angle=math.radians(90), strength=-3.0, frame=12)
    b = evaluated(bpy, obj, 20)["co"] - model.rest
    obj.image_dynamics.pokes[0].use = True
    both = evaluated(bpy, obj, 20)["co"] - model.rest
    assert np.abs(a).max() > 1e-3 and np.abs(b).max() > 1e-3
    np.testing.assert_allclose(both, a + b, atol=1e-5)


def test_poke_from_3d_cursor_and_from_an_empty(plane):
    bpy, pkg, obj, S, model = plane
    obj.image_dynamics.use_loop = False
    p = obj.image_dynamics
    scene = bpy.context.scene
    scene.cursor.location = (-0.5 * p.width / 2, 0.0, 0.0)  # u = 0.25, v = 0.5
    scene.frame_set(5)
    assert bpy.ops.image_dynamics.add_poke(source="CURSOR", strength=5.0) == {"FINISHED"}
    poke = p.pokes[0]
    assert poke.frame == 5 and abs(poke.u - 0.25) < 1e-6 and abs(poke.v - 0.5) < 1e-6
    via_cursor = evaluated(bpy, obj, 15)["co"]
    empty = bpy.data.objects.new("aim", None)
    scene.collection.objects.link(empty)
    empty.location = scene.cursor.location
    bpy.context.view_layer.update()  # matrix_world follows the location
    poke.target = empty
    np.testing.assert_allclose(evaluated(bpy, obj, 15)["co"], via_cursor, atol=1e-6)  # same point, X axis = angle 0
    empty.rotation_euler = (0, 0, math.pi)  # aim the other way: the motion flips
    bpy.context.view_layer.update()
    bpy.ops.image_dynamics.update_motion()
    np.testing.assert_allclose(evaluated(bpy, obj, 15)["co"] - model.rest, -(via_cursor - model.rest), atol=1e-5)
    scene.cursor.location = (10.0, 0.0, 0.0)
    with pytest.raises(RuntimeError, match="3D cursor is not over the photo"):  # a clear refusal
        bpy.ops.image_dynamics.add_poke(source="CURSOR")


def _wind(bpy, strength_keys):
    bpy.ops.object.effector_add(type="WIND", rotation=(0.0, math.radians(90), 0.0))  # field Z along the plane's +X
    wind = bpy.context.active_object
    assert wind.field.type == "WIND"
    wind.field.noise = 0.0
    for frame, value in strength_keys:
        wind.field.strength = value
        wind.keyframe_insert("field.strength", frame=frame)
    return wind


def test_wind_strength_keyframes_drive_the_response(plane):
    bpy, pkg, obj, S, model = plane
    p = obj.image_dynamics
    wind = _wind(bpy, [(1, 0.0), (20, 2.0), (40, 0.0)])
    bpy.context.view_layer.objects.active = obj
    p.use_loop = False
    p.wind_object = wind
    p.wind_gain = 20000.0  # random bases are incoherent: little net force per unit of wind
    p.use_wind = True
    frames = np.arange(1, 61, dtype=float)
    fc = pkg.keyframes.find_fcurve(wind, "field.strength")
    strengths = np.array([fc.evaluate(f) for f in frames]) * 20000.0
    freqs = np.arange(K) * 30.0 / 150.0
    forces = modal.modal_forces_from_wind(S, np.tile([1.0, 0.0], (60, 1)), strengths)
    q = modal.force_response(freqs, forces, 1.0 / 30.0)
    for frame in (10, 30, 55):
        D = modal.displacement_from_coords(model.Sv, q[frame - 1])
        expect = model.positions(D)
        got = evaluated(bpy, obj, frame)["co"]
        assert np.abs(expect - model.rest).max() > 1e-3
        np.testing.assert_allclose(got, expect, atol=1e-5)
    at30 = evaluated(bpy, obj, 30)["co"] - model.rest
    # editing the wind's strength keyframes changes the motion (the response is linear in them)
    for kp in fc.keyframe_points:
        kp.co.y *= 3.0
        kp.handle_left.y *= 3.0
        kp.handle_right.y *= 3.0
    bpy.ops.image_dynamics.update_motion()
    np.testing.assert_allclose(evaluated(bpy, obj, 30)["co"] - model.rest, 3.0 * at30, atol=1e-5)
    # the field's noise adds gusts (deterministic for the field's seed)
    wind.field.noise = 5.0
    bpy.ops.image_dynamics.update_motion()
    gusty = evaluated(bpy, obj, 30)["co"] - model.rest
    assert np.abs(gusty - 3.0 * at30).max() > 1e-4
    bpy.ops.image_dynamics.update_motion()
    np.testing.assert_array_equal(evaluated(bpy, obj, 30)["co"] - model.rest, gusty)
    wind.field.noise = 0.0
    # wind blowing straight through the photo (along its normal) pushes nothing
    wind.rotation_euler = (0.0, 0.0, 0.0)
    bpy.ops.image_dynamics.update_motion()
    np.testing.assert_allclose(evaluated(bpy, obj, 30)["co"], model.rest, atol=1e-6)


def test_magnify_and_speed(plane):
    bpy, pkg, obj, S, model = plane
    p = obj.image_dynamics
    p.loop_frames = 150
    ref13 = evaluated(bpy, obj, 13)["co"] - model.rest
    ref25 = evaluated(bpy, obj, 25)["co"] - model.rest
    mod = obj.modifiers["Image Dynamics"]
    ident = pkg.geometry_nodes.input_identifiers(mod.node_group)["Magnify"]
    mod[ident] = 2.5
    obj.update_tag()
    np.testing.assert_allclose(evaluated(bpy, obj, 13)["co"] - model.rest, 2.5 * ref13, atol=1e-5)
    mod[ident] = 1.0
    obj.update_tag()
    p.loop_frames = 75
    p.speed = 2.0  # twice as fast: frame 13 shows what frame 25 showed (loop of 150 motion frames)
    np.testing.assert_allclose(evaluated(bpy, obj, 13)["co"] - model.rest, ref25, atol=1e-5)


def test_pinned_border_holds_the_edges(plane):
    bpy, pkg, obj, S, model = plane
    p = obj.image_dynamics
    p.pin_border = True
    p.pin_width = 0.1
    got = evaluated(bpy, obj, 20)["co"]
    uv = model.grid.vertex_uv()
    edge = (uv[:, 0] == 0) | (uv[:, 1] == 0) | (uv[:, 1] == 1)
    inner = (uv[:, 0] > 0.1) & (uv[:, 0] < 0.4) & (uv[:, 1] > 0.2) & (uv[:, 1] < 0.8)
    np.testing.assert_allclose(got[edge], model.rest[edge], atol=1e-6)
    p.pin_border = False
    free = evaluated(bpy, obj, 20)["co"]
    assert np.abs(free[edge] - model.rest[edge]).max() > 1e-2
    np.testing.assert_allclose(got[inner], free[inner], atol=1e-6)


def test_export_then_import_round_trip(plane, tmp_path):
    bpy, pkg, obj, S, model = plane
    out = tmp_path / "out.npz"
    assert bpy.ops.image_dynamics.export_motion(filepath=str(out)) == {"FINISHED"}
    vol = volume_file.load_volume(out)
    np.testing.assert_array_equal(vol.S, S)
    assert vol.image is not None and vol.image.shape == (H, W, 3)
    # onto a fresh plane: same motion
    before = evaluated(bpy, obj, 21)["co"]
    bpy.context.view_layer.objects.active = None
    obj2 = import_volume(bpy, out)
    assert obj2 != obj
    np.testing.assert_allclose(evaluated(bpy, obj2, 21)["co"], before, atol=1e-6)


def test_bake_to_pc2_and_mesh_cache_plays_the_same_frames(plane, tmp_path):
    bpy, pkg, obj, S, model = plane
    bpy.context.scene.frame_end = 12
    ref = {f: evaluated(bpy, obj, f)["co"] for f in (1, 2, 7, 12)}
    path = tmp_path / "bake.pc2"
    assert bpy.ops.image_dynamics.bake_cache(filepath=str(path)) == {"FINISHED"}
    pos, start, rate = pkg.core.pc2.read_pc2(path)
    assert pos.shape == (12, len(obj.data.vertices), 3) and start == 1.0 and rate == 1.0
    assert obj.modifiers["Image Dynamics Cache"].type == "MESH_CACHE"
    assert not obj.modifiers["Image Dynamics"].show_render
    for f, co in ref.items():  # not one frame off (Mesh Cache's frame_start)
        np.testing.assert_allclose(evaluated(bpy, obj, f)["co"], co, atol=1e-6)


def test_fit_to_camera_fills_the_frame(plane):
    bpy, pkg, obj, S, model = plane
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = 64, 48
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.location = (1.0, -6.0, 2.0)
    cam.rotation_euler = (math.radians(75), 0.0, math.radians(10))
    bpy.context.view_layer.update()
    for mode in ("FILL", "FIT"):
        assert bpy.ops.image_dynamics.fit_to_camera(distance=4.0, mode=mode) == {"FINISHED"}
        bpy.context.view_layer.update()
        mw = obj.matrix_world
        p = obj.image_dynamics
        corners = [mw @ Vector((sx * p.width / 2, sy * p.height / 2, 0)) for sx in (-1, 1) for sy in (-1, 1)]
        ndc = np.array([tuple(world_to_camera_view(scene, cam, c)) for c in corners])
        np.testing.assert_allclose(ndc[:, 2], 4.0, atol=1e-4)  # all at the chosen distance: facing the camera
        lo, hi = ndc[:, :2].min(axis=0), ndc[:, :2].max(axis=0)
        if mode == "FILL":  # covers the frame, exactly along one axis
            assert np.all(lo <= 1e-4) and np.all(hi >= 1 - 1e-4)
            assert min(abs(lo).min(), abs(hi - 1).min()) < 1e-4
        else:  # inside the frame, touching it along one axis
            assert np.all(lo >= -1e-4) and np.all(hi <= 1 + 1e-4)


def test_volume_is_kept_off_the_mesh_shared_by_duplicates_and_saved(plane, tmp_path):
    """The volume lives in a hidden Text datablock (the depsgraph copies a mesh's ID properties on
    every frame); duplicates share it, a new volume gets a new one, and a deleted plane's is not
    saved again."""
    bpy, pkg, obj, S, model = plane
    prefix = pkg.core.volume_io.PROP_PREFIX
    block = obj.image_dynamics.volume
    assert block is not None and block.users == 1 and block.name.startswith(".")
    assert not [k for k in obj.data.keys() if k.startswith(prefix)]
    ref = evaluated(bpy, obj, 21)["co"]
    for linked in (False, True):  # Shift+D, Alt+D
        bpy.ops.object.select_all(action="DESELECT")
        obj.select_set(True)
        bpy.context.view_layer.objects.active = obj
        assert bpy.ops.object.duplicate(linked=linked) == {"FINISHED"}
        dup = bpy.context.active_object
        assert dup != obj and dup.image_dynamics.volume == block
        np.testing.assert_allclose(evaluated(bpy, dup, 21)["co"], ref, atol=1e-7)
    assert block.users == 3
    S2 = synthetic_volume(3)[:8]
    pkg.motion.apply_volume(dup, pkg.core.volume_io.SpectralVolume(S=S2))
    assert dup.image_dynamics.volume != block and block.users == 2
    np.testing.assert_array_equal(pkg.motion.get_volume(dup).S, S2)
    np.testing.assert_array_equal(pkg.motion.get_volume(obj).S, S)
    names = (obj.name, dup.name)
    path = tmp_path / "planes.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    obj, dup = (bpy.data.objects[n] for n in names)
    np.testing.assert_array_equal(pkg.motion.get_volume(obj).S, S)
    np.testing.assert_array_equal(pkg.motion.get_volume(dup).S, S2)
    np.testing.assert_allclose(evaluated(bpy, obj, 21)["co"], ref, atol=1e-7)
    assert len(bpy.data.texts) == 2
    for ob in list(bpy.data.objects):
        bpy.data.objects.remove(ob)
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    assert len(bpy.data.texts) == 0


def test_failed_apply_leaves_the_scene_exactly_as_it_was(plane, monkeypatch):
    bpy, pkg, obj, S, model = plane
    before = pkg.motion.scene_fingerprint()

    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure while writing keyframes")

    monkeypatch.setattr(pkg.motion, "_write_coords", boom)  # the last step: mesh, volume, modifier are in
    vol = pkg.core.volume_io.SpectralVolume(S=synthetic_volume(7)[:8])
    with pytest.raises(RuntimeError):
        pkg.motion.apply_volume(obj, vol)
    assert pkg.motion.scene_fingerprint() == before


def test_no_motion_source_keeps_the_photo_still(plane):
    bpy, pkg, obj, S, model = plane
    obj.image_dynamics.use_loop = False
    np.testing.assert_allclose(evaluated(bpy, obj, 17)["co"], model.rest, atol=1e-7)


def test_nothing_is_written_into_the_extension_folder(plane, tmp_path):
    bpy, pkg, obj, S, model = plane
    root = os.path.dirname(pkg.__file__)

    def listing():
        return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
                      if "__pycache__" not in d)

    before = listing()
    bpy.ops.image_dynamics.export_motion(filepath=str(tmp_path / "x.npz"))
    bpy.context.scene.frame_end = 3
    bpy.ops.image_dynamics.bake_cache()  # no path, unsaved .blend: the extension's user folder
    assert listing() == before
    cache = obj.modifiers["Image Dynamics Cache"].filepath
    assert os.path.isfile(cache) and not cache.startswith(root)


class _Layout:
    """Records what a panel draws; any layout call returns another recorder."""

    def __init__(self, log):
        self.__dict__["log"] = log

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.log.append((name, args, kwargs))
            return _Layout(self.log)

        return call

    def __setattr__(self, name, value):
        self.log.append(("set", name, value))


def test_panels_and_preferences_draw_without_errors(plane):
    bpy, pkg, obj, S, model = plane
    bpy.ops.image_dynamics.add_poke(source="UV", u=0.3, v=0.3, frame=3)
    pkg.prediction.MESSAGES[pkg.prediction.plane_key(obj)] = (
        "ERROR", "A long message that has to be wrapped over several lines " * 3)
    log = []
    for cls in pkg.panels.classes:
        fake = types.SimpleNamespace(layout=_Layout(log))
        if hasattr(cls, "poll"):
            assert cls.poll(bpy.context)
        cls.draw(fake, bpy.context)
    prefs = bpy.context.preferences.addons[pkg.__name__].preferences
    pkg.preferences.IMAGE_DYNAMICS_AddonPreferences.draw(types.SimpleNamespace(
        layout=_Layout(log), **{k: getattr(prefs, k) for k in ("use_local_backend", "model_source")}), bpy.context)
    labels = [c[2].get("text", "") for c in log if c[0] == "label"]
    assert not any(t.startswith("Image Dynamics:") for t in labels), labels  # the draw guard never fired
    assert "A long message that has to be wrapped over" in labels  # the plane's message is drawn, wrapped
    ops = {c[1][0] for c in log if c[0] == "operator"}
    assert {"image_dynamics.predict_motion", "image_dynamics.import_photo", "image_dynamics.add_poke",
            "image_dynamics.fit_to_camera", "image_dynamics.setup_passes", "image_dynamics.test_connection"} <= ops


# -- failures leave the scene as it was (keyframes included) and say what to do --------------------

def _motion_keys(bpy, pkg, obj):
    """Every F-curve of the plane: path -> (N, 2) key values (what the fingerprint's checksum covers)."""
    out = {}
    for fc in pkg.keyframes.fcurve_collection(obj, create=False):
        co = np.empty(len(fc.keyframe_points) * 2, np.float32)
        fc.keyframe_points.foreach_get("co", co)
        out[fc.data_path] = co.reshape(-1, 2)
    return out


def test_a_loop_shorter_than_two_motion_frames_fails_cleanly_and_keeps_the_keyframes(plane, tmp_path):
    """Speed 0.01 at 24 fps: a 150-frame loop is 1.875 frames of the motion. Applying a new motion
    must fail before anything changes (the keyframes were deleted first before)."""
    bpy, pkg, obj, S, model = plane
    scene = bpy.context.scene
    p = obj.image_dynamics
    mod = obj.modifiers["Image Dynamics"]
    magnify = pkg.geometry_nodes.data_path(mod, "Magnify")
    obj.keyframe_insert(magnify, frame=1)  # the user's own key on the modifier must survive too
    moving = evaluated(bpy, obj, 20)["co"]
    keys = _motion_keys(bpy, pkg, obj)
    p.auto_update = False
    scene.render.fps = 24
    p.speed = 0.01
    before = pkg.motion.scene_fingerprint()
    # Import Motion onto the plane (the npz path of a prediction result is the same apply_volume)
    other = write_volume(tmp_path / "other.npz", synthetic_volume(5)[:8])
    with pytest.raises(RuntimeError, match="Loop Length at this Speed is shorter than 2 frames of the motion.*"
                                           "raise Loop Length or Speed"):
        bpy.ops.image_dynamics.import_motion(filepath=str(other))
    assert pkg.motion.scene_fingerprint() == before
    with pytest.raises(ValueError, match="raise Loop Length or Speed"):
        pkg.motion.apply_volume(obj, pkg.core.volume_io.SpectralVolume(S=synthetic_volume(5)[:8]))
    assert pkg.motion.scene_fingerprint() == before
    # Update Motion refuses the same way: the keyframes stay and the panel keeps the reason
    with pytest.raises(RuntimeError, match="previous keyframes are kept.*raise Loop Length or Speed"):
        bpy.ops.image_dynamics.update_motion()
    assert pkg.motion.scene_fingerprint() == before
    assert "raise Loop Length or Speed" in pkg.motion.update_error(obj)
    got = _motion_keys(bpy, pkg, obj)
    assert got.keys() == keys.keys()
    for path in keys:
        np.testing.assert_array_equal(got[path], keys[path])
    scene.render.fps = 30
    np.testing.assert_allclose(evaluated(bpy, obj, 20)["co"], moving, atol=1e-7)
    # a setting that works again clears the message
    p.speed = 1.0
    assert bpy.ops.image_dynamics.update_motion() == {"FINISHED"}
    assert pkg.motion.update_error(obj) is None


def test_auto_update_failure_keeps_the_keyframes_and_the_motion_panel_shows_why(plane):
    bpy, pkg, obj, S, model = plane
    scene = bpy.context.scene
    p = obj.image_dynamics
    scene.render.fps = 24
    scene.frame_set(1)
    ref = evaluated(bpy, obj, 20)["co"]
    before = pkg.motion.scene_fingerprint()
    p.speed = 0.01  # auto update: the property's update callback cannot raise, so it records the reason
    assert pkg.motion.scene_fingerprint() == before
    np.testing.assert_allclose(evaluated(bpy, obj, 20)["co"], ref, atol=1e-7)
    error = pkg.motion.update_error(obj)
    assert "previous keyframes are kept" in error and "raise Loop Length or Speed" in error
    log = []
    pkg.panels.IMAGE_DYNAMICS_PT_motion.draw(types.SimpleNamespace(layout=_Layout(log)), bpy.context)
    labels = [c[2] for c in log if c[0] == "label"]
    assert not any(lab.get("text", "").startswith("Image Dynamics:") for lab in labels)  # drew without error
    shown = " ".join(lab.get("text", "") for lab in labels if lab.get("icon") == "ERROR")
    assert "raise Loop Length or Speed" in shown
    # a poke added meanwhile stays (as any setting) and is reported as not applied, not as done
    assert bpy.ops.image_dynamics.add_poke(source="UV", u=0.3, v=0.3, frame=3) == {"FINISHED"}
    assert len(p.pokes) == 1 and "raise Loop Length or Speed" in pkg.motion.update_error(obj)
    np.testing.assert_allclose(evaluated(bpy, obj, 20)["co"], ref, atol=1e-7)
    p.loop_frames = 400  # 400 * 0.0125 = 5 motion frames: works, clears the message, rewrites the keys
    assert pkg.motion.update_error(obj) is None
    assert pkg.motion.scene_fingerprint() != before
    log.clear()
    pkg.panels.IMAGE_DYNAMICS_PT_motion.draw(types.SimpleNamespace(layout=_Layout(log)), bpy.context)
    assert not [c for c in log if c[0] == "label" and c[2].get("icon") == "ERROR"]


@pytest.mark.parametrize("fps, num_frames, match", [
    (0.0, 150, "frame rate of 0 fps"),
    (30.0, 20, "16 frequency bins, but a motion of 20 frames has at most 10"),
])
def test_import_rejects_a_volume_no_motion_can_be_made_of(addon, scene, tmp_path, fps, num_frames, match):
    bpy, pkg = addon
    path = tmp_path / "bad.npz"
    np.savez(path, S=synthetic_volume(0), fps=np.float64(fps), num_frames=np.int64(num_frames))  # not our writer
    before = pkg.motion.scene_fingerprint()
    images = len(bpy.data.images)
    with pytest.raises(RuntimeError, match=match):  # no plane yet: none is made
        bpy.ops.image_dynamics.import_motion(filepath=str(path))
    assert pkg.motion.scene_fingerprint() == before and len(bpy.data.images) == images
    obj = import_volume(bpy, write_volume(tmp_path / "good.npz", synthetic_volume(0)))
    before = pkg.motion.scene_fingerprint()
    with pytest.raises(RuntimeError, match=match):  # onto a plane with motion: it keeps its motion
        bpy.ops.image_dynamics.import_motion(filepath=str(path))
    assert pkg.motion.scene_fingerprint() == before
    bad = pkg.core.volume_io.SpectralVolume(S=synthetic_volume(0), fps=30.0, num_frames=150)
    bad.fps, bad.num_frames = fps, num_frames  # a volume made valid, then changed (a prediction result, say)
    with pytest.raises(pkg.core.volume_io.VolumeFileError, match=match):  # a prediction result, say
        pkg.motion.apply_volume(obj, bad)
    assert pkg.motion.scene_fingerprint() == before


def test_a_failure_while_writing_keyframes_puts_the_old_ones_back(plane, monkeypatch):
    """Past the computation only Blender can fail; the F-curves (values, handles, Cycles modifiers,
    the user's Magnify key) and the modifier inputs still come back exactly."""
    bpy, pkg, obj, S, model = plane
    mod = obj.modifiers["Image Dynamics"]
    obj.keyframe_insert(pkg.geometry_nodes.data_path(mod, "Magnify"), frame=7)
    ref = evaluated(bpy, obj, 20)["co"]
    before = pkg.motion.scene_fingerprint()
    write = pkg.keyframes.write_hermite
    calls = []

    def fail_later(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 9:
            raise RuntimeError("simulated failure in the middle of the keyframes")
        return write(*args, **kwargs)

    monkeypatch.setattr(pkg.keyframes, "write_hermite", fail_later)
    with pytest.raises(RuntimeError, match="simulated"):  # a new motion with fewer modes
        pkg.motion.apply_volume(obj, pkg.core.volume_io.SpectralVolume(S=synthetic_volume(7)[:8]))
    assert pkg.motion.scene_fingerprint() == before
    calls.clear()
    with pytest.raises(RuntimeError, match="simulated"):
        bpy.ops.image_dynamics.update_motion()
    assert pkg.motion.scene_fingerprint() == before
    calls.clear()
    obj.image_dynamics.loop_at_rest = False  # auto update: the same, and the panel is told
    assert pkg.motion.scene_fingerprint() == before
    assert "simulated" in pkg.motion.update_error(obj)
    monkeypatch.undo()
    np.testing.assert_allclose(evaluated(bpy, obj, 20)["co"], ref, atol=1e-7)
    # with fewer modes the old modes' keyframes go (no F-curves left on inputs that no longer exist)
    pkg.motion.apply_volume(obj, pkg.core.volume_io.SpectralVolume(S=synthetic_volume(7)[:8]))
    ids = set(pkg.geometry_nodes.input_identifiers(obj.modifiers["Image Dynamics"].node_group).values())
    paths = [fc.data_path for fc in pkg.keyframes.fcurve_collection(obj, create=False)]
    assert len(paths) == 4 * 8 + 1
    assert all(path.split('"]["')[1].rstrip('"]') in ids for path in paths)


def test_a_first_apply_that_fails_leaves_no_action_behind(addon, scene, tmp_path, monkeypatch):
    bpy, pkg = addon
    image = bpy.data.images.new("photo", W, H)
    obj = pkg.plane.create_plane(bpy.context, image, 16, 2.0)
    before = pkg.motion.scene_fingerprint()

    write = pkg.keyframes.write_hermite
    calls = []

    def fail_second(*args, **kwargs):  # the first call has made the action
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated failure while writing keyframes")
        return write(*args, **kwargs)

    monkeypatch.setattr(pkg.keyframes, "write_hermite", fail_second)
    with pytest.raises(RuntimeError, match="simulated"):
        pkg.motion.apply_volume(obj, pkg.core.volume_io.SpectralVolume(S=synthetic_volume(0)))
    assert len(calls) == 2
    assert pkg.motion.scene_fingerprint() == before
    assert obj.animation_data is None and not obj.modifiers and not bpy.data.actions


def test_edit_mode_refuses_to_apply_and_changes_nothing(plane, tmp_path):
    """In Edit Mode Blender ignores ``obj.data = mesh``: the motion would be half applied."""
    bpy, pkg, obj, S, model = plane
    bpy.ops.object.mode_set(mode="EDIT")
    assert obj.mode == "EDIT"
    before = pkg.motion.scene_fingerprint()
    vol = pkg.core.volume_io.SpectralVolume(S=synthetic_volume(4)[:8])
    with pytest.raises(pkg.motion.PlaneModeError, match=f"Leave Edit Mode on {obj.name} to apply the motion"):
        pkg.motion.apply_volume(obj, vol)
    assert pkg.motion.scene_fingerprint() == before
    with pytest.raises(RuntimeError, match="Leave Edit Mode"):
        bpy.ops.image_dynamics.import_motion(filepath=str(write_volume(tmp_path / "o.npz", synthetic_volume(4))))
    assert pkg.motion.scene_fingerprint() == before
    bpy.ops.object.mode_set(mode="OBJECT")
    pkg.motion.apply_volume(obj, vol)  # the same result applies once back in Object Mode
    assert obj.image_dynamics.num_modes == 8 and "id_re_07" in obj.data.attributes and obj.data.users == 1


def test_pin_border_changed_in_edit_mode_says_so_and_update_motion_applies_it(plane):
    """Leaving Edit Mode rewrites the mesh from its edit copy: a pin written meanwhile would be lost."""
    bpy, pkg, obj, S, model = plane
    pins = lambda: np.array([d.value for d in obj.data.attributes["id_pin"].data])  # noqa: E731
    still = pins()
    bpy.ops.object.mode_set(mode="EDIT")
    obj.image_dynamics.pin_border = True
    assert "Pin Border was not applied" in pkg.motion.update_error(obj)
    with pytest.raises(RuntimeError, match="Leave Edit Mode"):
        bpy.ops.image_dynamics.update_motion()
    bpy.ops.object.mode_set(mode="OBJECT")
    np.testing.assert_array_equal(pins(), still)  # not half applied
    assert bpy.ops.image_dynamics.update_motion() == {"FINISHED"}
    assert pkg.motion.update_error(obj) is None
    assert pins().min() < still.min() == 1.0  # the border is pinned now (weight 0 at the edge)


def test_use_active_image_plane_refuses_in_edit_mode(addon, scene):
    bpy, pkg = addon
    bpy.ops.mesh.primitive_plane_add(size=2.0)
    obj = bpy.context.active_object
    image = bpy.data.images.new("photo", W, H)
    obj.data.materials.append(pkg.plane.make_material(image))
    bpy.ops.object.mode_set(mode="EDIT")
    before = pkg.motion.scene_fingerprint()
    with pytest.raises(RuntimeError, match=f"Leave Edit Mode on {obj.name}"):
        bpy.ops.image_dynamics.use_active_plane(resolution=16)
    assert pkg.motion.scene_fingerprint() == before and not obj.image_dynamics.is_plane
    bpy.ops.object.mode_set(mode="OBJECT")
    assert bpy.ops.image_dynamics.use_active_plane(resolution=16) == {"FINISHED"}
    p = obj.image_dynamics
    assert p.is_plane and len(obj.data.vertices) == p.grid_nx * p.grid_ny


def test_a_failed_bake_changes_nothing(plane, tmp_path):
    bpy, pkg, obj, S, model = plane
    scene = bpy.context.scene
    scene.frame_end = 6
    scene.frame_set(3)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the bake wants a folder")
    bad = blocker / "bake.pc2"
    before = pkg.motion.scene_fingerprint()
    with pytest.raises(RuntimeError, match="Bake failed, nothing was changed: cannot write .*folder you can write"):
        bpy.ops.image_dynamics.bake_cache(filepath=str(bad))
    assert pkg.motion.scene_fingerprint() == before and scene.frame_current == 3
    # with an earlier bake in place: it keeps playing, its file intact
    good = tmp_path / "bake.pc2"
    assert bpy.ops.image_dynamics.bake_cache(filepath=str(good)) == {"FINISHED"}
    data = good.read_bytes()
    before = pkg.motion.scene_fingerprint()
    with pytest.raises(RuntimeError, match="Bake failed, nothing was changed"):
        bpy.ops.image_dynamics.bake_cache(filepath=str(bad))
    assert pkg.motion.scene_fingerprint() == before and good.read_bytes() == data
    assert not obj.modifiers["Image Dynamics"].show_viewport
    # baking again over a bake: the motion itself is baked (not the old cache), one cache modifier
    obj.image_dynamics.loop_frames = 48  # new keyframes; the old bake still plays: look at the nodes
    obj.modifiers["Image Dynamics Cache"].show_viewport = False
    obj.modifiers["Image Dynamics"].show_viewport = True
    ref = {f: evaluated(bpy, obj, f)["co"] for f in (2, 5)}
    obj.modifiers["Image Dynamics Cache"].show_viewport = True
    obj.modifiers["Image Dynamics"].show_viewport = False
    assert bpy.ops.image_dynamics.bake_cache(filepath=str(good)) == {"FINISHED"}
    assert [m.name for m in obj.modifiers] == ["Image Dynamics", "Image Dynamics Cache"]
    for f, co in ref.items():
        np.testing.assert_allclose(evaluated(bpy, obj, f)["co"], co, atol=1e-6)
    assert not list(tmp_path.glob("*.partial"))


def test_new_motion_replaces_a_bake_and_rendered_frames(plane, tmp_path, monkeypatch):
    """A plane that plays a bake or backend frames of its old motion shows the new motion after an
    apply (a new prediction); a failed apply leaves the bake in place."""
    bpy, pkg, obj, S, model = plane
    scene = bpy.context.scene
    scene.frame_end = 4
    assert bpy.ops.image_dynamics.bake_cache(filepath=str(tmp_path / "b.pc2")) == {"FINISHED"}
    S2 = synthetic_volume(9)
    before = pkg.motion.scene_fingerprint()
    monkeypatch.setattr(pkg.keyframes, "write_hermite", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        pkg.motion.apply_volume(obj, pkg.core.volume_io.SpectralVolume(S=S2))
    assert pkg.motion.scene_fingerprint() == before
    monkeypatch.undo()
    pkg.motion.apply_volume(obj, pkg.core.volume_io.SpectralVolume(S=S2))
    mod = obj.modifiers["Image Dynamics"]
    assert "Image Dynamics Cache" not in obj.modifiers and mod.show_viewport and mod.show_render
    new = PlaneModel(pkg, obj, S2)
    t = 2.0 - 1.0
    expect = new.positions(loops.snap_to_loop(new.Sv, 150).displacement([t], dtype=np.float64)[0])
    np.testing.assert_allclose(evaluated(bpy, obj, 2)["co"], expect, atol=1e-5)
    # frames rendered on the backend (applied here directly; the render itself is test_render_frames')
    frames = np.zeros((4, H, W, 3), np.uint8)
    pkg.frame_render.apply_frames(obj, scene, frames, 1)
    assert pkg.frame_render.shows_frames(obj) and not mod.show_viewport
    pkg.motion.apply_volume(obj, pkg.core.volume_io.SpectralVolume(S=synthetic_volume(0)))
    assert not pkg.frame_render.shows_frames(obj) and mod.show_viewport and mod.show_render
    assert any("Back to the mesh motion" in text for _, text in pkg.frame_render.MESSAGES.values())
