"""Motion extraction from real video: optical flow from a start frame to each of the next 149 frames,
then the canonical spectral transform (``motion/spectral.py``).

Modules: ``video`` (read/write video, clear errors), ``flow`` (optical-flow registry and the measured
comparison that picked the default), ``extractor`` (frames -> motion texture -> spectral volume),
``filters`` (the paper's camera-motion / no-motion filters), ``shards`` (batch mode: a folder of
videos -> training shards, and ``DenseShardDataset`` to read them).

Public API::

    from image_dynamics.extract import extract_volume, extract_motion, check_clip, extract_folder
"""

import os as _os

# FFmpeg reads its log level once, when OpenCV's FFmpeg backend first starts: set it before any
# submodule imports cv2, so damaged videos produce our one-line error and not FFmpeg's chatter.
_os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

# Submodules load on first use (PEP 562): ``from image_dynamics.extract.flow import METHODS`` and
# the CLI's option registration must not pay for OpenCV and the extractor.
_EXPORTS = {
    "extract_motion": "extractor", "extract_volume": "extractor", "spectral_from_frames": "extractor",
    "FilterSettings": "filters", "MotionStats": "filters", "check_clip": "filters", "motion_stats": "filters",
    "rejection_reason": "filters",
    "DEFAULT_METHOD": "flow", "METHODS": "flow", "make_flow": "flow",
    "DenseShardDataset": "shards", "extract_folder": "shards",
    "VideoInfo": "video", "parse_size": "video", "probe_video": "video", "read_frames": "video",
    "write_video": "video",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = sorted(_EXPORTS)
