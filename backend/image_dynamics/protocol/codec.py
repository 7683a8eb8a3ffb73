"""Encode / decode protocol messages: one JSON header frame + raw little-endian array frames.

A message is a list of frames (a ZeroMQ multipart, without the ROUTER identity frame):

    frame 0      UTF-8 JSON object, the header; ``header["arrays"]`` lists one descriptor
                 ``{"name": str, "dtype": str, "shape": [int, ...]}`` per following frame
    frame 1..n   the raw bytes of each array: C order, little-endian, exactly
                 prod(shape) * itemsize bytes

Nothing is ever pickled: dtypes come from a whitelist (``DTYPES``) and arrays are rebuilt with
``np.frombuffer``. Standard library + numpy only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .messages import SUPPORTED_VERSIONS, ErrorCode, ProtocolError, is_valid_id

__all__ = ["DTYPES", "CodecLimits", "Message", "encode", "decode", "decode_header", "frame_bytes"]

# Wire dtype name -> numpy dtype (always little-endian, whatever the host).
DTYPES: dict[str, np.dtype] = {
    "uint8": np.dtype("<u1"),
    "uint16": np.dtype("<u2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "float16": np.dtype("<f2"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "complex64": np.dtype("<c8"),
}
_KIND_NAMES = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items()}
MAX_NDIM = 8
MAX_NAME_LENGTH = 64


@dataclass(frozen=True)
class CodecLimits:
    max_header_bytes: int = 64 * 1024
    max_message_bytes: int = 513 * 1024 * 1024  # header + arrays; the server's default (service/limits.py)
    max_arrays: int = 8


@dataclass
class Message:
    header: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def op(self) -> str | None:
        op = self.header.get("op")
        return op if isinstance(op, str) else None

    @property
    def id(self) -> str | None:
        i = self.header.get("id")
        return i if isinstance(i, str) else None


def wire_dtype(array: np.ndarray) -> str:
    name = _KIND_NAMES.get((array.dtype.kind, array.dtype.itemsize))
    if name is None:
        raise TypeError(f"dtype {array.dtype} cannot be sent; allowed: {sorted(DTYPES)}")
    return name


def encode(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]] = ()) -> list:
    """Header dict + named arrays -> frames (``bytes`` header, ``memoryview`` buffers, zero-copy
    when the array already is little-endian C-contiguous). ``header["arrays"]`` is filled in."""
    items = list(arrays.items()) if isinstance(arrays, Mapping) else list(arrays)
    descriptors = []
    buffers = []
    for name, array in items:
        a = np.asarray(array)
        dname = wire_dtype(a)
        a = np.asarray(a, dtype=DTYPES[dname])  # (ascontiguousarray would turn 0-d into 1-d)
        if not a.flags.c_contiguous:
            a = a.copy(order="C")
        descriptors.append({"name": str(name), "dtype": dname, "shape": [int(s) for s in a.shape]})
        buffers.append(memoryview(a.reshape(-1).view(np.uint8)) if a.size else b"")
    full = dict(header)
    if descriptors or "arrays" in full:
        full["arrays"] = descriptors
    text = json.dumps(full, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return [text.encode("utf-8"), *buffers]


def frame_bytes(frame: Any) -> memoryview:
    """A received frame (bytes, bytearray, memoryview or zmq.Frame) as a flat byte memoryview."""
    buf = getattr(frame, "buffer", frame)
    view = memoryview(buf)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


def _no_constants(name: str):
    raise ValueError(f"JSON constant {name} is not allowed")


def _unique_pairs(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r:.40}")
        d[k] = v
    return d


def decode_header(frames: Sequence[Any], limits: CodecLimits = CodecLimits(),
                  supported_versions: Sequence[int] = SUPPORTED_VERSIONS) -> tuple[dict[str, Any], list[memoryview]]:
    """Frame-level and version checks; returns (header, buffer frames).

    The header (bounded by ``max_header_bytes``) is parsed before the frame count and total size are
    checked, so that those errors carry the request id: a client waits on that id."""
    if not isinstance(frames, (list, tuple)) or not frames:
        raise ProtocolError(ErrorCode.MALFORMED_MESSAGE, "empty message: expected a JSON header frame")
    views = [frame_bytes(f) for f in frames]
    raw = views[0]
    if raw.nbytes == 0:
        raise ProtocolError(ErrorCode.MALFORMED_MESSAGE, "frame 0 (the header) is empty")
    if raw.nbytes > limits.max_header_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"header is {raw.nbytes} bytes; the limit is {limits.max_header_bytes} bytes")
    try:
        text = raw.tobytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(ErrorCode.MALFORMED_MESSAGE, f"header is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        header = json.loads(text, parse_constant=_no_constants, object_pairs_hook=_unique_pairs)
    except RecursionError:
        raise ProtocolError(ErrorCode.MALFORMED_MESSAGE, "header JSON is nested too deeply") from None
    except ValueError as exc:
        raise ProtocolError(ErrorCode.MALFORMED_MESSAGE, f"header is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(header, dict):
        raise ProtocolError(ErrorCode.MALFORMED_MESSAGE, f"header must be a JSON object, got {type(header).__name__}")
    request_id = header.get("id") if is_valid_id(header.get("id")) else None
    if len(views) > 1 + limits.max_arrays:
        raise ProtocolError(ErrorCode.MALFORMED_MESSAGE,
                            f"message has {len(views)} frames; at most {1 + limits.max_arrays} (header + {limits.max_arrays} arrays)",
                            request_id=request_id)
    total = sum(v.nbytes for v in views)
    if total > limits.max_message_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"message is {total} bytes (header and arrays); the limit is "
                            f"{limits.max_message_bytes} bytes", request_id=request_id)
    version = header.get("protocol")
    if "protocol" not in header:
        raise ProtocolError(ErrorCode.BAD_HEADER, "header field 'protocol' (the protocol version) is missing",
                            request_id=request_id)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ProtocolError(ErrorCode.BAD_HEADER, "header field 'protocol' must be an integer", request_id=request_id)
    if version not in supported_versions:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {version} is not supported; this side speaks {list(supported_versions)}",
            request_id=request_id,
            extra={"supported_versions": list(supported_versions)},
        )
    return header, views[1:]


def _bad_array(message: str, request_id: str | None) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_ARRAY, message, request_id=request_id)


def decode_arrays(header: Mapping[str, Any], buffers: Sequence[memoryview], limits: CodecLimits = CodecLimits()) -> dict[str, np.ndarray]:
    """Check ``header["arrays"]`` against the buffer frames; returns read-only zero-copy arrays."""
    request_id = header.get("id") if is_valid_id(header.get("id")) else None
    descriptors = header.get("arrays", [])
    if descriptors is None:
        descriptors = []
    if not isinstance(descriptors, list):
        raise _bad_array("header field 'arrays' must be a list of {name, dtype, shape} objects", request_id)
    if len(descriptors) != len(buffers):
        raise _bad_array(f"header.arrays lists {len(descriptors)} arrays but the message has {len(buffers)} buffer frames",
                         request_id)
    out: dict[str, np.ndarray] = {}
    for i, (desc, buf) in enumerate(zip(descriptors, buffers)):
        where = f"header.arrays[{i}]"
        if not isinstance(desc, dict):
            raise _bad_array(f"{where} must be an object {{name, dtype, shape}}", request_id)
        if set(desc) != {"name", "dtype", "shape"}:
            raise _bad_array(f"{where} must have exactly the keys name, dtype, shape; got {sorted(desc)[:6]}", request_id)
        name, dtype, shape = desc["name"], desc["dtype"], desc["shape"]
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH:
            raise _bad_array(f"{where}.name must be a string of 1 to {MAX_NAME_LENGTH} characters", request_id)
        if name in out:
            raise _bad_array(f"array name {name!r} appears twice", request_id)
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise _bad_array(f"{where}.dtype {dtype!r:.40} is not allowed; allowed: {sorted(DTYPES)}", request_id)
        if (not isinstance(shape, list) or len(shape) > MAX_NDIM
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
            raise _bad_array(f"{where}.shape must be a list of at most {MAX_NDIM} non-negative integers", request_id)
        dt = DTYPES[dtype]
        nbytes = math.prod(shape) * dt.itemsize
        if nbytes > limits.max_message_bytes:
            raise ProtocolError(ErrorCode.TOO_LARGE,
                                f"array {name!r} declares shape {shape} {dtype} = {nbytes} bytes; the limit is "
                                f"{limits.max_message_bytes} bytes", request_id=request_id)
        if buf.nbytes != nbytes:
            raise _bad_array(f"array {name!r}: buffer has {buf.nbytes} bytes but shape {shape} {dtype} needs {nbytes}",
                             request_id)
        arr = np.frombuffer(buf, dtype=dt) if nbytes else np.zeros(0, dtype=dt)
        arr = arr.reshape(tuple(shape))
        arr.flags.writeable = False
        out[name] = arr
    return out


def decode(frames: Sequence[Any], limits: CodecLimits = CodecLimits(),
           supported_versions: Sequence[int] = SUPPORTED_VERSIONS) -> Message:
    """Frames -> ``Message`` (header dict + read-only arrays); raises ``ProtocolError``."""
    header, buffers = decode_header(frames, limits, supported_versions)
    return Message(header, decode_arrays(header, buffers, limits))
