"""Render passes of the moving photo: shader AOVs, the Vector pass and a multilayer EXR output.

AOVs (Attribute node -> AOV Output in the plane's material, registered in ``view_layer.aovs``):

* ``id_motion``        VALUE  length of the current displacement (local units)
* ``id_displacement``  COLOR  the current displacement (x, y, 0) in local units
* ``id_moving``        VALUE  1 where the photo can move at all, 0 where it is still

The Vector pass comes from the ``velocity`` attribute the modal-sum tree stores; Blender only
offers it with motion blur off. The compositor writes everything to one multilayer EXR: Blender 5.0
keeps the compositor in ``scene.compositing_node_group`` (with a Group Output), 4.2-4.5 in
``scene.node_tree`` (with a Composite node).
"""

from __future__ import annotations

import bpy

from . import geometry_nodes as gn

AOVS = (
    ("id_motion", "VALUE", gn.MOTION_ATTRIBUTE),
    ("id_displacement", "COLOR", gn.DISPLACEMENT_ATTRIBUTE),
    ("id_moving", "VALUE", gn.MOVING_ATTRIBUTE),
)
OUTPUT_NODE_NAME = "Image Dynamics Passes"


def setup_material_aovs(mat) -> None:
    nt = mat.node_tree
    for aov_name, aov_type, attr in AOVS:
        label = f"ID AOV {aov_name}"
        if nt.nodes.get(label) is not None:
            continue
        a = nt.nodes.new("ShaderNodeAttribute")
        a.attribute_type = "GEOMETRY"
        a.attribute_name = attr
        a.name = a.label = f"ID Attribute {aov_name}"
        a.location = (-400, -400 - 200 * len([n for n in nt.nodes if n.name.startswith("ID AOV")]))
        o = nt.nodes.new("ShaderNodeOutputAOV")
        o.name = o.label = label
        o.aov_name = aov_name
        o.location = (a.location.x + 300, a.location.y)
        if aov_type == "VALUE":
            nt.links.new(a.outputs["Fac"], o.inputs["Value"])
        else:
            nt.links.new(a.outputs["Vector"], o.inputs["Color"])


def setup_view_layer(view_layer, vector: bool = True) -> None:
    have = {a.name for a in view_layer.aovs}
    for aov_name, aov_type, _ in AOVS:
        if aov_name not in have:
            aov = view_layer.aovs.add()
            aov.name = aov_name
            aov.type = aov_type
    if vector:
        view_layer.use_pass_vector = True


def _compositor_tree(scene):
    """(tree, is_group) : the 5.0 compositing node group or the 4.x scene node tree."""
    if hasattr(scene, "compositing_node_group"):
        tree = scene.compositing_node_group
        if tree is None:
            tree = bpy.data.node_groups.new(f"{scene.name} Compositing", "CompositorNodeTree")
            scene.compositing_node_group = tree
        return tree, True
    scene.use_nodes = True
    return scene.node_tree, False


def setup_compositor(scene, view_layer, directory: str = "//image_dynamics_passes/", multilayer: bool = True):
    """A Render Layers -> File Output chain writing Image, Vector and the AOVs (multilayer EXR by
    default, else one EXR per pass). Returns the File Output node."""
    tree, is_group = _compositor_tree(scene)
    nodes, links = tree.nodes, tree.links
    rl = next((n for n in nodes if n.bl_idname == "CompositorNodeRLayers"), None)
    if rl is None:
        rl = nodes.new("CompositorNodeRLayers")
        rl.location = (-300, 0)
    rl.layer = view_layer.name
    # The final image still goes where Blender expects it.
    if is_group:
        if not any(i.in_out == "OUTPUT" for i in tree.interface.items_tree if getattr(i, "item_type", "") == "SOCKET"):
            tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        go = next((n for n in nodes if n.bl_idname == "NodeGroupOutput"), None)
        if go is None:
            go = nodes.new("NodeGroupOutput")
            go.location = (300, 200)
        if not go.inputs[0].is_linked:
            links.new(rl.outputs["Image"], go.inputs[0])
    else:
        comp = next((n for n in nodes if n.bl_idname == "CompositorNodeComposite"), None)
        if comp is None:
            comp = nodes.new("CompositorNodeComposite")
            comp.location = (300, 200)
        if not comp.inputs["Image"].is_linked:
            links.new(rl.outputs["Image"], comp.inputs["Image"])

    old = nodes.get(OUTPUT_NODE_NAME)
    if old is not None:
        nodes.remove(old)
    fo = nodes.new("CompositorNodeOutputFile")
    fo.name = fo.label = OUTPUT_NODE_NAME
    fo.location = (300, -200)
    fmt = fo.format
    if hasattr(fmt, "media_type"):  # 5.0: set the media type before the file format
        fmt.media_type = "MULTI_LAYER_IMAGE" if multilayer else "IMAGE"
    fmt.file_format = "OPEN_EXR_MULTILAYER" if multilayer else "OPEN_EXR"
    fmt.color_depth = "32"
    fmt.exr_codec = "ZIP"
    passes = [("Image", "RGBA"), ("Vector", "RGBA")] + [(n, "FLOAT" if t == "VALUE" else "RGBA") for n, t, _ in AOVS]
    if hasattr(fo, "file_output_items"):  # 5.0
        fo.directory = directory
        fo.file_name = "passes_" if multilayer else ""
        fo.file_output_items.clear()
        for name, stype in passes:
            fo.file_output_items.new(stype, name)
    else:  # 4.x
        fo.base_path = directory + ("passes_" if multilayer else "")
        slots = fo.layer_slots if multilayer else fo.file_slots
        slots.clear()
        for name, _ in passes:
            slots.new(name)
    for name, _ in passes:
        out = rl.outputs.get(name)
        inp = fo.inputs.get(name)
        if out is not None and inp is not None:
            links.new(out, inp)
    return fo
