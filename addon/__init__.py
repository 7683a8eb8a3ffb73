"""Image Dynamics: the Blender side.

Only Blender-facing code lives here (operators, panels, properties); everything it computes comes
from the bpy-free ``image_dynamics`` package through plain messages. Operators arrive with the
add-on issue; today the package registers nothing, so enabling it is harmless.
"""

classes: tuple = ()


def register() -> None:
    import bpy

    for cls in classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    import bpy

    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
