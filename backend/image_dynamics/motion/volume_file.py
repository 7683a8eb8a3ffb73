"""The canonical spectral-volume file (``.npz``): the one format every tool reads and writes.

Required keys
    S           complex64 (K, 2, H, W): spectral volume, see ``spectral.py`` for the convention;
                axis 1 is (x, y) displacement in pixels at W x H.
    freqs_hz    float32 (K,): k * fps / num_frames.
    fps         float scalar (30.0).
    num_frames  int scalar T (150).

Optional keys
    image       uint8 (H, W, 3): the frame-0 RGB image the motion belongs to, at W x H.
    source      str: where the volume came from ("synth", "extract", "predict", ...).
    meta_json   str: JSON with anything else (seed, start frame, model name, ...).

Files are written with ``allow_pickle=False`` semantics: only plain arrays and strings.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .spectral import FPS, NUM_FRAMES, frequencies_hz


PARTIAL_SUFFIX = ".partial.npz"  # names the temp files of unfinished writes (.gitignore has *.partial.npz)


class VolumeFileError(ValueError):
    """A spectral-volume file is missing, unreadable or does not follow the convention."""


def check_volume(volume, what: str = "the spectral volume") -> None:
    """Raise ``VolumeFileError`` for a volume no motion can be made of (frame rate, frame count,
    frequency bins, size): caught here, they would otherwise fail half-way through animating it."""
    K, _, H, W = volume.S.shape
    fps, T = float(volume.fps), int(volume.num_frames)
    if not (np.isfinite(fps) and fps > 0):
        raise VolumeFileError(f"{what} has a frame rate of {fps:g} fps; it must be positive: re-export it")
    if T < 2:
        raise VolumeFileError(f"{what} spans {T} frames; it needs at least 2: re-export it")
    if not 1 <= K <= T // 2:
        raise VolumeFileError(f"{what} has {K} frequency bins, but a motion of {T} frames has at most {T // 2}: "
                              "it is not a valid spectral volume (re-export it)")
    if H < 1 or W < 1:
        raise VolumeFileError(f"{what} is {W} x {H} pixels; it has no pixels: re-export it")


@dataclass
class SpectralVolume:
    S: np.ndarray
    fps: float = FPS
    num_frames: int = NUM_FRAMES
    image: np.ndarray | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.S = np.asarray(self.S)
        if self.S.ndim != 4 or self.S.shape[1] != 2:
            raise VolumeFileError(f"S must have shape (K, 2, H, W), got {self.S.shape}")
        self.S = self.S.astype(np.complex64, copy=False)
        check_volume(self)
        if self.image is not None:
            img = np.asarray(self.image)
            if img.shape != (self.height, self.width, 3) or img.dtype != np.uint8:
                raise VolumeFileError(
                    f"image must be uint8 of shape {(self.height, self.width, 3)}, got {img.dtype} {img.shape}"
                )
            self.image = img

    @property
    def num_freqs(self) -> int:
        return self.S.shape[0]

    @property
    def height(self) -> int:
        return self.S.shape[2]

    @property
    def width(self) -> int:
        return self.S.shape[3]

    @property
    def freqs_hz(self) -> np.ndarray:
        return frequencies_hz(self.num_freqs, self.num_frames, self.fps)


def save_volume(path: str | os.PathLike, volume: SpectralVolume, compress: bool = True) -> None:
    """Write ``volume`` as a canonical ``.npz`` (atomically: a crash never leaves half a file).

    The file is written to a uniquely named temp file in the same folder, synced, then renamed
    over ``path``; any failure (or Ctrl-C) removes the temp file. Raises ``VolumeFileError`` for a
    name that is not ``*.npz`` or is a folder, ``OSError`` when the folder cannot be written.
    """
    arrays: dict[str, np.ndarray] = {
        "S": volume.S.astype(np.complex64),
        "freqs_hz": volume.freqs_hz.astype(np.float32),
        "fps": np.float32(volume.fps),
        "num_frames": np.int32(volume.num_frames),
    }
    if volume.image is not None:
        arrays["image"] = volume.image
    if volume.source:
        arrays["source"] = np.array(volume.source)
    if volume.meta:
        arrays["meta_json"] = np.array(json.dumps(volume.meta, sort_keys=True))
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise VolumeFileError(f"spectral-volume files end in .npz, got {path!r}")
    if os.path.isdir(path):
        raise VolumeFileError(f"{path} is a folder")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with atomic_file(path) as fh:
        (np.savez_compressed if compress else np.savez)(fh, **arrays)


@contextlib.contextmanager
def atomic_file(path: str, suffix: str = PARTIAL_SUFFIX):
    """Write ``path`` all or nothing: yields a binary file (a unique temp file beside ``path``),
    which is synced and renamed over ``path`` when the block ends; any failure (or Ctrl-C) removes
    it instead, so neither a half file nor a stray temp file is ever left."""
    fd, tmp = create_temp_beside(path, suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C and disk-full alike: never leave the temp file behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def create_temp_beside(path: str, suffix: str = PARTIAL_SUFFIX) -> tuple[int, str]:
    """A new, uniquely named ``STEM.<random><suffix>`` in ``path``'s folder: (fd open for writing, name).

    Unique so that two writers of one file never share a temp file (each publishes a whole file;
    the last rename wins). Created like any file (mode 0o666 less the umask, unlike ``mkstemp``'s
    0o600), so the published file gets the usual permissions.
    """
    folder, name = os.path.split(path)
    stem = (name[: -len(".npz")] if name.endswith(".npz") else name)[:100]  # stays within name limits
    for _ in range(100):
        tmp = os.path.join(folder, f"{stem}.{os.urandom(4).hex()}{suffix}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot find a free temporary name beside {path}")


def load_volume(path: str | os.PathLike) -> SpectralVolume:
    """Read and validate a canonical ``.npz``; raises ``VolumeFileError`` with a readable reason."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VolumeFileError(f"no such spectral-volume file: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            missing = {"S", "fps", "num_frames"} - files
            if missing:
                raise VolumeFileError(f"{path} is not a spectral-volume file: missing {sorted(missing)}")
            S = data["S"]
            fps = float(data["fps"])
            num_frames = int(data["num_frames"])
            image = data["image"] if "image" in files else None
            source = str(data["source"]) if "source" in files else ""
            meta = json.loads(str(data["meta_json"])) if "meta_json" in files else {}
            if "freqs_hz" in files:
                expected = frequencies_hz(S.shape[0], num_frames, fps) if S.ndim == 4 else None
                if expected is not None and not np.allclose(data["freqs_hz"], expected, atol=1e-4):
                    raise VolumeFileError(f"{path}: freqs_hz does not equal k * fps / num_frames")
    except VolumeFileError:
        raise
    except Exception as exc:  # zipfile / format errors: say what the file is, not a traceback
        raise VolumeFileError(f"cannot read spectral-volume file {path}: {exc}") from exc
    if not np.iscomplexobj(S):
        raise VolumeFileError(f"{path}: S must be complex, got {S.dtype}")
    if not np.all(np.isfinite(S)):
        raise VolumeFileError(f"{path}: S contains NaN or Inf")
    try:
        return SpectralVolume(S=S, fps=fps, num_frames=num_frames, image=image, source=source, meta=meta)
    except VolumeFileError as exc:
        raise VolumeFileError(f"{path}: {exc}") from None
