"""What the server runs for a ``render`` job: photo + spectral volume -> frames (``render``).

``FrameService`` holds the frame renderers (made on first use, kept for later jobs) and turns one
validated request into frames:

1. the volume is resampled to the photo's size if it differs (``motion.resample``: the vectors
   scale with the grid), so the frames have the photo's size; ``parse_render`` bounds that
   volume (K x photo pixels <= ``max_render_pixels``) before the job is accepted;
2. each frame's modal coordinates come from the request's ``coords`` or from its timing options
   (``motion.playback``: frames / fps / speed / loop, the same timing ``image-dynamics animate``
   uses), and D = magnify * Re(sum_k S_k q_k), computed a band of rows at a time (the sum runs
   in float64, so whole-photo temporaries would be several times the volume's size);
3. the renderer draws all frames in one call (its motion importance is the mean |D| over the
   clip), reporting progress per batch and checking the job's cancel flag before each batch.

Renderers hold per-photo state while they run (the splat network encodes the photo once), so one
lock serialises rendering even where the server runs several worker threads (Ray).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..protocol.messages import RenderOptions
from .engine import EngineOutOfMemory, JobCancelled, _is_oom

__all__ = ["FrameService", "RENDERERS"]

RENDERERS = ("splat", "mesh", "backward")
_BAND_VALUES = 1 << 21  # volume values per band of rows in the displacement sum (32 MiB as complex128)


def _banded_displacements(S: np.ndarray, coords: np.ndarray, magnify: float) -> np.ndarray:
    """``playback.displacements`` a band of rows at a time: the same (N, 2, H, W) float32, with
    float64 temporaries the size of one band instead of the whole photo."""
    from ..motion.playback import displacements

    K, _, H, W = S.shape
    coords = np.asarray(coords)
    rows = max(1, _BAND_VALUES // (max(K, coords.shape[0]) * 2 * W))
    if rows >= H:
        return displacements(S, coords, magnify)
    D = np.empty((coords.shape[0], 2, H, W), np.float32)
    for r0 in range(0, H, rows):
        D[:, :, r0 : r0 + rows] = displacements(S[:, :, r0 : r0 + rows], coords, magnify)
    return D


class FrameService:
    """``render(image, S, coords, options, progress, should_stop) -> (frames, meta)``."""

    def __init__(self, renderer_dir: str | Path | None = None, device: str = "cpu") -> None:
        from ..render import default_renderer_dir

        self.renderer_dir = Path(renderer_dir).expanduser() if renderer_dir else default_renderer_dir()
        self.device = self._usable_device(device)
        # The splat network needs trained weights; the two warps need nothing.
        has_splat = self.renderer_dir.is_dir() and any(self.renderer_dir.glob("*.safetensors"))
        self.renderers = RENDERERS if has_splat else tuple(r for r in RENDERERS if r != "splat")
        self.default_renderer = "splat" if has_splat else "mesh"
        self._made: dict[str, Any] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _usable_device(device: str) -> str:
        dev = str(device or "cpu").split(" ")[0]
        if dev.startswith("cuda"):
            import torch

            return dev if torch.cuda.is_available() else "cpu"
        return dev if dev in ("cpu", "mps") else "cpu"

    def info(self) -> dict[str, Any]:
        """The ``rendering`` object of the hello reply."""
        return {"renderers": list(self.renderers), "default_renderer": self.default_renderer, "device": self.device,
                "splat_model": str(self.renderer_dir) if "splat" in self.renderers else None}

    def _renderer(self, kind: str):
        r = self._made.get(kind)
        if r is None:
            from ..render import make_renderer

            r = make_renderer(kind, model_dir=self.renderer_dir if kind == "splat" else None, device=self.device)
            self._made[kind] = r
        return r

    def render(self, image: np.ndarray, S: np.ndarray, coords: np.ndarray | None, options: RenderOptions,
               progress: Callable[[int, int, None], None], should_stop: Callable[[], bool]) -> tuple[np.ndarray, dict]:
        from ..motion.playback import ClipTiming, clip_coordinates
        from ..motion.resample import resample_volume
        from ..render import Cancelled

        kind = options.renderer or self.default_renderer
        timing_from = "coords" if coords is not None else ("loop" if options.loop else "volume")
        H, W = image.shape[:2]
        try:
            S = S if S.shape[2:] == (H, W) else resample_volume(S, W, H)
            if coords is None:
                timing = ClipTiming(frames=options.frames, fps=options.fps, speed=options.speed,
                                    magnify=options.magnify, loop=options.loop)
                coords = clip_coordinates(S.shape[0], timing, options.volume_fps, options.volume_num_frames)
            D = _banded_displacements(S, coords, options.magnify)
            del S
            if should_stop():
                raise JobCancelled("cancelled before rendering")
            with self._lock:
                renderer = self._renderer(kind)
                frames = renderer.render(image, D, progress=lambda done, total: progress(done, total, None),
                                         cancel=should_stop)
        except Cancelled as exc:
            raise JobCancelled(str(exc)) from None
        except Exception as exc:
            if _is_oom(exc):
                raise EngineOutOfMemory(f"{type(exc).__name__}: {str(exc)[:200]}") from None
            raise
        meta = {"renderer": kind, "device": self.device, "frames": int(frames.shape[0]), "size": [W, H],
                "fps": options.fps, "loop": options.loop, "magnify": options.magnify, "speed": options.speed,
                "timing": timing_from}
        return frames, meta
