"""Reading and writing video for motion extraction (OpenCV's FFmpeg backend).

Frames come out as RGB uint8 (N, H, W, 3). Every failure a user can cause (missing file, a file
that is not a video, a corrupt or truncated video, too few frames, a bad ``WxH`` string) raises
``UserError`` with a sentence saying which, never a traceback.

Choices written down here:

- Frame counts are found by decoding (``CAP_PROP_FRAME_COUNT`` comes from the container header and
  is wrong for truncated files and some codecs).
- ``size=(W, H)``: the frame is first centre-cropped to the aspect ratio of W x H, then resized with
  ``INTER_AREA``. Cropping (instead of squashing) keeps motion isotropic: a displacement of one
  pixel means the same in x and y. Nothing is cropped when the aspect ratios already match.
- ``fps``: ``CAP_PROP_FPS``; a missing or absurd value (<= 0, > 1000, NaN) reads as 30.
- FFmpeg's own warnings (printed by the C library for damaged files) are silenced through
  ``OPENCV_FFMPEG_LOGLEVEL`` and OpenCV's log level, so the user sees only our message.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

# Must be set before OpenCV's FFmpeg backend initialises (on the first VideoCapture).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from ..errors import UserError  # noqa: E402

_LOG_ERROR = 2  # cv2.setLogLevel: 0 silent, 1 fatal, 2 error, 3 warning, 4 info

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class VideoInfo:
    path: str
    fps: float
    num_frames: int  # counted by decoding every frame
    width: int
    height: int
    fps_reported: bool  # False when the container gave no usable frame rate (fps reads as 30)


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"256x160"`` -> (256, 160). ``None`` or ``""`` -> None. Raises ``UserError`` when malformed."""
    if text is None or text == "":
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", str(text))
    if not m:
        raise UserError(f"bad size {text!r}: expected WIDTHxHEIGHT such as 256x160",
                        "give --size as two positive integers joined by 'x'")
    w, h = int(m.group(1)), int(m.group(2))
    if not (8 <= w <= 8192 and 8 <= h <= 8192):
        raise UserError(f"bad size {text!r}: width and height must be between 8 and 8192 pixels",
                        "the paper works at 256x160")
    return w, h


def _open(path: str | os.PathLike) -> cv2.VideoCapture:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"no such video file: {path}", "check the path")
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder, not a video file")
    if os.path.getsize(path) == 0:
        raise UserError(f"{path} is empty (0 bytes)", "the file is not a video")
    # OpenCV warns on stderr when FFmpeg cannot open a file; our message says it better.
    previous = cv2.setLogLevel(_LOG_ERROR)
    try:
        cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    finally:
        cv2.setLogLevel(previous)
    if not cap.isOpened():
        cap.release()
        raise UserError(f"cannot read {path} as a video: the file is corrupt or not in a video format",
                        "convert it to .mp4 (H.264) or .mkv and try again")
    return cap


def _fps_of(cap: cv2.VideoCapture) -> tuple[float, bool]:
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not math.isfinite(fps) or fps <= 0.0 or fps > 1000.0:
        return DEFAULT_FPS, False
    return fps, True


def _crop_box(w: int, h: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, cw, ch): the centred crop of a w x h frame with the aspect ratio of ``size``."""
    tw, th = size
    if abs(w * th - h * tw) <= max(w, h) // 100:  # same aspect within rounding: no crop
        return 0, 0, w, h
    if w * th > h * tw:  # too wide
        cw = max(1, round(h * tw / th))
        return (w - cw) // 2, 0, cw, h
    ch = max(1, round(w * th / tw))
    return 0, (h - ch) // 2, w, ch


def convert_frame(bgr: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """A decoded BGR frame -> RGB uint8, centre-cropped and resized to ``size`` (W, H) if given."""
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    if size is not None:
        h, w = bgr.shape[:2]
        if (w, h) != tuple(size):
            x0, y0, cw, ch = _crop_box(w, h, size)
            bgr = cv2.resize(bgr[y0:y0 + ch, x0:x0 + cw], tuple(size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Open ``path``, decode every frame to count them (``grab`` only), and report the basics."""
    path = os.fspath(path)
    cap = _open(path)
    try:
        fps, reported = _fps_of(cap)
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        count = 0
        while cap.grab():
            count += 1
    finally:
        cap.release()
    if count == 0 or width <= 0 or height <= 0:
        raise UserError(f"cannot read {path} as a video: no frame could be decoded (corrupt or empty file)",
                        "convert it to .mp4 (H.264) or .mkv and try again")
    return VideoInfo(path=path, fps=fps, num_frames=count, width=width, height=height, fps_reported=reported)


def iter_frames(path: str | os.PathLike, start: int = 0, count: int | None = None,
                size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames ``start, start+1, ...`` (``count`` of them, or to the end).

    Raises ``UserError`` if the video cannot be opened, if not even the start frame decodes, or if it
    ends before ``count`` frames were produced (a truncated file shows up here).
    """
    path = os.fspath(path)
    if start < 0:
        raise UserError(f"start frame must be 0 or more, got {start}")
    cap = _open(path)
    header_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    try:
        for i in range(start):  # grab without colour conversion: seeking is unreliable across codecs
            if not cap.grab():
                raise UserError(f"{path} has only {i} decodable frames; start frame {start} is past the end",
                                "choose a smaller --start-frame")
        produced = 0
        while count is None or produced < count:
            ok, bgr = cap.read()
            if not ok or bgr is None or bgr.size == 0:
                break
            produced += 1
            yield convert_frame(bgr, size)
        if produced == 0 and start == 0:
            raise UserError(f"cannot read {path} as a video: no frame could be decoded (corrupt or empty file)",
                            "convert it to .mp4 (H.264) or .mkv and try again")
        if produced == 0:
            raise UserError(f"{path} has only {start} decodable frames; start frame {start} is past the end",
                            "choose a smaller --start-frame")
        if count is not None and produced < count:
            readable = start + produced
            damaged = (f"; its header promises {header_count} frames, so the file is truncated or corrupt"
                       if header_count > readable + 1 else "")
            raise UserError(
                f"{path} is too short: needed {count} frames from frame {start} but only {produced} could be "
                f"decoded (the video has {readable} readable frames{damaged})",
                "motion extraction needs a 5 s window (150 frames at 30 fps) after the start frame; "
                "use an earlier --start-frame or a longer video")
    finally:
        cap.release()


def read_frames(path: str | os.PathLike, start: int = 0, count: int | None = None,
                size: tuple[int, int] | None = None) -> np.ndarray:
    """All frames of :func:`iter_frames` as one (N, H, W, 3) uint8 array."""
    frames = list(iter_frames(path, start, count, size))
    return np.stack(frames)


def video_fps(path: str | os.PathLike) -> tuple[float, bool]:
    """(fps, reported): the container's frame rate, or (30.0, False) if it gives none."""
    cap = _open(path)
    try:
        return _fps_of(cap)
    finally:
        cap.release()


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = DEFAULT_FPS) -> None:
    """Write RGB uint8 frames (N, H, W, 3). ``.mkv``: FFV1, lossless; ``.mp4``/``.mov``: mp4v; ``.avi``: MJPG.

    For tests and tools (synthetic clips). Raises ``UserError`` if OpenCV cannot open a writer.
    """
    path = os.fspath(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}")
    ext = os.path.splitext(path)[1].lower()
    fourcc = {".mkv": "FFV1", ".mp4": "mp4v", ".mov": "mp4v", ".m4v": "mp4v", ".avi": "MJPG"}.get(ext)
    if fourcc is None:
        raise UserError(f"cannot write video {path}: unknown extension {ext!r}", "use .mkv (lossless) or .mp4")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(path, cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), float(fps), (w, h))
    if not writer.isOpened():
        raise UserError(f"cannot write video {path} with codec {fourcc}")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
