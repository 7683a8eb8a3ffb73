"""Image Dynamics: Generative Image Dynamics (Li et al., CVPR 2024) for Blender artists.

The package is bpy-free. Blender-side code lives in the top-level ``addon/`` folder and talks to
this package's backend only through plain messages.
"""

__version__ = "0.1.0"
