"""Motion extraction: optical flow from the start frame to each of the next 149 frames -> spectral volume.

``D_t = flow(frame_0 -> frame_t)`` for t = 1 .. 149 (long range, never chained: chaining 0->1->2...
adds up every frame's error into drift), ``D_0 = 0``, then the canonical transform
``motion_to_spectral`` (``motion/spectral.py``), computed on the fly (``SpectralAccumulator``) so
no (150, 2, H, W) array is needed. Keeping K = 16 of the 76 temporal bins is itself a temporal
low-pass filter: frame-to-frame flow noise that is independent over t mostly lands in the
discarded bins. Then the zero-motion gate (``ZeroMotionGate``) zeroes pixels whose flow never
explains the video better than "nothing moved" (flat, still regions where flow follows noise).
Default method and the measurements behind every choice: ``flow.py``.

Warm start (``warm_start=True``, used by the methods that accept an initial flow): the flow 0->t
starts from the flow 0->(t-1). It is still a long-range estimate from the image pair (0, t), the
guess only puts the coarse-to-fine search near the answer, which matters when the displacement
from frame 0 grows past what the coarsest pyramid level can see (large sways, 10+ px).

Frame rate: the spectral volume's convention is 30 fps (bin k = 0.2 k Hz). A video at another rate
is resampled in time by nearest-frame selection (frame index round(t * fps / 30), t = 0..149), so
the bins keep their meaning in Hz; a warning says so. ``--start-frame`` counts source frames.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator

import cv2
import numpy as np

from ..errors import UserError
from ..motion.spectral import FPS, NUM_FRAMES, NUM_FREQS
from ..motion.volume_file import SpectralVolume
from .flow import DEFAULT_METHOD, METHODS, make_flow
from .video import iter_frames, video_fps

log = logging.getLogger(__name__)


def _progress(iterable: Iterable, total: int, desc: str, enabled: bool) -> Iterable:
    if not enabled:
        return iterable
    from tqdm import tqdm

    # disable=None: bars only on a terminal, so logs and test output stay clean.
    return tqdm(iterable, total=total, desc=desc, unit="frame", leave=False, disable=None, dynamic_ncols=True)


def postprocess_flow(flow: np.ndarray, median: int = 0) -> np.ndarray:
    """Optional spatial median filter (ksize 3 or 5) of a (H, W, 2) flow; 0 leaves it unchanged."""
    if median in (0, 1):
        return flow
    if median not in (3, 5):
        raise ValueError("median must be 0, 3 or 5")
    return cv2.medianBlur(np.ascontiguousarray(flow, dtype=np.float32), median)


class ZeroMotionGate:
    """Keep a pixel's motion only where the flow explains the video better than "nothing moved".

    Classical flow has no answer where the image is flat (sky, walls, smooth petals): there it
    follows sensor noise and returns up to a pixel of motion on a still scene. For every frame t,
    with Gaussian-windowed (``sigma`` px) squared residuals of the grey frames,

        r0 = window(|I_t(p) - I_0(p)|^2)                 (zero motion)
        r1 = window(|I_t(p + flow(p)) - I_0(p)|^2)        (the estimated flow; bicubic sampling,
                                                          which blurs less than bilinear)
        z_t = (r0 - r1) / noise_t,   noise_t = median over pixels of r1 (at least 0.25),

    and the evidence Z(p) = mean over the clip of z_t(p). A pixel's whole motion is scaled by
    clip((Z - z0) / (z1 - z0), 0, 1): still and flat regions read exactly 0, pixels whose flow
    clearly beats standing still keep it. Deciding once per pixel over the 149 frames (rather than
    per frame) pools 149 times more evidence, so even 0.1 px sways in texture survive. Because the
    weight is constant over time it applies equally to the motion texture and to its spectral
    volume. Measured effect (``flow.py``): static error on noisy synthetic clips from 0.15-0.2 px to
    about 0.03 px; what it costs is motion in flat, textureless moving areas.
    """

    def __init__(self, frame0: np.ndarray, sigma: float = 2.0, z0: float = 0.3, z1: float = 1.0,
                 min_noise: float = 0.25):
        self.g0 = _gray_float(frame0)
        h, w = self.g0.shape
        self.gx, self.gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        self.sigma, self.z0, self.z1, self.min_noise = sigma, z0, z1, min_noise
        self._evidence = np.zeros((h, w), np.float64)
        self.count = 0

    def add(self, frame_t: np.ndarray, flow: np.ndarray) -> None:
        gt = _gray_float(frame_t)
        warped = cv2.remap(gt, self.gx + flow[..., 0], self.gy + flow[..., 1], cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_REPLICATE)
        r0 = cv2.GaussianBlur((gt - self.g0) ** 2, (0, 0), self.sigma)
        r1 = cv2.GaussianBlur((warped - self.g0) ** 2, (0, 0), self.sigma)
        noise = max(float(np.median(r1)), self.min_noise)
        self._evidence += (r0 - r1) / noise
        self.count += 1

    @property
    def evidence(self) -> np.ndarray:
        return (self._evidence / max(self.count, 1)).astype(np.float32)

    def weight(self) -> np.ndarray:
        """(H, W) float32 in [0, 1]; all ones before any frame was added."""
        if self.count == 0:
            return np.ones_like(self.g0)
        return np.clip((self.evidence - self.z0) / (self.z1 - self.z0), 0.0, 1.0).astype(np.float32)


def _gray_float(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return frame.astype(np.float32)


class MotionStream:
    """Raw long-range flows of a frame sequence, plus the zero-motion gate's evidence on the side.

    ``for d in stream.motions(frames)`` yields D_t (2, H, W) float32: D_0 = 0, then
    flow(frame_0 -> frame_t), warm-started from the raw flow 0->(t-1) when ``warm_start``. The gate
    (``stream.gate``, None when ``gate=False``) collects its evidence as the frames go by; apply
    ``stream.weight()`` to the result (texture or spectral volume) at the end.
    """

    def __init__(self, method: str = DEFAULT_METHOD, warm_start: bool = True, median: int = 0, gate: bool = True):
        self.flow_fn = make_flow(method)
        self.use_init = warm_start and METHODS[method].uses_init
        self.median = median
        self.use_gate = gate
        self.gate: ZeroMotionGate | None = None

    def motions(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        it = iter(frames)
        try:
            frame0 = next(it)
        except StopIteration:
            return
        h, w = frame0.shape[:2]
        self.gate = ZeroMotionGate(frame0) if self.use_gate else None
        yield np.zeros((2, h, w), np.float32)
        prev = None
        for frame in it:
            flow = self.flow_fn(frame0, frame, init=prev if self.use_init else None)
            prev = flow
            flow = postprocess_flow(flow, self.median)
            if self.gate is not None:
                self.gate.add(frame, flow)
            yield flow.transpose(2, 0, 1)

    def weight(self) -> np.ndarray | None:
        return None if self.gate is None else self.gate.weight()


def extract_motion(frames: np.ndarray, start: int = 0, method: str = DEFAULT_METHOD, progress: bool = True,
                   warm_start: bool = True, median: int = 0, num_frames: int = NUM_FRAMES,
                   gate: bool = True) -> np.ndarray:
    """Motion texture (T, 2, H, W) float32 of ``frames[start : start + T]`` (RGB uint8 (N, H, W, 3)).

    The frames are taken as they are (30 fps assumed; ``extract_volume`` resamples other rates).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (N, H, W, 3), got {frames.shape}")
    if start < 0 or start + num_frames > frames.shape[0]:
        raise UserError(f"need {num_frames} frames from frame {start}, the clip has {frames.shape[0]}")
    window = frames[start:start + num_frames]
    out = np.empty((num_frames, 2) + window.shape[1:3], np.float32)
    stream = MotionStream(method, warm_start, median, gate)
    for t, d in enumerate(_progress(stream.motions(window), num_frames, f"flow ({method})", progress)):
        out[t] = d
    w = stream.weight()
    if w is not None:
        out *= w[None, None]
    return out


class SpectralAccumulator:
    """Builds S_k = (1/T) sum_t D_t exp(-2 pi i k t / T) one frame at a time (no (T, 2, H, W) array).

    Frames are buffered in chunks and folded in with two real matrix products (cos and sin
    parts), so memory stays at K + chunk frames. Equal to ``motion_to_spectral`` of the stacked
    frames up to float32 rounding.
    """

    def __init__(self, height: int, width: int, num_frames: int = NUM_FRAMES, num_freqs: int = NUM_FREQS,
                 chunk: int = 25):
        self.num_frames = num_frames
        self.num_freqs = num_freqs
        self.shape = (2, height, width)
        self._re = np.zeros((num_freqs, 2 * height * width), np.float32)
        self._im = np.zeros_like(self._re)
        angle = -2.0 * np.pi * np.outer(np.arange(num_freqs), np.arange(num_frames)) / num_frames
        self._cos = (np.cos(angle) / num_frames).astype(np.float32)  # (K, T)
        self._sin = (np.sin(angle) / num_frames).astype(np.float32)
        self._chunk = chunk
        self._times: list[int] = []
        self._frames: list[np.ndarray] = []
        self.count = 0

    def add(self, t: int, motion: np.ndarray) -> None:
        if motion.shape != self.shape:
            raise ValueError(f"motion frame must have shape {self.shape}, got {motion.shape}")
        self._times.append(t)
        self._frames.append(np.asarray(motion, np.float32).reshape(-1))
        self.count += 1
        if len(self._frames) >= self._chunk:
            self._flush()

    def _flush(self) -> None:
        if not self._frames:
            return
        block = np.stack(self._frames)  # (n, P)
        self._re += self._cos[:, self._times] @ block
        self._im += self._sin[:, self._times] @ block
        self._times, self._frames = [], []

    def result(self) -> np.ndarray:
        self._flush()
        if self.count != self.num_frames:
            raise RuntimeError(f"accumulated {self.count} of {self.num_frames} frames")
        S = (self._re + 1j * self._im).astype(np.complex64)
        return S.reshape((self.num_freqs,) + self.shape)


def spectral_from_frames(frames: Iterable[np.ndarray], method: str = DEFAULT_METHOD, progress: bool = True,
                         warm_start: bool = True, median: int = 0, num_frames: int = NUM_FRAMES,
                         num_freqs: int = NUM_FREQS, desc: str | None = None, gate: bool = True) -> np.ndarray:
    """Spectral volume (K, 2, H, W) complex64 of the first ``num_frames`` frames of an iterable."""
    acc: SpectralAccumulator | None = None
    stream = MotionStream(method, warm_start, median, gate)
    for t, d in enumerate(_progress(stream.motions(frames), num_frames, desc or f"flow ({method})", progress)):
        if t >= num_frames:
            break
        if acc is None:
            acc = SpectralAccumulator(d.shape[1], d.shape[2], num_frames, num_freqs)
        acc.add(t, d)
    if acc is None or acc.count < num_frames:
        got = 0 if acc is None else acc.count
        raise UserError(f"need {num_frames} frames for one motion window, got {got}")
    S = acc.result()
    w = stream.weight()
    if w is not None:
        S *= w[None, None]
    return S


def resample_indices(fps: float, num_frames: int = NUM_FRAMES, target_fps: float = FPS) -> np.ndarray:
    """Source-frame offsets (from the start frame) of the T output frames at ``target_fps``."""
    if abs(fps - target_fps) < 0.01:
        return np.arange(num_frames)
    return np.round(np.arange(num_frames) * fps / target_fps).astype(np.int64)


def _select(frames: Iterable[np.ndarray], offsets: np.ndarray) -> Iterator[np.ndarray]:
    """Keep the frames whose index is in ``offsets`` (sorted, may repeat: a frame is then yielded twice)."""
    j = 0
    for i, frame in enumerate(frames):
        while j < len(offsets) and offsets[j] == i:
            yield frame
            j += 1
        if j >= len(offsets):
            return


def extract_volume(video_path: str | os.PathLike, start_frame: int = 0, size: tuple[int, int] | None = None,
                   method: str | None = None, progress: bool = True, warm_start: bool = True,
                   median: int = 0, gate: bool = True) -> SpectralVolume:
    """Extract the spectral volume of the 5 s window of ``video_path`` that begins at ``start_frame``.

    ``size=(W, H)`` centre-crops and resizes the frames first (see ``video.py``); ``None`` keeps the
    video's resolution. The volume's image is the start frame; meta records video, start_frame,
    method, fps and the source-frame step. Raises ``UserError`` for unreadable or too-short videos.
    """
    method = method or DEFAULT_METHOD
    if method not in METHODS:
        make_flow(method)  # raises the UserError listing the choices
    video_path = os.fspath(video_path)
    if start_frame < 0:
        raise UserError(f"start frame must be 0 or more, got {start_frame}")
    # No full probe here: iter_frames decodes exactly the frames it needs and says precisely what is
    # missing (start past the end, too short, truncated) if the video ends early.
    fps, fps_reported = video_fps(video_path)
    if not fps_reported:
        log.warning("warning: %s does not say its frame rate; assuming 30 fps", video_path)
    offsets = resample_indices(fps)
    if abs(fps - FPS) >= 0.01:
        log.warning("warning: %s runs at %.3g fps, not 30: resampled in time to 30 fps by nearest-frame "
                    "selection so the frequency bins keep their meaning (0.2 Hz apart)", video_path, fps)
    needed = int(offsets[-1]) + 1

    first: list[np.ndarray] = []

    def frames() -> Iterator[np.ndarray]:
        for frame in _select(iter_frames(video_path, start_frame, needed, size), offsets):
            if not first:
                first.append(frame)
                h, w = frame.shape[:2]
                if size is None and w * h > 1280 * 720:
                    log.warning("warning: extracting at the full %dx%d resolution is slow; "
                                "--size 256x160 is the paper's", w, h)
            yield frame

    S = spectral_from_frames(frames(), method, progress, warm_start, median, gate=gate)
    meta = {
        "video": os.path.abspath(video_path),
        "start_frame": int(start_frame),
        "method": method,
        "fps": float(fps),
        "frame_step": float(fps / FPS),
        "warm_start": bool(warm_start and METHODS[method].uses_init),
        "median": int(median),
        "zero_motion_gate": bool(gate),
        "size": [int(S.shape[3]), int(S.shape[2])],
    }
    return SpectralVolume(S=S, fps=FPS, num_frames=NUM_FRAMES, image=first[0], source="extract", meta=meta)


def render_motion(image: np.ndarray, motion: np.ndarray, iterations: int = 12) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 that show ``image`` moved by the motion texture (T, 2, H, W).

    The exact inverse of extraction, for self-checks, tests and benchmarks: frame t shows the point
    at pixel p of ``image`` at p + D_t(p). Backward warping needs, for every output pixel x, the
    source p with p + D_t(p) = x, found by the fixed-point iteration p <- x - D_t(p) (converges
    when the displacement gradient stays well below 1), then bicubic sampling of the image.
    """
    image = np.asarray(image)
    h, w = image.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    frames = np.empty((motion.shape[0], h, w, 3), np.uint8)
    for t, d in enumerate(np.asarray(motion, np.float32)):
        px, py = gx.copy(), gy.copy()
        for _ in range(iterations):
            ux = cv2.remap(d[0], px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            uy = cv2.remap(d[1], px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            px, py = gx - ux, gy - uy
        frames[t] = cv2.remap(image, px, py, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return frames
