"""Property groups: per image plane (``Object.image_dynamics``) and per scene (``Scene.image_dynamics``)."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)
from bpy.types import PropertyGroup


def _motion_changed(self, context):
    """Rebuild the modal-coordinate keyframes after a motion setting changed (if auto-update)."""
    from . import motion

    obj = self.id_data
    if isinstance(obj, bpy.types.Object):
        motion.settings_changed(obj, context.scene if context else None)


def _pin_changed(self, context):
    from . import motion

    obj = self.id_data
    if isinstance(obj, bpy.types.Object):
        motion.update_pin(obj)


def _poke_changed(self, context):
    from . import motion

    obj = self.id_data
    if isinstance(obj, bpy.types.Object):
        motion.settings_changed(obj, context.scene if context else None)


def _is_wind(self, obj):
    return getattr(obj, "field", None) is not None and obj.field.type == "WIND"


class ImageDynamicsPoke(PropertyGroup):
    name: StringProperty(default="Poke")
    use: BoolProperty(name="Use", default=True, update=_poke_changed)
    frame: IntProperty(name="Frame", description="Frame of the release", default=1, update=_poke_changed)
    u: FloatProperty(name="X", description="Where on the photo (0 left, 1 right)", default=0.5, min=0.0, max=1.0,
                     update=_poke_changed)
    v: FloatProperty(name="Y", description="Where on the photo (0 bottom, 1 top)", default=0.5, min=0.0, max=1.0,
                     update=_poke_changed)
    angle: FloatProperty(name="Direction", description="Pull direction in the photo plane (0: right, 90: up)",
                         default=0.0, subtype="ANGLE", update=_poke_changed)
    strength: FloatProperty(name="Strength", description="How far the most mobile point is pulled, in motion pixels",
                            default=8.0, min=-1000.0, max=1000.0, update=_poke_changed)
    target: PointerProperty(name="Target", type=bpy.types.Object,
                            description="An object (e.g. an Empty) whose position sets the point and whose X axis "
                                        "sets the direction; overrides X, Y and Direction",
                            update=_poke_changed)


class ImageDynamicsPlane(PropertyGroup):
    is_plane: BoolProperty(default=False)
    image: PointerProperty(type=bpy.types.Image, name="Photo")
    photo_width: IntProperty(default=0)
    photo_height: IntProperty(default=0)
    grid_nx: IntProperty(default=0)
    grid_ny: IntProperty(default=0)
    width: FloatProperty(default=0.0)
    height: FloatProperty(default=0.0)
    has_motion: BoolProperty(default=False)
    num_modes: IntProperty(default=0)
    # The spectral volume (``motion.store_volume``): a hidden Text datablock holding it as ID
    # properties. Not on the mesh, whose ID properties the depsgraph copies on every frame.
    volume: PointerProperty(type=bpy.types.Text, name="Motion Data", options={"HIDDEN"})

    auto_update: BoolProperty(name="Auto Update", default=True,
                              description="Rewrite the motion keyframes whenever a setting changes")
    start_frame: IntProperty(name="Start", description="Frame where the motion starts", default=1,
                             update=_motion_changed)
    end_frame: IntProperty(name="End", description="Last frame of poke and wind motion (0: the scene's end)",
                           default=0, min=0, update=_motion_changed)
    speed: FloatProperty(name="Speed", description="Plays the motion faster (above 1) or in slow motion (below 1)",
                         default=1.0, min=0.01, max=100.0, update=_motion_changed)

    use_loop: BoolProperty(name="Loop", description="The predicted motion, as a seamless loop", default=True,
                           update=_motion_changed)
    loop_frames: IntProperty(name="Loop Length", description="Frames per loop (snaps the frequencies so it closes)",
                             default=150, min=2, max=100000, update=_motion_changed)
    loop_at_rest: BoolProperty(name="Start at Rest", default=True, update=_motion_changed,
                               description="The loop's first frame shows the undistorted photo")
    loop_amount: FloatProperty(name="Amount", default=1.0, min=0.0, max=100.0, update=_motion_changed,
                               description="Scale of the looping motion")

    pokes: CollectionProperty(type=ImageDynamicsPoke)
    active_poke: IntProperty(default=0)

    use_wind: BoolProperty(name="Wind", default=False, update=_motion_changed)
    wind_object: PointerProperty(name="Wind Field", type=bpy.types.Object, poll=_is_wind, update=_motion_changed,
                                 description="A Wind force field: its direction, strength (keyframes too) and noise")
    wind_gain: FloatProperty(name="Response", default=50.0, min=0.0, max=100000.0, update=_motion_changed,
                             description="Image-space acceleration (motion pixels / s^2) per unit of wind strength")

    damping_alpha: FloatProperty(name="Damping (mass)", default=0.4, min=0.0, max=100.0, update=_motion_changed,
                                 description="Rayleigh damping alpha of every mode (1/s)")
    damping_beta: FloatProperty(name="Damping (stiffness)", default=0.08, min=0.0, max=10.0,
                                update=_motion_changed, description="Rayleigh damping beta of every mode (s)")

    pin_border: BoolProperty(name="Pin Border", default=False, update=_pin_changed,
                             description="Keep the photo's edges still (motion fades out towards them)")
    pin_width: FloatProperty(name="Border Width", default=0.05, min=0.0, max=0.5, update=_pin_changed,
                             description="Width of the fade, as a fraction of the plane's shorter side")


class ImageDynamicsSceneSettings(PropertyGroup):
    mesh_resolution: IntProperty(name="Mesh Resolution", description="Vertices along the photo's longer side",
                                 default=128, min=2, max=4096)
    plane_height: FloatProperty(name="Plane Height", default=2.0, min=0.001, unit="LENGTH")
    shader: EnumProperty(name="Shader", items=(
        ("EMISSION", "Emission", "Shows the photo as it is (a backdrop)"),
        ("PRINCIPLED", "Principled", "Lit by the scene"),
    ), default="EMISSION")
    seed: IntProperty(name="Seed", default=0, min=0)
    steps: IntProperty(name="Steps", description="Sampling steps (0: the model's default)", default=0, min=0,
                       max=1000)
    loop_guidance: BoolProperty(name="Loop Guidance", default=False,
                                description="Ask the backend to steer the motion towards a loop of the plane's loop "
                                            "length (slower)")
    motion_scale: FloatProperty(name="Motion Resolution", default=1.0, min=0.1, max=8.0,
                                description="Size of the predicted motion relative to the model's resolution")


classes = (ImageDynamicsPoke, ImageDynamicsPlane, ImageDynamicsSceneSettings)


def register_properties() -> None:
    bpy.types.Object.image_dynamics = PointerProperty(type=ImageDynamicsPlane)
    bpy.types.Scene.image_dynamics = PointerProperty(type=ImageDynamicsSceneSettings)


def unregister_properties() -> None:
    del bpy.types.Scene.image_dynamics
    del bpy.types.Object.image_dynamics
