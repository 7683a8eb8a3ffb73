"""Image planes: create one for a photo, adopt an existing one, fit one to the camera."""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix, Vector

from . import motion
from .core import grid as G
from .core import imaging


def make_material(image, shader: str = "EMISSION"):
    mat = bpy.data.materials.new(f"{image.name} Image Dynamics")
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True
    nt = mat.node_tree
    nodes, links = nt.nodes, nt.links
    for n in list(nodes):
        nodes.remove(n)
    out = nodes.new("ShaderNodeOutputMaterial")
    out.location = (400, 0)
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.interpolation = "Linear"
    tex.extension = "EXTEND"
    tex.location = (-400, 0)
    uv = nodes.new("ShaderNodeUVMap")
    uv.uv_map = "UVMap"
    uv.location = (-650, 0)
    links.new(uv.outputs["UV"], tex.inputs["Vector"])
    if shader == "PRINCIPLED":
        bsdf = nodes.new("ShaderNodeBsdfPrincipled")
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    else:
        bsdf = nodes.new("ShaderNodeEmission")
        links.new(tex.outputs["Color"], bsdf.inputs["Color"])
    bsdf.location = (100, 0)
    links.new(bsdf.outputs[0], out.inputs["Surface"])
    return mat


def image_from_rgb8(name: str, rgb: np.ndarray):
    """A packed Blender image from (H, W, 3) uint8 top-first pixels (e.g. a volume file's image)."""
    h, w = rgb.shape[:2]
    img = bpy.data.images.new(name, w, h, alpha=False)
    img.pixels.foreach_set(imaging.rgb8_to_blender(rgb))
    img.pack()
    return img


def setup_plane(obj, image, grid: G.PlaneGrid, photo_w: int, photo_h: int) -> None:
    p = obj.image_dynamics
    p.is_plane = True
    p.image = image
    p.photo_width = int(photo_w)
    p.photo_height = int(photo_h)
    p.grid_nx, p.grid_ny = grid.nx, grid.ny
    p.width, p.height = grid.width, grid.height
    p.start_frame = bpy.context.scene.frame_start


def create_plane(context, image, resolution: int, height: float, shader: str = "EMISSION", name: str | None = None,
                 photo_size: tuple[int, int] | None = None):
    """A new grid plane object showing ``image`` (linked to the active collection, made active)."""
    w, h = photo_size or tuple(image.size)
    if w == 0 or h == 0:
        raise ValueError(f"the image {image.name} has no pixels (is its file missing?)")
    grid = G.grid_for_photo(w, h, resolution, height)
    mat = make_material(image, shader)
    try:
        me = motion.build_plane_mesh(name or image.name, grid, None, 0.0, [mat])
    except BaseException:
        bpy.data.materials.remove(mat)
        raise
    obj = bpy.data.objects.new(name or image.name, me)
    context.collection.objects.link(obj)
    setup_plane(obj, image, grid, w, h)
    for o in context.view_layer.objects:
        o.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj
    return obj


def find_image(obj):
    """The first image of an Image Texture node in the object's materials (None if none)."""
    for slot in getattr(obj, "material_slots", []):
        mat = slot.material
        if mat is None or mat.node_tree is None:
            continue
        for node in mat.node_tree.nodes:
            if node.type == "TEX_IMAGE" and node.image is not None:
                return node.image
    return None


def adopt_plane(obj, resolution: int) -> None:
    """Turn a mesh showing an image (e.g. from Import Images as Planes) into an Image Dynamics plane:
    its mesh is replaced by a grid of the same size in its local XY plane, materials kept.

    Raises ``motion.PlaneModeError`` outside Object Mode (Blender would ignore the new mesh) and
    ``ValueError`` for an object that shows no usable image; either way nothing changes."""
    motion.require_object_mode(obj, "use it as an image plane")
    image = find_image(obj)
    if image is None:
        raise ValueError(f"{obj.name} shows no image (no Image Texture node in its materials)")
    w, h = image.size
    if w == 0 or h == 0:
        raise ValueError(f"the image {image.name} has no pixels (is its file missing?)")
    xs = [v.co.x for v in obj.data.vertices]
    ys = [v.co.y for v in obj.data.vertices]
    width = (max(xs) - min(xs)) if xs else 0.0
    height = (max(ys) - min(ys)) if ys else 0.0
    if height <= 0 or width <= 0:
        height, width = 2.0, 2.0 * w / h
    grid = G.grid_for_photo(w, h, resolution, height)
    grid = G.PlaneGrid(grid.nx, grid.ny, width, height)
    old = obj.data
    me = motion.build_plane_mesh(old.name, grid, None, 0.0, list(old.materials))
    obj.data = me
    if obj.data != me:  # Blender refused it (a mode the check above missed): change nothing
        bpy.data.meshes.remove(me)
        raise motion.PlaneModeError(f"Blender did not accept the new mesh of {obj.name}: switch it to Object Mode "
                                    "and try again")
    if old.users == 0:
        bpy.data.meshes.remove(old)
    setup_plane(obj, image, grid, w, h)


def fit_to_camera(obj, camera, scene, distance: float | None = None, mode: str = "FILL") -> None:
    """Place the plane facing ``camera`` at ``distance`` and scale it to cover (FILL) or fit inside
    (FIT) the camera's frame."""
    p = obj.image_dynamics
    cam_mw = camera.matrix_world
    if distance is None:
        local = cam_mw.inverted() @ obj.matrix_world.translation
        distance = -local.z if local.z < -1e-6 else 10.0
    frame = camera.data.view_frame(scene=scene)  # 4 corners in camera space
    if camera.data.type == "ORTHO":
        pts = [Vector((c.x, c.y)) for c in frame]
    else:
        pts = [Vector((c.x, c.y)) * (distance / -c.z) for c in frame]
    fw = max(q.x for q in pts) - min(q.x for q in pts)
    fh = max(q.y for q in pts) - min(q.y for q in pts)
    cx = (max(q.x for q in pts) + min(q.x for q in pts)) / 2.0
    cy = (max(q.y for q in pts) + min(q.y for q in pts)) / 2.0
    pw = p.width if p.width > 0 else obj.dimensions.x
    ph = p.height if p.height > 0 else obj.dimensions.y
    sx, sy = fw / pw, fh / ph
    s = max(sx, sy) if mode == "FILL" else min(sx, sy)
    loc, rot, _ = cam_mw.decompose()
    obj.matrix_world = (Matrix.Translation(loc) @ rot.to_matrix().to_4x4()
                        @ Matrix.Translation((cx, cy, -distance)) @ Matrix.Diagonal((s, s, s, 1.0)))
