"""Rendering frames from a photo and its motion: softmax splatting + a synthesis network, and the
mesh-warp and backward-warp baselines (DESIGN.md section 5).

Interface (stable; the animate CLI, the service and the Blender side call it)::

    from image_dynamics.render import make_renderer
    r = make_renderer("splat" | "mesh" | "backward", model_dir=None, device="cpu")
    frames = r.render(image_uint8_hw3, displacements_n2hw, progress=None, cancel=None)  # uint8 (N, H, W, 3)

Modules: ``splat`` (softmax splatting), ``mesh`` and ``backward`` (baselines), ``synthesis``
(the network), ``renderer`` (the interface), ``data`` (procedural training triplets),
``train`` (training task), ``quality`` (image metrics).
"""

from .renderer import RENDERERS, Cancelled, FrameRenderer, default_renderer_dir, make_renderer

__all__ = ["Cancelled", "FrameRenderer", "RENDERERS", "default_renderer_dir", "make_renderer"]
