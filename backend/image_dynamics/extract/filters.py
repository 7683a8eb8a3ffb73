"""The paper's clip filters, on the extracted motion.

Both work on the per-pixel mean motion magnitude W(p) = mean over the T frames of |D_t(p)|, computed
from the band-limited reconstruction of the spectral volume (the motion the volume actually stores):

- camera motion: at least ``camera_fraction`` (95 %) of the pixels have W(p) above ``camera_px``
  (1 px): the whole frame moves, so the camera moved (pan, shake, zoom);
- no motion: the mean of W over all pixels is below ``min_motion_px`` (1 px).

Camera motion is tested first (a panning clip would also pass the no-motion test).

The paper's thresholds are in pixels at the paper's working resolution (256 x 160); at another
resolution scale them with the image (``scale_thresholds``). They are parameters, the paper's
values the defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import RejectedClip
from ..motion.spectral import NUM_FRAMES, mean_motion_magnitude

CAMERA_PX = 1.0
CAMERA_FRACTION = 0.95
MIN_MOTION_PX = 1.0
PAPER_SIZE = (256, 160)


@dataclass(frozen=True)
class MotionStats:
    mean_motion_px: float  # mean over pixels of W(p)
    moving_fraction: float  # fraction of pixels with W(p) > camera_px
    p95_motion_px: float  # 95th percentile of W(p)
    max_motion_px: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    def summary(self, camera_px: float = CAMERA_PX) -> str:
        return (f"mean motion {self.mean_motion_px:.2f} px, {100 * self.moving_fraction:.1f}% of pixels move "
                f"more than {camera_px:g} px on average (95th percentile {self.p95_motion_px:.2f} px, "
                f"max {self.max_motion_px:.2f} px)")


@dataclass(frozen=True)
class FilterSettings:
    camera_px: float = CAMERA_PX
    camera_fraction: float = CAMERA_FRACTION
    min_motion_px: float = MIN_MOTION_PX


def scale_thresholds(settings: FilterSettings, width: int, height: int) -> FilterSettings:
    """The same settings with pixel thresholds scaled from the paper's 256 x 160 to ``width x height``."""
    s = float(np.sqrt((width * height) / (PAPER_SIZE[0] * PAPER_SIZE[1])))
    return FilterSettings(settings.camera_px * s, settings.camera_fraction, settings.min_motion_px * s)


def motion_stats(spectral: np.ndarray | None = None, mean_motion: np.ndarray | None = None,
                 camera_px: float = CAMERA_PX, num_frames: int = NUM_FRAMES) -> MotionStats:
    """Statistics of W(p), from a spectral volume (K, 2, H, W) or a precomputed W map (H, W)."""
    if mean_motion is None:
        if spectral is None:
            raise ValueError("give spectral or mean_motion")
        mean_motion = mean_motion_magnitude(spectral, num_frames)
    w = np.asarray(mean_motion, dtype=np.float64)
    return MotionStats(
        mean_motion_px=float(w.mean()),
        moving_fraction=float((w > camera_px).mean()),
        p95_motion_px=float(np.percentile(w, 95)),
        max_motion_px=float(w.max()),
    )


def rejection_reason(stats: MotionStats, settings: FilterSettings = FilterSettings()) -> str | None:
    """None if the clip passes; otherwise a message starting with "camera motion:" or "no motion:"."""
    if stats.moving_fraction >= settings.camera_fraction:
        return (f"camera motion: {100 * stats.moving_fraction:.1f}% of pixels move more than "
                f"{settings.camera_px:g} px on average (limit {100 * settings.camera_fraction:.0f}%), "
                f"so the whole frame moves: the camera panned, shook or zoomed")
    if stats.mean_motion_px < settings.min_motion_px:
        return (f"no motion: mean motion is {stats.mean_motion_px:.2f} px, below the "
                f"{settings.min_motion_px:g} px minimum")
    return None


def check_clip(spectral: np.ndarray, settings: FilterSettings = FilterSettings()) -> MotionStats:
    """Apply both filters; raise ``RejectedClip`` (exit code 3) with the reason, else return the stats."""
    stats = motion_stats(spectral, camera_px=settings.camera_px)
    reason = rejection_reason(stats, settings)
    if reason is not None:
        if reason.startswith("camera"):
            hint = ("use a clip filmed on a tripod; --no-filter keeps it anyway, "
                    "--camera-fraction changes the limit")
        else:
            hint = ("pick a clip where something visibly sways, or lower the limit with --min-motion; "
                    "--no-filter keeps it anyway")
        raise RejectedClip(reason, hint)
    return stats
