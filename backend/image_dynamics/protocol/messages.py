"""Protocol vocabulary: version, op names, error codes with default hints, header validation.

Standard library + numpy only (the Blender add-on bundles this package as-is). The wire format is
specified in ``docs/protocol.md``; this module is its executable form:

* ``PROTOCOL_VERSION`` / ``SUPPORTED_VERSIONS``
* ``Op`` (requests a client sends) and ``Reply`` (messages the server sends)
* ``ErrorCode``: stable string codes; ``DEFAULT_HINTS`` says what a user can do about each
* ``ProtocolError``: a violation, carrying the code, message, hint and the request id (if known)
* ``validate_request(header)``: common + per-op header checks (no array checks, see ``codec``)
* ``parse_predict(header, arrays, limits, samplers)``: the image and ``PredictOptions``
* ``parse_render(header, arrays, limits, renderers)``: image, volume, optional coordinates and
  ``RenderOptions``
* ``image_to_rgb_uint8``: the one conversion of an accepted image to (H, W, 3) uint8
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Mapping

import numpy as np

__all__ = [
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "DEFAULT_PORT",
    "DEFAULT_ADDRESS",
    "Op",
    "Reply",
    "JobState",
    "CancelReason",
    "ErrorCode",
    "DEFAULT_HINTS",
    "RETRYABLE",
    "CLIENT_SIDE_CODES",
    "ProtocolError",
    "PredictOptions",
    "validate_request",
    "parse_predict",
    "RenderOptions",
    "parse_render",
    "RENDER_OPTION_NAMES",
    "image_to_rgb_uint8",
    "error_header",
    "check_error_header",
    "is_valid_id",
    "IMAGE_DTYPES",
    "OPTION_NAMES",
]

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
DEFAULT_PORT = 5555
DEFAULT_ADDRESS = f"tcp://127.0.0.1:{DEFAULT_PORT}"

MAX_ID_LENGTH = 128
_ID_RE = re.compile(r"^[\x21-\x7e]{1,%d}$" % MAX_ID_LENGTH)  # printable ASCII, no spaces
MIN_HEARTBEAT_TIMEOUT_S = 2.0
MAX_HEARTBEAT_TIMEOUT_S = 3600.0
MAX_SEED = 2**63 - 1
MAX_GUIDANCE = 100.0
MAX_LOOP_FRAMES = 100_000
MAX_RENDER_FPS = 1000.0
MAX_SPEED = 100.0
MIN_SPEED = 0.01
MAX_MAGNIFY = 100.0
# Frequencies a render volume may have. The model's volumes have 16 (the paper's K); K is otherwise
# bounded only by volume_num_frames // 2, which the client picks (up to 50,000), and the volume is
# held at the photo's size while rendering, so K must have a fixed cap as well.
MAX_RENDER_FREQS = 64
IMAGE_DTYPES = ("uint8", "float32")
IMAGE_CHANNELS = (1, 3, 4)


class Op(str, Enum):
    """Requests (client -> server)."""

    HELLO = "hello"
    PING = "ping"
    STATUS = "status"
    PREDICT = "predict"
    RENDER = "render"
    CANCEL = "cancel"
    BYE = "bye"


class Reply(str, Enum):
    """Messages the server sends (server -> client)."""

    HELLO = "hello"
    PONG = "pong"
    STATUS = "status"
    ACCEPTED = "accepted"
    PROGRESS = "progress"
    RESULT = "result"
    CANCELLED = "cancelled"
    ERROR = "error"
    BYE = "bye"


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class CancelReason(str, Enum):
    CLIENT = "client"  # the client sent cancel (or bye)
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"  # the client fell silent past its heartbeat timeout
    CLIENT_GONE = "client_gone"  # the client's connection closed (nobody will read this one)
    SHUTDOWN = "shutdown"  # the backend is stopping


class ErrorCode(str, Enum):
    """Stable error codes. Never renamed or reused; new ones may be added (treat unknown as generic)."""

    # sent by the server
    MALFORMED_MESSAGE = "malformed_message"
    UNSUPPORTED_VERSION = "unsupported_version"
    BAD_HEADER = "bad_header"
    UNKNOWN_OP = "unknown_op"
    BAD_ARRAY = "bad_array"
    BAD_IMAGE = "bad_image"
    BAD_OPTION = "bad_option"
    TOO_LARGE = "too_large"
    QUEUE_FULL = "queue_full"
    DUPLICATE_JOB = "duplicate_job"
    UNKNOWN_JOB = "unknown_job"
    OUT_OF_MEMORY = "out_of_memory"
    INTERNAL_ERROR = "internal_error"
    SHUTTING_DOWN = "shutting_down"
    # raised by the client library only, never sent on the wire
    TIMEOUT = "timeout"
    BACKEND_RESTARTED = "backend_restarted"
    BACKEND_UNREACHABLE = "backend_unreachable"
    CANCELLED = "cancelled"


CLIENT_SIDE_CODES = frozenset(
    {ErrorCode.TIMEOUT, ErrorCode.BACKEND_RESTARTED, ErrorCode.BACKEND_UNREACHABLE, ErrorCode.CANCELLED}
)

DEFAULT_HINTS: dict[ErrorCode, str] = {
    ErrorCode.MALFORMED_MESSAGE: (
        "send a multipart message: frame 0 a UTF-8 JSON object (the header), then one frame per entry "
        "of header.arrays (see docs/protocol.md)"
    ),
    ErrorCode.UNSUPPORTED_VERSION: (
        "the add-on and the backend speak different protocol versions: update the older of the two "
        "(the reply lists the versions this backend supports)"
    ),
    ErrorCode.BAD_HEADER: "fix the header field named in the message (docs/protocol.md lists every field)",
    ErrorCode.UNKNOWN_OP: "use one of the ops hello, ping, status, predict, render, cancel, bye",
    ErrorCode.BAD_ARRAY: (
        "every buffer must be raw little-endian C-order data of exactly prod(shape) * itemsize bytes, "
        "with one {name, dtype, shape} entry in header.arrays per buffer frame"
    ),
    ErrorCode.BAD_IMAGE: (
        "send the photo as an 'image' array of shape (H, W, 3) (or 4 / 1 channels), uint8 0-255 or "
        "float32 0-1, with no NaN or Inf"
    ),
    ErrorCode.BAD_OPTION: "fix the option named in the message; the hello reply lists the limits",
    ErrorCode.TOO_LARGE: (
        "downscale the photo or ask for a smaller output size; the hello reply lists the limits and the "
        "backend's --max-* flags raise them"
    ),
    ErrorCode.QUEUE_FULL: "the backend is busy: wait for running jobs to finish or cancel some, then try again",
    ErrorCode.DUPLICATE_JOB: "use a new id for every predict or render request",
    ErrorCode.UNKNOWN_JOB: "the job already finished, was cancelled, or was never submitted on this connection",
    ErrorCode.OUT_OF_MEMORY: (
        "the device ran out of memory: ask for a smaller output size, run fewer jobs at once, or "
        "restart the backend with --device cpu"
    ),
    ErrorCode.INTERNAL_ERROR: (
        "the backend hit an unexpected error; its console log has the details. Try again, and restart "
        "the backend if it persists"
    ),
    ErrorCode.SHUTTING_DOWN: "the backend is stopping: start it again (image-dynamics serve) and resubmit",
    ErrorCode.TIMEOUT: (
        "the backend did not answer in time: check that `image-dynamics serve` is running, that the "
        "address is right and, with encryption, that the CURVE keys match"
    ),
    ErrorCode.BACKEND_RESTARTED: "the backend restarted and lost the jobs in flight: submit them again",
    ErrorCode.BACKEND_UNREACHABLE: (
        "lost contact with the backend: check that it is still running; the client reconnects by itself"
    ),
    ErrorCode.CANCELLED: "the job was cancelled; submit it again if you still need it",
}

RETRYABLE = frozenset(
    {
        ErrorCode.QUEUE_FULL,
        ErrorCode.OUT_OF_MEMORY,
        ErrorCode.SHUTTING_DOWN,
        ErrorCode.TIMEOUT,
        ErrorCode.BACKEND_RESTARTED,
        ErrorCode.BACKEND_UNREACHABLE,
        ErrorCode.INTERNAL_ERROR,
    }
)


class ProtocolError(Exception):
    """A message broke the protocol (or a request cannot be served): code + message + hint."""

    def __init__(self, code: ErrorCode | str, message: str, hint: str | None = None, *, request_id: str | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        code = ErrorCode(code)
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = DEFAULT_HINTS.get(code, "") if hint is None else hint
        self.request_id = request_id
        self.extra = dict(extra or {})

    def __str__(self) -> str:
        return f"[{self.code.value}] {self.message}"


def is_valid_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_ID_RE.match(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def error_header(code: ErrorCode | str, message: str, hint: str | None = None, *, request_id: str | None = None,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The header of an ``error`` reply (its layout is frozen across protocol versions)."""
    code = ErrorCode(code)
    header: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "op": Reply.ERROR.value,
        "id": request_id,
        "code": code.value,
        "message": message,
        "hint": DEFAULT_HINTS.get(code, "") if hint is None else hint,
        "retryable": code in RETRYABLE,
    }
    for key, value in (extra or {}).items():
        header.setdefault(key, value)
    return header


def check_error_header(header: Mapping[str, Any]) -> None:
    """Assert an ``error`` header is well-formed (used by clients and tests); raises ValueError."""
    if header.get("op") != Reply.ERROR.value:
        raise ValueError("not an error header")
    if not isinstance(header.get("code"), str) or not header["code"]:
        raise ValueError("error without a code")
    if not isinstance(header.get("message"), str) or not header["message"]:
        raise ValueError("error without a message")
    if not isinstance(header.get("hint"), str):
        raise ValueError("error without a hint")
    if header.get("id") is not None and not is_valid_id(header["id"]):
        raise ValueError("error with an invalid id")
    if not isinstance(header.get("retryable"), bool):
        raise ValueError("error without retryable flag")


def validate_request(header: Mapping[str, Any]) -> Op:
    """Common and per-op checks of a request header (version already checked by ``codec.decode``).

    Returns the ``Op``. Raises ``ProtocolError`` (bad_header / unknown_op)."""
    request_id = header.get("id") if is_valid_id(header.get("id")) else None
    op = header.get("op")
    if not isinstance(op, str):
        raise ProtocolError(ErrorCode.BAD_HEADER, "header field 'op' is missing or not a string", request_id=request_id)
    try:
        op_enum = Op(op)
    except ValueError:
        shown = op if len(op) <= 40 else op[:40] + "..."
        raise ProtocolError(ErrorCode.UNKNOWN_OP, f"unknown op {shown!r}", request_id=request_id) from None
    if "id" not in header:
        raise ProtocolError(ErrorCode.BAD_HEADER, f"{op} request without an 'id'")
    if request_id is None:
        raise ProtocolError(
            ErrorCode.BAD_HEADER,
            f"header field 'id' must be a string of 1 to {MAX_ID_LENGTH} printable ASCII characters without spaces",
        )
    if op_enum is Op.HELLO:
        hb = header.get("heartbeat_timeout_s")
        if hb is not None and (not _is_number(hb) or not MIN_HEARTBEAT_TIMEOUT_S <= hb <= MAX_HEARTBEAT_TIMEOUT_S):
            raise ProtocolError(
                ErrorCode.BAD_HEADER,
                f"'heartbeat_timeout_s' must be a number from {MIN_HEARTBEAT_TIMEOUT_S:g} to {MAX_HEARTBEAT_TIMEOUT_S:g}",
                request_id=request_id,
            )
        client = header.get("client")
        if client is not None and not isinstance(client, dict):
            raise ProtocolError(ErrorCode.BAD_HEADER, "'client' must be an object", request_id=request_id)
    if op_enum not in (Op.PREDICT, Op.RENDER) and header.get("arrays"):
        raise ProtocolError(ErrorCode.BAD_ARRAY, f"{op} takes no arrays", request_id=request_id)
    if op_enum in (Op.PREDICT, Op.RENDER):
        options = header.get("options")
        if options is not None and not isinstance(options, dict):
            raise ProtocolError(ErrorCode.BAD_HEADER, "'options' must be an object", request_id=request_id)
    return op_enum


# -- predict ------------------------------------------------------------------------------------

OPTION_NAMES = ("seed", "steps", "guidance", "loop_frames", "size", "sampler", "preview")


@dataclass(frozen=True)
class PredictOptions:
    """Validated predict options; None means "the model's default"."""

    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    loop_frames: int | None = None
    size: tuple[int, int] | None = None  # (width, height) of the output volume
    sampler: str | None = None
    preview: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.size is not None:
            d["size"] = list(self.size)
        return d

    def batch_key(self) -> tuple:
        """Options jobs must share to be sampled together (everything but seed and preview)."""
        return (self.steps, self.guidance, self.loop_frames, self.size, self.sampler)


def _bad_option(message: str, request_id: str | None) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_OPTION, message, request_id=request_id)


def parse_options(options: Mapping[str, Any] | None, limits: Any, samplers: tuple[str, ...] | list[str] = (),
                  request_id: str | None = None) -> PredictOptions:
    """``header.options`` -> ``PredictOptions``; ``limits`` needs ``max_steps``, ``max_output_pixels``,
    ``max_output_side`` and ``min_output_side`` attributes."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise _bad_option(f"unknown predict option(s) {unknown[:5]}; known: {list(OPTION_NAMES)}", request_id)
    seed = options.get("seed", 0)
    if seed is None:
        seed = 0
    if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise _bad_option(f"'seed' must be an integer from 0 to 2**63-1, got {seed!r:.40}", request_id)
    steps = options.get("steps")
    if steps is not None and (not _is_int(steps) or not 1 <= steps <= limits.max_steps):
        raise _bad_option(f"'steps' must be an integer from 1 to {limits.max_steps}, got {steps!r:.40}", request_id)
    guidance = options.get("guidance")
    if guidance is not None:
        if not _is_number(guidance) or not 0.0 <= guidance <= MAX_GUIDANCE:
            raise _bad_option(f"'guidance' must be a number from 0 to {MAX_GUIDANCE:g}, got {guidance!r:.40}", request_id)
        guidance = float(guidance)
    loop_frames = options.get("loop_frames")
    if loop_frames is not None and (not _is_int(loop_frames) or not 2 <= loop_frames <= MAX_LOOP_FRAMES):
        raise _bad_option(f"'loop_frames' must be null or an integer from 2 to {MAX_LOOP_FRAMES}, got {loop_frames!r:.40}",
                          request_id)
    size = options.get("size")
    if size is not None:
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
            raise _bad_option(f"'size' must be null or [width, height] (two integers), got {size!r:.60}", request_id)
        w, h = size
        lo, hi = limits.min_output_side, limits.max_output_side
        if not (lo <= w <= hi and lo <= h <= hi):
            raise _bad_option(f"'size' sides must be from {lo} to {hi} pixels, got {w} x {h}", request_id)
        if w * h > limits.max_output_pixels:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"output size {w} x {h} = {w * h} pixels is over the limit of {limits.max_output_pixels} pixels",
                request_id=request_id,
            )
        size = (w, h)
    sampler = options.get("sampler")
    if sampler is not None and (not isinstance(sampler, str) or (samplers and sampler not in samplers)):
        raise _bad_option(f"'sampler' must be null or one of {list(samplers)}, got {sampler!r:.40}", request_id)
    preview = options.get("preview", False)
    if not isinstance(preview, bool):
        raise _bad_option(f"'preview' must be true or false, got {preview!r:.40}", request_id)
    return PredictOptions(seed=seed, steps=steps, guidance=guidance, loop_frames=loop_frames, size=size,
                          sampler=sampler, preview=preview)


def check_image(image: np.ndarray, limits: Any, request_id: str | None = None) -> None:
    """Shape / dtype / size / finiteness checks of a predict image; ``limits`` needs
    ``max_image_pixels`` and ``min_image_side``."""
    if image.dtype.name not in IMAGE_DTYPES:
        raise ProtocolError(ErrorCode.BAD_IMAGE, f"image dtype must be one of {list(IMAGE_DTYPES)}, got {image.dtype.name}",
                            request_id=request_id)
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in IMAGE_CHANNELS)):
        raise ProtocolError(ErrorCode.BAD_IMAGE, f"image shape must be (H, W, 3), (H, W, 4), (H, W, 1) or (H, W), got {list(image.shape)}",
                            request_id=request_id)
    h, w = image.shape[:2]
    if h * w > limits.max_image_pixels:
        raise ProtocolError(ErrorCode.TOO_LARGE,
                            f"image {w} x {h} = {w * h} pixels is over the limit of {limits.max_image_pixels} pixels",
                            request_id=request_id)
    if min(h, w) < limits.min_image_side:
        raise ProtocolError(ErrorCode.BAD_IMAGE, f"image {w} x {h} is too small: sides must be at least {limits.min_image_side} pixels",
                            request_id=request_id)
    if image.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(image)))
        if bad:
            raise ProtocolError(ErrorCode.BAD_IMAGE, f"image contains {bad} NaN or Inf values", request_id=request_id)


def parse_predict(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray], limits: Any,
                  samplers: tuple[str, ...] | list[str] = ()) -> tuple[np.ndarray, PredictOptions]:
    """Validate a predict request; returns (image as received, options). Raises ``ProtocolError``."""
    request_id = header.get("id")
    names = sorted(arrays)
    if names != ["image"]:
        raise ProtocolError(ErrorCode.BAD_ARRAY, f"predict takes exactly one array named 'image', got {names[:5]}",
                            request_id=request_id)
    image = arrays["image"]
    check_image(image, limits, request_id)
    options = parse_options(header.get("options"), limits, samplers, request_id)
    return image, options


def image_to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """An accepted image -> (H, W, 3) uint8: float values are clipped to [0, 1] and scaled by 255
    (rounded), alpha is dropped, one channel is repeated. No colour management."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.dtype != np.uint8:
        a = np.rint(np.clip(a.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    return np.ascontiguousarray(a)


# -- render -------------------------------------------------------------------------------------

RENDER_OPTION_NAMES = ("frames", "fps", "loop", "magnify", "speed", "renderer", "volume_fps", "volume_num_frames")
RENDER_ARRAYS = ("image", "S", "coords")
_VOLUME_HINT = ("send the motion as 'S', complex64 (K, 2, H, W) with (x, y) displacements in pixels, and optionally "
                "'coords', complex64 (frames, K); see docs/protocol.md, render")


@dataclass(frozen=True)
class RenderOptions:
    """Validated render options. ``frames`` is the clip length (with ``coords``: their row count);
    ``renderer`` None means the server's default."""

    frames: int
    fps: float = 30.0
    loop: bool = False
    magnify: float = 1.0
    speed: float = 1.0
    renderer: str | None = None
    volume_fps: float = 30.0
    volume_num_frames: int = 150

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number_option(options: Mapping[str, Any], name: str, default: float, lo: float, hi: float,
                   request_id: str | None, *, open_low: bool = False) -> float:
    value = options.get(name)
    if value is None:
        return default
    ok = _is_number(value) and (lo < value if open_low else lo <= value) and value <= hi
    if not ok:
        bound = f"above {lo:g}" if open_low else f"from {lo:g}"
        raise _bad_option(f"'{name}' must be a number {bound} to {hi:g}, got {value!r:.40}", request_id)
    return float(value)


def check_volume(S: np.ndarray, limits: Any, num_frames: int, request_id: str | None = None) -> None:
    """A render request's spectral volume: complex64 (K, 2, h, w), 1 <= K <= min(num_frames // 2,
    ``MAX_RENDER_FREQS``), h * w within ``max_output_pixels``, finite."""
    if S.dtype.name != "complex64" or S.ndim != 4 or S.shape[1] != 2:
        raise ProtocolError(ErrorCode.BAD_ARRAY, f"'S' must be complex64 of shape (K, 2, H, W), got {S.dtype.name} "
                            f"{list(S.shape)}", _VOLUME_HINT, request_id=request_id)
    K, _, h, w = S.shape
    k_max = min(num_frames // 2, MAX_RENDER_FREQS)
    if not 1 <= K <= k_max:
        why = f"1 to {k_max} fit a {num_frames}-frame volume" if k_max < MAX_RENDER_FREQS else \
            f"a render takes 1 to {MAX_RENDER_FREQS}"
        raise ProtocolError(ErrorCode.BAD_ARRAY, f"'S' has {K} frequencies; {why}", _VOLUME_HINT, request_id=request_id)
    if min(h, w) < limits.min_output_side:
        raise ProtocolError(ErrorCode.BAD_ARRAY, f"'S' is {w} x {h}: sides must be at least {limits.min_output_side}",
                            request_id=request_id)
    if h * w > limits.max_output_pixels:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"'S' is {w} x {h} = {w * h} pixels, over the limit of "
                            f"{limits.max_output_pixels}", request_id=request_id)
    bad = int(np.count_nonzero(~np.isfinite(S)))
    if bad:
        raise ProtocolError(ErrorCode.BAD_ARRAY, f"'S' contains {bad} NaN or Inf values", _VOLUME_HINT,
                            request_id=request_id)


def parse_render_options(options: Mapping[str, Any] | None, limits: Any, renderers: tuple[str, ...] | list[str] = (),
                         coord_frames: int | None = None, request_id: str | None = None) -> RenderOptions:
    """``header.options`` of a render request -> ``RenderOptions``; ``limits`` needs ``max_render_frames``.
    ``coord_frames``: the row count of a ``coords`` array, which fixes the frame count."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(RENDER_OPTION_NAMES))
    if unknown:
        raise _bad_option(f"unknown render option(s) {unknown[:5]}; known: {list(RENDER_OPTION_NAMES)}", request_id)
    frames = options.get("frames")
    if frames is None and coord_frames is None:
        raise _bad_option("'frames' (how many frames to render) is required without a 'coords' array", request_id)
    if frames is not None and (not _is_int(frames) or not 1 <= frames <= limits.max_render_frames):
        raise _bad_option(f"'frames' must be an integer from 1 to {limits.max_render_frames}, got {frames!r:.40}",
                          request_id)
    if coord_frames is not None:
        if frames is not None and frames != coord_frames:
            raise _bad_option(f"'frames' is {frames} but 'coords' has {coord_frames} rows", request_id)
        frames = coord_frames
    fps = _number_option(options, "fps", 30.0, 0.0, MAX_RENDER_FPS, request_id, open_low=True)
    speed = _number_option(options, "speed", 1.0, MIN_SPEED, MAX_SPEED, request_id)
    magnify = _number_option(options, "magnify", 1.0, -MAX_MAGNIFY, MAX_MAGNIFY, request_id)
    volume_fps = _number_option(options, "volume_fps", 30.0, 0.0, MAX_RENDER_FPS, request_id, open_low=True)
    loop = options.get("loop", False)
    if not isinstance(loop, bool):
        raise _bad_option(f"'loop' must be true or false, got {loop!r:.40}", request_id)
    if loop and coord_frames is not None:
        raise _bad_option("'loop' cannot be combined with 'coords' (the coordinates already say the timing)", request_id)
    vnf = options.get("volume_num_frames", 150)
    if vnf is None:
        vnf = 150
    if not _is_int(vnf) or not 2 <= vnf <= MAX_LOOP_FRAMES:
        raise _bad_option(f"'volume_num_frames' must be an integer from 2 to {MAX_LOOP_FRAMES}, got {vnf!r:.40}",
                          request_id)
    renderer = options.get("renderer")
    if renderer is not None and (not isinstance(renderer, str) or (renderers and renderer not in renderers)):
        raise _bad_option(f"'renderer' must be null or one of {list(renderers)}, got {renderer!r:.40}", request_id)
    if loop and frames * speed * volume_fps / fps < 2:
        raise _bad_option(f"a loop of {frames} frames at {fps:g} fps and speed {speed:g} lasts under 2 motion frames; "
                          "render more frames", request_id)
    return RenderOptions(frames=frames, fps=fps, loop=loop, magnify=magnify, speed=speed, renderer=renderer,
                         volume_fps=volume_fps, volume_num_frames=vnf)


def parse_render(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray], limits: Any,
                 renderers: tuple[str, ...] | list[str] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, RenderOptions]:
    """Validate a render request; returns (image as received, S, coords or None, options).

    ``limits`` needs the predict image / output limits plus ``max_render_frames`` and
    ``max_render_pixels``, which bounds both frames x image pixels (the size of the reply) and
    K x image pixels (the volume resampled to the photo's size, 16 bytes a value, which the server
    holds while it renders). Raises ``ProtocolError``."""
    request_id = header.get("id")
    names = set(arrays)
    if not {"image", "S"} <= names or not names <= set(RENDER_ARRAYS):
        raise ProtocolError(ErrorCode.BAD_ARRAY, f"render takes the arrays 'image' and 'S' and optionally 'coords', "
                            f"got {sorted(names)[:5]}", _VOLUME_HINT, request_id=request_id)
    image = arrays["image"]
    check_image(image, limits, request_id)
    coords = arrays.get("coords")
    coord_frames = None
    if coords is not None:
        if coords.dtype.name != "complex64" or coords.ndim != 2:
            raise ProtocolError(ErrorCode.BAD_ARRAY, f"'coords' must be complex64 of shape (frames, K), got "
                                f"{coords.dtype.name} {list(coords.shape)}", _VOLUME_HINT, request_id=request_id)
        if not 1 <= coords.shape[0] <= limits.max_render_frames:
            raise _bad_option(f"'coords' must have 1 to {limits.max_render_frames} rows (frames), got {coords.shape[0]}",
                              request_id)
        if not np.all(np.isfinite(coords)):
            raise ProtocolError(ErrorCode.BAD_ARRAY, "'coords' contains NaN or Inf values", _VOLUME_HINT,
                                request_id=request_id)
        coord_frames = int(coords.shape[0])
    options = parse_render_options(header.get("options"), limits, renderers, coord_frames, request_id)
    S = arrays["S"]
    check_volume(S, limits, options.volume_num_frames, request_id)
    if coords is not None and coords.shape[1] != S.shape[0]:
        raise ProtocolError(ErrorCode.BAD_ARRAY, f"'coords' has {coords.shape[1]} columns but 'S' has {S.shape[0]} "
                            "frequencies", _VOLUME_HINT, request_id=request_id)
    h, w = image.shape[:2]
    K = S.shape[0]
    if K * h * w > limits.max_render_pixels:
        # The server resamples S to the photo's size: K * 2 * h * w complex64 values, whatever
        # size S arrives at (a tiny S with a 4096 x 4096 photo would be 4 GiB at K = 16).
        raise ProtocolError(ErrorCode.TOO_LARGE, f"'S' at the photo's size {w} x {h} would hold {K} x {h * w} = "
                            f"{K * h * w} values ({K * h * w * 16 / 2**30:.1f} GiB), over the limit of "
                            f"{limits.max_render_pixels} (max_render_pixels)",
                            f"send a photo of at most {limits.max_render_pixels // K} pixels ({K} frequencies): "
                            "the frames come at the photo's size; the backend's --max-render-pixels raises the limit",
                            request_id=request_id)
    if options.frames * h * w > limits.max_render_pixels:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"{options.frames} frames of {w} x {h} are "
                            f"{options.frames * h * w} pixels, over the limit of {limits.max_render_pixels}",
                            request_id=request_id)
    return image, S, coords, options
