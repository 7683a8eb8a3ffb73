"""The wire protocol between Blender (or any script) and ``image-dynamics serve``.

Specified in ``docs/protocol.md``. This package imports only the standard library, numpy and (for
``client``) pyzmq, and uses relative imports only: the Blender add-on bundles it as-is. It must
never import torch or any other ``image_dynamics`` module.

* ``messages`` - version, op names, error codes + hints, header / option validation
* ``codec``    - multipart <-> (header, arrays): JSON header + raw little-endian buffers
* ``client``   - ``BackendClient`` (blocking ``predict`` / ``render_frames``, non-blocking ``submit`` /
  ``submit_render`` -> ``Job``)

``client`` (and so pyzmq) is imported lazily, so the codec works where pyzmq is missing.
"""

from __future__ import annotations

import importlib

from .codec import DTYPES, CodecLimits, Message, decode, encode
from .messages import (
    DEFAULT_ADDRESS,
    DEFAULT_HINTS,
    DEFAULT_PORT,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    CancelReason,
    ErrorCode,
    JobState,
    Op,
    PredictOptions,
    ProtocolError,
    RenderOptions,
    Reply,
)

_CLIENT_NAMES = ("BackendClient", "BackendError", "Job", "JobStatus", "PredictResult", "RenderResult")

__all__ = [
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "DEFAULT_ADDRESS",
    "DEFAULT_PORT",
    "DEFAULT_HINTS",
    "DTYPES",
    "CancelReason",
    "CodecLimits",
    "ErrorCode",
    "JobState",
    "Message",
    "Op",
    "PredictOptions",
    "ProtocolError",
    "RenderOptions",
    "Reply",
    "decode",
    "encode",
    *_CLIENT_NAMES,
]


def __getattr__(name: str):
    if name in _CLIENT_NAMES:
        return getattr(importlib.import_module(".client", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
