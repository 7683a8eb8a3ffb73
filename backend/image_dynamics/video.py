"""Write rendered frames as a video file or a folder of PNGs: MP4 (H.264), GIF, or DIR/.

One writer per output kind, chosen by the path (``output_kind``):

* ``.mp4`` - H.264 (libx264 through PyAV, the FFmpeg bindings), yuv420p so every player shows it.
  yuv420p stores colour at half resolution, so H.264 needs even sides: an odd width or height is
  padded by repeating the last column / row (nothing of the picture is cut; the video is at most
  one pixel wider / taller). Quality is x264's constant rate factor ``crf`` (0 lossless .. 51;
  18 looks transparent).
* ``.gif`` - FFmpeg's own GIF encoder, also through PyAV, so one real library writes both formats
  and no imaging package is added. A GIF has 256 colours: one palette for the whole clip is made
  from all frames (``palettegen``) and frames are dithered to it (``paletteuse``), which keeps the
  palette from flickering between frames. The file loops forever (NETSCAPE loop count 0). GIF
  frame times are hundredths of a second, so 30 fps plays as 3 / 4 / 3 cs steps (33.3 ms on average).
* ``DIR/`` (a path ending in a separator, an existing folder, or no extension) - ``frame_00000.png``
  ... lossless, one per frame (OpenCV). Stale ``frame_*.png`` past the new last frame are removed so
  the folder holds exactly this clip.

Files are written next to the target under a ``.partial`` name and renamed at the end: a failed
or interrupted write never leaves a half video under the real name.
"""

from __future__ import annotations

import os
import re
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import UserError

__all__ = ["VIDEO_KINDS", "output_kind", "open_writer", "write_frames", "FrameWriter", "even_size"]

VIDEO_KINDS = ("mp4", "gif", "dir")
DEFAULT_CRF = 18
FRAME_NAME = "frame_{:05d}.png"
_FRAME_RE = re.compile(r"^frame_(\d{5,})\.png$")


def output_kind(path: str | os.PathLike) -> str:
    """"mp4", "gif" or "dir" for an output path; a ``UserError`` for any other extension."""
    text = os.fspath(path)
    p = Path(text)
    if text.endswith(("/", os.sep)) or p.is_dir():
        return "dir"
    suffix = p.suffix.lower()
    if suffix == ".mp4":
        return "mp4"
    if suffix == ".gif":
        return "gif"
    if suffix == "":
        return "dir"
    raise UserError(f"cannot write {suffix!r} files ({p.name})",
                    "name the output OUT.mp4 (H.264), OUT.gif, or DIR/ for a folder of PNG frames")


def even_size(width: int, height: int) -> tuple[int, int]:
    """The frame size an H.264 yuv420p video of a width x height picture has (sides rounded up to even)."""
    return width + (width % 2), height + (height % 2)


def _fps_fraction(fps: float) -> Fraction:
    if not (np.isfinite(fps) and 0 < fps <= 1000):
        raise UserError(f"the frame rate must be between 0 and 1000 fps, got {fps}")
    return Fraction(float(fps)).limit_denominator(1001)


def _check_frame(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    a = np.asarray(frame)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"frames must be uint8 (H, W, 3), got {a.dtype} {a.shape}")
    if size is not None and (a.shape[1], a.shape[0]) != size:
        raise ValueError(f"all frames must be {size[0]} x {size[1]}, got {a.shape[1]} x {a.shape[0]}")
    return np.ascontiguousarray(a)


class FrameWriter:
    """``write(frame)`` uint8 (H, W, 3) RGB, top row first; ``close()`` finishes the file.

    Use as a context manager: leaving it with an exception removes the partial output.
    """

    kind = ""

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path = Path(os.fspath(path))
        self.fps = _fps_fraction(fps)
        self.count = 0
        self.size: tuple[int, int] | None = None  # (width, height) of the input frames

    def write(self, frame: np.ndarray) -> None:
        a = _check_frame(frame, self.size)
        if self.size is None:
            self.size = (a.shape[1], a.shape[0])
            self._open()
        self._write(a)
        self.count += 1

    def close(self) -> None:
        if self.size is None:
            raise ValueError("no frames were written")
        self._finish()

    def abort(self) -> None:
        """Drop whatever was written (the target path is left as it was)."""

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- per kind -------------------------------------------------------------------------------
    def _open(self) -> None:
        raise NotImplementedError

    def _write(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError


def _partial_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def _open_container(path: Path, options: dict | None = None):
    import av

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return av.open(str(path), "w", options=options or {})
    except (OSError, av.FFmpegError) as exc:
        raise UserError(f"cannot write {path}: {exc}", "check that the folder exists and is writable") from None


class _ContainerWriter(FrameWriter):
    """A PyAV-encoded file (MP4, GIF) written under its ``.partial`` name and renamed when finished."""

    def __init__(self, path, fps) -> None:
        super().__init__(path, fps)
        self._tmp = _partial_path(self.path)
        self._out = self._stream = None

    def _encode(self, frame) -> None:
        """Encode and mux one frame (``None``: flush the encoder)."""
        for packet in self._stream.encode(frame):
            self._out.mux(packet)

    def _finish(self) -> None:
        self._encode(None)
        self._out.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if self._out is not None:
            try:
                self._out.close()
            except Exception:
                pass
        self._tmp.unlink(missing_ok=True)


class _Mp4Writer(_ContainerWriter):
    kind = "mp4"

    def __init__(self, path, fps, crf: int = DEFAULT_CRF, preset: str = "medium") -> None:
        super().__init__(path, fps)
        if not 0 <= int(crf) <= 51:
            raise UserError(f"the H.264 quality (crf) must be from 0 to 51, got {crf}", "18 is visually lossless")
        self.crf, self.preset = int(crf), preset

    def _open(self) -> None:
        w, h = even_size(*self.size)
        self._out = _open_container(self._tmp)
        self._stream = self._out.add_stream("libx264", rate=self.fps,
                                            options={"crf": str(self.crf), "preset": self.preset})
        self._stream.width, self._stream.height, self._stream.pix_fmt = w, h, "yuv420p"

    def _write(self, frame: np.ndarray) -> None:
        import av

        w, h = self.size
        if (w, h) != even_size(w, h):  # repeat the last column / row: nothing is cut
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        self._encode(av.VideoFrame.from_ndarray(frame, format="rgb24"))


class _GifWriter(_ContainerWriter):
    kind = "gif"

    def __init__(self, path, fps) -> None:
        super().__init__(path, fps)
        self._graph = None

    def _open(self) -> None:
        import av.filter

        w, h = self.size
        self._out = _open_container(self._tmp, {"loop": "0"})  # 0 = loop forever
        self._stream = self._out.add_stream("gif", rate=self.fps)
        self._stream.width, self._stream.height, self._stream.pix_fmt = w, h, "pal8"
        # buffer -> split -> palettegen (one palette from every frame) -> paletteuse -> sink
        g = av.filter.Graph()
        src = g.add_buffer(width=w, height=h, format="rgb24", time_base=1 / self.fps)
        split = g.add("split")
        gen = g.add("palettegen", "stats_mode=full")
        use = g.add("paletteuse", "dither=sierra2_4a")
        sink = g.add("buffersink")
        src.link_to(split)
        split.link_to(gen, 0, 0)
        split.link_to(use, 1, 0)
        gen.link_to(use, 0, 1)
        use.link_to(sink)
        g.configure()
        self._graph = g

    def _write(self, frame: np.ndarray) -> None:
        import av

        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf.pts = self.count
        vf.time_base = 1 / self.fps
        self._graph.push(vf)  # palettegen holds every frame until the end of the stream

    def _finish(self) -> None:
        import av

        self._graph.push(None)
        while True:
            try:
                out = self._graph.pull()
            except (av.error.EOFError, av.error.BlockingIOError):
                break
            self._encode(out)
        super()._finish()


class _PngDirWriter(FrameWriter):
    kind = "dir"

    def _open(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"{self.path} is a file, not a folder", "name a folder (DIR/) for PNG frames")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the folder {self.path}: {exc.strerror or exc}") from None

    def _write(self, frame: np.ndarray) -> None:
        import cv2

        target = self.path / FRAME_NAME.format(self.count)
        tmp = target.with_name(target.stem + ".partial.png")
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(frame[:, :, ::-1])):
            raise UserError(f"cannot write {tmp}", "check that the folder is writable and the disk not full")
        os.replace(tmp, target)

    def _finish(self) -> None:
        for old in self.path.iterdir():  # frames of an earlier, longer clip
            m = _FRAME_RE.match(old.name)
            if m and int(m.group(1)) >= self.count:
                old.unlink()


def open_writer(path: str | os.PathLike, fps: float, *, crf: int = DEFAULT_CRF) -> FrameWriter:
    """A ``FrameWriter`` for ``path`` (kind from ``output_kind``)."""
    kind = output_kind(path)
    if kind == "mp4":
        return _Mp4Writer(path, fps, crf)
    if kind == "gif":
        return _GifWriter(path, fps)
    return _PngDirWriter(path, fps)


def write_frames(path: str | os.PathLike, frames, fps: float, *, crf: int = DEFAULT_CRF) -> Path:
    """Write all ``frames`` (uint8 (N, H, W, 3) or an iterable of (H, W, 3)); returns the path."""
    with open_writer(path, fps, crf=crf) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.path
