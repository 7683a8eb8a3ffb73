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

from .extractor import extract_motion, extract_volume, spectral_from_frames  # noqa: E402
from .filters import FilterSettings, MotionStats, check_clip, motion_stats, rejection_reason  # noqa: E402
from .flow import DEFAULT_METHOD, METHODS, make_flow  # noqa: E402
from .shards import DenseShardDataset, extract_folder  # noqa: E402
from .video import VideoInfo, parse_size, probe_video, read_frames, write_video  # noqa: E402

__all__ = [
    "DEFAULT_METHOD", "METHODS", "DenseShardDataset", "FilterSettings", "MotionStats", "VideoInfo",
    "check_clip", "extract_folder", "extract_motion", "extract_volume", "make_flow", "motion_stats",
    "parse_size", "probe_video", "read_frames", "rejection_reason", "spectral_from_frames", "write_video",
]
