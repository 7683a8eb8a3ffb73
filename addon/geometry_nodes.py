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
"""

from __future__ import annotations

import bpy

from .core.grid import basis_attribute_names

MODIFIER_NAME = "Image Dynamics"
TREE_VERSION = 1
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
    go.location = (1400, 0)

    def vmath(op, x, y):
        n = nodes.new("ShaderNodeVectorMath")
        n.operation = op
        n.location = (x, y)
        return n

    def chain_add(acc, term, op, x, y):
        if acc is None and op == "ADD":
            return term
        n = vmath(op, x, y)
        if acc is None:  # 0 - term
            n.operation = "SCALE"
            links.new(term, n.inputs[0])
            n.inputs[3].default_value = -1.0
            return n.outputs["Vector"]
        links.new(acc, n.inputs[0])
        links.new(term, n.inputs[1])
        return n.outputs["Vector"]

    disp = None
    vel = None
    for k in range(num_modes):
        y = -k * 260
        attrs = []
        for j, aname in enumerate(basis_attribute_names(k)):
            na = nodes.new("GeometryNodeInputNamedAttribute")
            na.data_type = "FLOAT_VECTOR"
            na.inputs["Name"].default_value = aname
            na.location = (-1300, y - j * 120)
            attrs.append(na.outputs["Attribute"])
        re_q, im_q, re_v, im_v = coordinate_socket_names(k)
        for col, (target, (qre, qim)) in enumerate((("disp", (re_q, im_q)), ("vel", (re_v, im_v)))):
            x0 = -1050 + col * 900
            s_re = vmath("SCALE", x0, y)
            links.new(attrs[0], s_re.inputs[0])
            links.new(gi.outputs[qre], s_re.inputs[3])
            s_im = vmath("SCALE", x0, y - 120)
            links.new(attrs[1], s_im.inputs[0])
            links.new(gi.outputs[qim], s_im.inputs[3])
            acc = disp if target == "disp" else vel
            acc = chain_add(acc, s_re.outputs["Vector"], "ADD", x0 + 200, y)
            acc = chain_add(acc, s_im.outputs["Vector"], "SUBTRACT", x0 + 400, y - 60)
            if target == "disp":
                disp = acc
            else:
                vel = acc

    pin = nodes.new("GeometryNodeInputNamedAttribute")
    pin.data_type = "FLOAT"
    pin.inputs["Name"].default_value = PIN_ATTRIBUTE
    pin.location = (600, 300)
    factor = nodes.new("ShaderNodeMath")
    factor.operation = "MULTIPLY"
    factor.location = (800, 300)
    links.new(pin.outputs["Attribute"], factor.inputs[0])
    links.new(gi.outputs[MAGNIFY], factor.inputs[1])

    d_scaled = vmath("SCALE", 1000, 150)
    links.new(disp, d_scaled.inputs[0])
    links.new(factor.outputs["Value"], d_scaled.inputs[3])
    v_scaled = vmath("SCALE", 1000, -150)
    links.new(vel, v_scaled.inputs[0])
    links.new(factor.outputs["Value"], v_scaled.inputs[3])
    length = vmath("LENGTH", 1000, 0)
    links.new(d_scaled.outputs["Vector"], length.inputs[0])

    setpos = nodes.new("GeometryNodeSetPosition")
    setpos.location = (1050, 450)
    links.new(gi.outputs["Geometry"], setpos.inputs["Geometry"])
    links.new(d_scaled.outputs["Vector"], setpos.inputs["Offset"])
    geo = setpos.outputs["Geometry"]
    for i, (aname, dtype, value) in enumerate((
        ("velocity", "FLOAT_VECTOR", v_scaled.outputs["Vector"]),
        (DISPLACEMENT_ATTRIBUTE, "FLOAT_VECTOR", d_scaled.outputs["Vector"]),
        (MOTION_ATTRIBUTE, "FLOAT", length.outputs["Value"]),
    )):
        store = nodes.new("GeometryNodeStoreNamedAttribute")
        store.data_type = dtype
        store.domain = "POINT"
        store.location = (1150 + i * 60, 600 - i * 250)
        store.inputs["Name"].default_value = aname
        links.new(geo, store.inputs["Geometry"])
        links.new(value, store.inputs["Value"])
        geo = store.outputs["Geometry"]
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
