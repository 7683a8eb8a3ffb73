"""The Geometry Nodes modal sum that animates the image plane.

    offset   = magnify * pin * sum_k ( Re(S_k) Re(q_k) - Im(S_k) Im(q_k) )
    velocity = magnify * pin * sum_k ( Re(S_k) Re(r_k) - Im(S_k) Im(r_k) ),   r_k = dq_k/dt (per second)

``Re(S_k)`` / ``Im(S_k)`` are the mesh's point attributes ``id_re_KK`` / ``id_im_KK`` (local units,
see ``core.grid``), ``pin`` the point attribute ``id_pin``; q_k and r_k are float inputs of the
modifier, keyframed by ``keyframes.py``. The tree sets the position, and stores point attributes
``velocity`` (Cycles' motion blur and Vector pass), ``id_displacement`` (the offset, local units)
and ``id_motion`` (its length) for the render AOVs.

This is the approach measured fastest with correct motion vectors (DESIGN section 6): deformation
in Geometry Nodes is seen by Cycles and EEVEE at any sub-frame, unlike a frame-change handler.

Per-frame cost (fields are not cached between nodes: every node that evaluates a field recomputes
everything upstream of it): each sum is a chain of Vector Math "Multiply Add" nodes (one node per
term, the sign of ``Im q`` folded into a single-value negation), and the displacement is computed
once, stored as ``id_displacement``, then read back for Set Position and ``id_motion``. At 16k
vertices and K = 16 this halved the tree's time; results are bitwise those of the separate
Scale / Add / Subtract nodes it replaced (x + (-y) == x - y exactly).
"""

from __future__ import annotations

import bpy

from .core.grid import basis_attribute_names

MODIFIER_NAME = "Image Dynamics"
TREE_VERSION = 2  # 2: Multiply Add chains, displacement evaluated once
MAGNIFY = "Magnify"
PIN_ATTRIBUTE = "id_pin"
MOVING_ATTRIBUTE = "id_moving"
DISPLACEMENT_ATTRIBUTE = "id_displacement"
MOTION_ATTRIBUTE = "id_motion"


def coordinate_socket_names(k: int) -> tuple[str, str, str, str]:
    """Input names of mode k: Re q, Im q, Re dq/dt, Im dq/dt."""
    return f"Re q {k:02d}", f"Im q {k:02d}", f"Re dq {k:02d}", f"Im dq {k:02d}"


def tree_name(num_modes: int) -> str:
    return f"Image Dynamics Modal Sum ({num_modes} modes)"


def ensure_tree(num_modes: int):
    """The node group for ``num_modes`` modes (built once per .blend and reused)."""
    name = tree_name(num_modes)
    ng = bpy.data.node_groups.get(name)
    if ng is not None and ng.bl_idname == "GeometryNodeTree" and ng.get("image_dynamics_version") == TREE_VERSION:
        return ng
    if ng is not None:
        ng.name = name + " (old)"
    return build_tree(num_modes, name)


def build_tree(num_modes: int, name: str):
    ng = bpy.data.node_groups.new(name, "GeometryNodeTree")
    ng["image_dynamics_version"] = TREE_VERSION
    ng["image_dynamics_modes"] = num_modes
    iface = ng.interface
    iface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    mag = iface.new_socket(MAGNIFY, in_out="INPUT", socket_type="NodeSocketFloat")
    mag.default_value = 1.0
    mag.min_value = -100.0
    mag.max_value = 100.0
    mag.description = "Scales the motion (motion magnification above 1, minification below)"
    for k in range(num_modes):
        for sname in coordinate_socket_names(k):
            s = iface.new_socket(sname, in_out="INPUT", socket_type="NodeSocketFloat")
            s.default_value = 0.0
            s.description = f"Modal coordinate of frequency bin {k} (keyframed by Image Dynamics)"

    nodes, links = ng.nodes, ng.links
    gi = nodes.new("NodeGroupInput")
    gi.location = (-1600, 0)
    go = nodes.new("NodeGroupOutput")
    go.location = (1800, 0)

    def vmath(op, x, y):
        n = nodes.new("ShaderNodeVectorMath")
        n.operation = op
        n.location = (x, y)
        return n

    def named(name, dtype, x, y):
        n = nodes.new("GeometryNodeInputNamedAttribute")
        n.data_type = dtype
        n.inputs["Name"].default_value = name
        n.location = (x, y)
        return n.outputs["Attribute"]

    def term(acc, basis, coeff, x, y):
        """acc + basis * coeff (the first term: basis * coeff), one node per term."""
        if acc is None:
            n = vmath("SCALE", x, y)
            links.new(basis, n.inputs[0])
            links.new(coeff, n.inputs[3])
        else:
            n = vmath("MULTIPLY_ADD", x, y)
            links.new(basis, n.inputs[0])
            links.new(coeff, n.inputs[1])
            links.new(acc, n.inputs[2])
        return n.outputs["Vector"]

    def negated(socket, x, y):
        # on a single value (a modifier input): computed once per evaluation, not per vertex
        n = nodes.new("ShaderNodeMath")
        n.operation = "MULTIPLY"
        n.location = (x, y)
        links.new(socket, n.inputs[0])
        n.inputs[1].default_value = -1.0
        return n.outputs["Value"]

    disp = None
    vel = None
    for k in range(num_modes):
        y = -k * 260
        re_s, im_s = (named(aname, "FLOAT_VECTOR", -1300, y - j * 120)
                      for j, aname in enumerate(basis_attribute_names(k)))
        re_q, im_q, re_v, im_v = coordinate_socket_names(k)
        x0 = -1050
        disp = term(disp, re_s, gi.outputs[re_q], x0 + 200, y)
        disp = term(disp, im_s, negated(gi.outputs[im_q], x0, y - 60), x0 + 400, y - 60)
        vel = term(vel, re_s, gi.outputs[re_v], x0 + 1100, y)
        vel = term(vel, im_s, negated(gi.outputs[im_v], x0 + 900, y - 60), x0 + 1300, y - 60)

    pin = named(PIN_ATTRIBUTE, "FLOAT", 600, 300)
    factor = nodes.new("ShaderNodeMath")
    factor.operation = "MULTIPLY"
    factor.location = (800, 300)
    links.new(pin, factor.inputs[0])
    links.new(gi.outputs[MAGNIFY], factor.inputs[1])

    d_scaled = vmath("SCALE", 1000, 150)
    links.new(disp, d_scaled.inputs[0])
    links.new(factor.outputs["Value"], d_scaled.inputs[3])
    v_scaled = vmath("SCALE", 1000, -150)
    links.new(vel, v_scaled.inputs[0])
    links.new(factor.outputs["Value"], v_scaled.inputs[3])

    def store(geo, aname, dtype, value, x, y):
        n = nodes.new("GeometryNodeStoreNamedAttribute")
        n.data_type = dtype
        n.domain = "POINT"
        n.location = (x, y)
        n.inputs["Name"].default_value = aname
        links.new(geo, n.inputs["Geometry"])
        links.new(value, n.inputs["Value"])
        return n.outputs["Geometry"]

    # The displacement sum is evaluated once, here; Set Position and id_motion read the stored
    # attribute instead of re-evaluating the whole sum (as linking d_scaled to each would).
    geo = store(gi.outputs["Geometry"], DISPLACEMENT_ATTRIBUTE, "FLOAT_VECTOR", d_scaled.outputs["Vector"], 1150, 450)
    offset = named(DISPLACEMENT_ATTRIBUTE, "FLOAT_VECTOR", 1150, 150)
    setpos = nodes.new("GeometryNodeSetPosition")
    setpos.location = (1350, 450)
    links.new(geo, setpos.inputs["Geometry"])
    links.new(offset, setpos.inputs["Offset"])
    geo = store(setpos.outputs["Geometry"], "velocity", "FLOAT_VECTOR", v_scaled.outputs["Vector"], 1500, 450)
    length = vmath("LENGTH", 1350, 0)
    links.new(offset, length.inputs[0])
    geo = store(geo, MOTION_ATTRIBUTE, "FLOAT", length.outputs["Value"], 1650, 450)
    links.new(geo, go.inputs["Geometry"])
    return ng


def input_identifiers(ng) -> dict[str, str]:
    """Input socket name -> the identifier the modifier uses (``modifier[identifier]``)."""
    return {item.name: item.identifier for item in ng.interface.items_tree
            if getattr(item, "item_type", "SOCKET") == "SOCKET" and item.in_out == "INPUT"}


def find_modifier(obj):
    mod = obj.modifiers.get(MODIFIER_NAME)
    if mod is not None and mod.type == "NODES":
        return mod
    return None


def ensure_modifier(obj, num_modes: int):
    """The plane's modal-sum modifier (added, or re-pointed at the tree for ``num_modes``)."""
    ng = ensure_tree(num_modes)
    mod = find_modifier(obj)
    if mod is None:
        mod = obj.modifiers.new(MODIFIER_NAME, "NODES")
    if mod.node_group is not ng:
        mod.node_group = ng
    return mod


def data_path(mod, socket_name: str) -> str:
    ident = input_identifiers(mod.node_group)[socket_name]
    return f'modifiers["{mod.name}"]["{ident}"]'
