"""The frame-renderer interface the CLI, the service and the Blender side use.

    r = make_renderer("splat" | "mesh" | "backward", model_dir=None, device="cpu")
    frames = r.render(image, displacements, progress=None, cancel=None)

image: uint8 (H, W, 3) RGB (frame 0); displacements: float32 (N, 2, H, W) in pixels, D_t of frame
0's pixels (``motion.spectral``). Returns uint8 (N, H, W, 3). Frames are rendered in batches;
``progress(done, total)`` is called after each batch, ``cancel()`` before each batch, and a true
answer raises ``Cancelled``. The importance that orders overlapping motion (softmax-splat weights,
mesh z-buffer) is the mean |D| over the N given frames, so pass the whole loop in one call (it is
what the network was trained with: the mean over the full 150-frame window).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import UserError
from .backward import backward_warp
from .mesh import mesh_warp
from .splat import motion_importance

__all__ = ["Cancelled", "FrameRenderer", "RENDERERS", "default_renderer_dir", "make_renderer"]

RENDERERS = ("splat", "mesh", "backward")
# Pixels per batch: bounds peak memory (the splat net holds a few dozen channels per pixel); a GPU
# needs big batches to be busy and has the memory for them.
_BATCH_PIXELS = 1 << 19
_BATCH_PIXELS_CUDA = 1 << 22


class Cancelled(UserError):
    """Rendering was stopped by the caller's ``cancel()``."""

    exit_code = 130

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"rendering cancelled after {done} of {total} frames")
        self.done, self.total = done, total


def default_renderer_dir() -> Path:
    """``$IMAGE_DYNAMICS_RENDERER`` if set, else ``models/renderer`` of the installed package or of
    the repository (first that exists)."""
    override = os.environ.get("IMAGE_DYNAMICS_RENDERER")
    if override:
        return Path(override).expanduser()
    pkg = Path(__file__).resolve().parents[1]
    candidates = [pkg / "models" / "renderer", pkg.parents[1] / "models" / "renderer",
                  Path.cwd() / "models" / "renderer"]
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[1]


class FrameRenderer:
    """Base class: input checks, batching, progress and cancellation. Subclasses draw a batch."""

    kind = ""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)

    # Subclasses: image (1, 3, H, W) float in [0, 1], flow (b, 2, H, W), importance (1, 1, H, W)
    # -> (b, 3, H, W) float in [0, 1].
    def _render_batch(self, image: torch.Tensor, flow: torch.Tensor, importance: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _prepare(self, image: torch.Tensor) -> None:
        """Per-image work shared by every batch (the splat renderer encodes the photo once)."""

    def _budget(self) -> int:
        return _BATCH_PIXELS_CUDA if self.device.type == "cuda" else _BATCH_PIXELS

    def batch_size(self, height: int, width: int) -> int:
        return max(1, self._budget() // max(1, height * width))

    @torch.no_grad()
    def render(self, image: np.ndarray, displacements: np.ndarray,
               progress: Callable[[int, int], None] | None = None,
               cancel: Callable[[], bool] | None = None) -> np.ndarray:
        image = np.asarray(image)
        disp = np.asarray(displacements)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise UserError(f"the image must be uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}")
        H, W = image.shape[:2]
        if disp.ndim != 4 or disp.shape[1:] != (2, H, W):
            raise UserError(f"displacements must have shape (N, 2, {H}, {W}) to match the image, got {disp.shape}")
        if not np.issubdtype(disp.dtype, np.floating) or not np.all(np.isfinite(disp)):
            raise UserError("displacements must be finite floating-point pixel offsets")
        n = disp.shape[0]
        out = np.empty((n, H, W, 3), np.uint8)
        if n == 0:
            return out
        img = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        flows = torch.from_numpy(np.ascontiguousarray(disp, dtype=np.float32))
        importance = motion_importance(flows).to(self.device)
        self._prepare(img)
        bs = self.batch_size(H, W)
        for start in range(0, n, bs):
            if cancel is not None and cancel():
                raise Cancelled(start, n)
            flow = flows[start:start + bs].to(self.device)
            frames = self._render_batch(img, flow, importance)
            out[start:start + len(flow)] = (frames.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(
                0, 2, 3, 1).cpu().numpy()
            if progress is not None:
                progress(min(start + bs, n), n)
        return out


class MeshRenderer(FrameRenderer):
    kind = "mesh"

    def _render_batch(self, image, flow, importance):
        return mesh_warp(image, flow, importance)


class BackwardRenderer(FrameRenderer):
    kind = "backward"

    def _render_batch(self, image, flow, importance):
        return backward_warp(image, flow)


class SplatRenderer(FrameRenderer):
    """The trained synthesis network (``synthesis``): splatted multi-scale features, decoded."""

    kind = "splat"

    def __init__(self, model_dir: str | Path | None = None, device: str | torch.device = "cpu") -> None:
        super().__init__(device)
        from .synthesis import load_synthesis

        self.model_dir = Path(model_dir).expanduser() if model_dir else default_renderer_dir()
        self.net = load_synthesis(self.model_dir, device=self.device)
        self._features = None

    def batch_size(self, height: int, width: int) -> int:
        return max(1, (self._budget() // 4) // max(1, height * width))

    def _prepare(self, image):
        self._features = self.net.encode(image)

    def _render_batch(self, image, flow, importance):
        return self.net.decode(self._features, flow, importance)


def make_renderer(kind: str, model_dir: str | Path | None = None, device: str | torch.device = "cpu") -> FrameRenderer:
    """A renderer by name: "splat" (trained network, ``model_dir`` default models/renderer),
    "mesh" (mesh-warp baseline) or "backward" (backward-warp baseline)."""
    if kind == "splat":
        return SplatRenderer(model_dir, device)
    if kind == "mesh":
        return MeshRenderer(device)
    if kind == "backward":
        return BackwardRenderer(device)
    raise UserError(f"unknown renderer {kind!r}", f"choose one of {', '.join(RENDERERS)}")
