"""Batch extraction: a folder of videos -> training shards of (image, spectral volume) pairs.

For every video under the folder (recursive; .mp4 .mov .mkv .avi .webm .m4v), start frames every
``stride`` frames (10, as in the paper, counted at 30 fps) while a whole 5 s window fits; each
window is extracted (flow from its start frame to each of the next 149 frames), filtered (camera
motion / no motion, see ``filters.py``) and, if accepted, appended to the current shard.

Shard file ``DIR/shard_XXXX.npz`` (``np.savez_compressed``, no pickles):

    images        uint8   (N, H, W, 3)      start frame of each window, RGB
    S             float16 (N, K, 4, H, W)   spectral volume, channels x_re, y_re, x_im, y_im
                                            (the official demo's order), pixels at W x H
    videos        str     (N,)              source video path, relative to the input folder
    start_frames  int32   (N,)              start frame of the window in source frames
    fps           float32 ()                30 (the spectral convention; see extractor.py)
    num_frames    int32   ()                150
    channel_order str     ()                "x_re,y_re,x_im,y_im"

Bytes per pair, uncompressed, at 256 x 160 and K = 16: image 122,880 + S 16*4*256*160*2 =
5,242,880, so 5.37 MB (half of complex64's 10.5 MB). float16 keeps about 3 significant digits:
the rounding error is below 1e-3 of each coefficient (below 0.005 px for coefficients under 8 px).
Compression gains little on real motion (flow noise does not compress) and much on still regions.

``manifest.json`` lists every window with its status ("accepted" with shard and index, or
"rejected" with the filter's reason) and every video that could not be read with the error. A
corrupt video is reported and skipped, never fatal. Shards are written atomically; the manifest
is rewritten after each shard, so an interrupted run leaves consistent files behind.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import UserError
from ..motion.spectral import FPS, NUM_FRAMES, NUM_FREQS
from .extractor import resample_indices, spectral_from_frames
from .filters import FilterSettings, motion_stats, rejection_reason
from .flow import DEFAULT_METHOD
from .video import VIDEO_EXTENSIONS, iter_frames, probe_video

log = logging.getLogger(__name__)

CHANNEL_ORDER = "x_re,y_re,x_im,y_im"
DEFAULT_SIZE = (256, 160)
DEFAULT_STRIDE = 10
DEFAULT_SHARD_SIZE = 32


def pack_spectral(S: np.ndarray) -> np.ndarray:
    """(K, 2, H, W) complex -> (K, 4, H, W) float16, channels x_re, y_re, x_im, y_im."""
    S = np.asarray(S)
    return np.concatenate([S.real, S.imag], axis=1).astype(np.float16)


def unpack_spectral(packed: np.ndarray) -> np.ndarray:
    """(K, 4, H, W) float16 -> (K, 2, H, W) complex64 (inverse of :func:`pack_spectral`)."""
    p = np.asarray(packed, dtype=np.float32)
    return (p[:, 0:2] + 1j * p[:, 2:4]).astype(np.complex64)


def find_videos(root: str | os.PathLike) -> list[str]:
    """Every video file under ``root`` (recursive), sorted, hidden folders skipped."""
    root = os.fspath(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.lower().endswith(VIDEO_EXTENSIONS) and not name.startswith("."):
                found.append(os.path.join(dirpath, name))
    return found


def window_starts(num_frames: int, fps: float, stride: int = DEFAULT_STRIDE) -> tuple[list[int], int]:
    """(start frames, frames a window spans) in source frames for a video of ``num_frames`` at ``fps``."""
    span = int(resample_indices(fps)[-1]) + 1
    step = max(1, round(stride * fps / FPS))
    return list(range(0, num_frames - span + 1, step)), span


@dataclass
class BatchResult:
    out_dir: str
    accepted: int = 0
    rejected: int = 0
    failed_videos: list[dict[str, str]] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)
    seconds: float = 0.0
    bytes_written: int = 0
    mean_motion_px: float = 0.0  # over accepted windows
    moving_fraction: float = 0.0  # over accepted windows


class _ShardWriter:
    def __init__(self, out_dir: str, shard_size: int):
        self.out_dir = out_dir
        self.shard_size = shard_size
        self.images: list[np.ndarray] = []
        self.spectra: list[np.ndarray] = []
        self.videos: list[str] = []
        self.starts: list[int] = []
        self.paths: list[str] = []
        self.bytes = 0

    @property
    def next_location(self) -> tuple[str, int]:
        return f"shard_{len(self.paths):04d}.npz", len(self.images)

    def add(self, image: np.ndarray, S: np.ndarray, video: str, start: int) -> None:
        self.images.append(image)
        self.spectra.append(pack_spectral(S))
        self.videos.append(video)
        self.starts.append(start)

    def full(self) -> bool:
        return len(self.images) >= self.shard_size

    def flush(self) -> str | None:
        if not self.images:
            return None
        name = f"shard_{len(self.paths):04d}.npz"
        path = os.path.join(self.out_dir, name)
        tmp = path[: -len(".npz")] + ".partial.npz"
        np.savez_compressed(
            tmp,
            images=np.stack(self.images),
            S=np.stack(self.spectra),
            videos=np.array(self.videos, dtype=str),
            start_frames=np.array(self.starts, dtype=np.int32),
            fps=np.float32(FPS),
            num_frames=np.int32(NUM_FRAMES),
            channel_order=np.array(CHANNEL_ORDER),
        )
        os.replace(tmp, path)
        self.bytes += os.path.getsize(path)
        self.paths.append(path)
        self.images, self.spectra, self.videos, self.starts = [], [], [], []
        return path


def _windows(path: str, starts: list[int], offsets: np.ndarray, size: tuple[int, int]) -> Iterator[tuple[int, list]]:
    """Stream the video once, yielding (start, frames of the window) with a rolling buffer."""
    span = int(offsets[-1]) + 1
    buffer: collections.deque = collections.deque(maxlen=span)
    pending = collections.deque(starts)
    for i, frame in enumerate(iter_frames(path, 0, None, size)):
        buffer.append(frame)
        while pending and i == pending[0] + span - 1:
            s = pending.popleft()
            yield s, [buffer[int(o)] for o in offsets]
        if not pending:
            return
    if pending:
        raise UserError(f"{path} ended early: the windows from frame {pending[0]} on could not be read")


def extract_folder(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    size: tuple[int, int] = DEFAULT_SIZE,
    method: str | None = None,
    stride: int = DEFAULT_STRIDE,
    shard_size: int = DEFAULT_SHARD_SIZE,
    settings: FilterSettings | None = FilterSettings(),
    progress: bool = True,
    max_windows_per_video: int | None = None,
    gate: bool = True,
) -> BatchResult:
    """Extract every window of every video in ``in_dir`` into shards under ``out_dir``.

    ``settings=None`` keeps every window (no filters). Returns counts, shard paths and the videos
    that failed (each with its error message).
    """
    method = method or DEFAULT_METHOD
    in_dir, out_dir = os.fspath(in_dir), os.fspath(out_dir)
    if not os.path.isdir(in_dir):
        raise UserError(f"no such folder: {in_dir}")
    videos = find_videos(in_dir)
    if not videos:
        raise UserError(f"no videos in {in_dir}", "batch mode reads " + " ".join(VIDEO_EXTENSIONS) + " files")
    os.makedirs(out_dir, exist_ok=True)
    if any(n.startswith("shard_") and n.endswith(".npz") for n in os.listdir(out_dir)):
        raise UserError(f"{out_dir} already holds shards", "choose an empty output folder")

    t0 = time.perf_counter()
    result = BatchResult(out_dir=out_dir)
    writer = _ShardWriter(out_dir, shard_size)
    manifest: dict[str, Any] = {
        "input": os.path.abspath(in_dir), "method": method, "zero_motion_gate": gate, "size": list(size),
        "stride": stride, "fps": FPS, "num_frames": NUM_FRAMES, "num_freqs": NUM_FREQS, "channel_order": CHANNEL_ORDER,
        "filters": None if settings is None else asdict(settings), "windows": [], "failed_videos": [],
        "shards": [],
    }

    def write_manifest() -> None:
        manifest["shards"] = [os.path.basename(p) for p in writer.paths]
        manifest["accepted"], manifest["rejected"] = result.accepted, result.rejected
        tmp = os.path.join(out_dir, "manifest.json.partial")
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=1)
        os.replace(tmp, os.path.join(out_dir, "manifest.json"))

    # First pass: probe every video (decoding to count frames is cheap next to optical flow).
    plans = []
    for path in videos:
        rel = os.path.relpath(path, in_dir)
        try:
            info = probe_video(path)
        except UserError as exc:
            result.failed_videos.append({"video": rel, "error": exc.message})
            log.warning("warning: skipping %s: %s", rel, exc.message)
            continue
        starts, _ = window_starts(info.num_frames, info.fps, stride)
        if max_windows_per_video is not None:
            starts = starts[:max_windows_per_video]
        if not starts:
            msg = f"too short: {info.num_frames} frames at {info.fps:.3g} fps, a window needs 5 s"
            result.failed_videos.append({"video": rel, "error": msg})
            log.warning("warning: skipping %s: %s", rel, msg)
            continue
        plans.append((path, rel, info, starts))

    if not plans:
        manifest["failed_videos"] = result.failed_videos
        write_manifest()
        raise UserError(f"none of the {len(videos)} video(s) in {in_dir} could be used: "
                        + "; ".join(f"{f['video']}: {f['error']}" for f in result.failed_videos[:3]),
                        "see manifest.json in the output folder")

    total = sum(len(p[3]) for p in plans)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="window", desc="extracting", disable=None, dynamic_ncols=True)
    try:
        for vi, (path, rel, info, starts) in enumerate(plans):
            if bar is not None:
                bar.set_postfix_str(f"video {vi + 1}/{len(plans)} {os.path.basename(rel)}")
            offsets = resample_indices(info.fps)
            done = 0
            try:
                for start, frames in _windows(path, starts, offsets, size):
                    S = spectral_from_frames(frames, method, progress=False, gate=gate)
                    stats = motion_stats(S, camera_px=settings.camera_px if settings else 1.0)
                    reason = rejection_reason(stats, settings) if settings is not None else None
                    entry: dict[str, Any] = {"video": rel, "start_frame": start, **stats.as_dict()}
                    if reason is None:
                        shard, index = writer.next_location
                        writer.add(frames[0], S, rel, start)
                        entry.update(status="accepted", shard=shard, index=index)
                        result.accepted += 1
                        if writer.full():
                            writer.flush()
                            write_manifest()
                    else:
                        entry.update(status="rejected", reason=reason)
                        result.rejected += 1
                    manifest["windows"].append(entry)
                    done += 1
                    if bar is not None:
                        bar.update(1)
            except UserError as exc:
                result.failed_videos.append({"video": rel, "error": exc.message})
                log.warning("warning: %s failed after %d windows: %s", rel, done, exc.message)
                if bar is not None:
                    bar.update(len(starts) - done)
        writer.flush()
    finally:
        if bar is not None:
            bar.close()
        manifest["failed_videos"] = result.failed_videos
        result.seconds = time.perf_counter() - t0
        manifest["seconds"] = result.seconds
        write_manifest()
    result.shards = list(writer.paths)
    result.bytes_written = writer.bytes
    accepted = [w for w in manifest["windows"] if w["status"] == "accepted"]
    if accepted:
        result.mean_motion_px = float(np.mean([w["mean_motion_px"] for w in accepted]))
        result.moving_fraction = float(np.mean([w["moving_fraction"] for w in accepted]))
    return result


class DenseShardDataset:
    """Random access to the (image, spectral volume) pairs of a shard folder.

    ``ds[i] -> (image uint8 (H, W, 3), S complex64 (K, 2, H, W))``. Shards are compressed, so a
    shard is decompressed whole on first touch and kept (one at a time): read in shard order, or
    shuffle within shards, for speed.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise UserError(f"no such shard folder: {self.root}")
        self.paths = sorted(os.path.join(self.root, n) for n in os.listdir(self.root)
                            if n.startswith("shard_") and n.endswith(".npz") and ".partial" not in n)
        self._index: list[tuple[int, int]] = []
        for si, path in enumerate(self.paths):
            with np.load(path, allow_pickle=False) as data:
                n = int(data["start_frames"].shape[0])
            self._index.extend((si, j) for j in range(n))
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self._index)

    def _shard(self, si: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cached is None or self._cached[0] != si:
            with np.load(self.paths[si], allow_pickle=False) as data:
                self._cached = (si, data["images"], data["S"])
        return self._cached[1], self._cached[2]

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        si, j = self._index[i]
        images, packed = self._shard(si)
        return images[j], unpack_spectral(packed[j])
