"""Server limits: safe defaults, each settable with a ``serve`` flag, all reported in hello.

Defaults and why:

* ``max_image_pixels`` 16,777,216 (4096 x 4096): any photo a user would pick, downscaled or not.
  The networks see the photo at their own resolution (256 x 160), so more pixels buy nothing.
* ``max_output_pixels`` 1,048,576 (1 MPix, e.g. 1280 x 800): the result is K * 2 * 8 bytes a pixel
  (256 bytes at K = 16), so 1 MPix is a 256 MiB reply. The Blender mesh is 512 x 512.
* ``max_message_bytes`` 513 MiB: one request, header and arrays together. Derived from the limits
  above (``largest_request_bytes``) so that every request they allow can be sent: room for the
  largest photo (4096 x 4096 float32 RGBA, 256 MiB) and the largest K = 16 volume (at
  ``max_output_pixels``, 256 MiB) together, as a render carries both, plus ``coords`` for
  ``max_render_frames`` and a full header. (An upper bound: other render limits may refuse so big
  a pair, never a request that fits them.)
  libzmq drops (and disconnects) any single frame over ``max_frame_bytes``; everything else too
  big gets a structured ``too_large`` error with the request id.
* ``max_header_bytes`` 64 KiB: a request header is a few hundred bytes.
* ``max_unread_bytes`` 513 MiB: replies the server keeps for one connection that is not reading
  them (beyond ZeroMQ's small send queue): two of the largest replies (``largest_reply_bytes``).
  A connection over it has its jobs cancelled and its unread replies dropped, so a client that
  submits and never reads cannot make the server hold every result.
* ``max_queue`` 64 jobs waiting in all, ``max_jobs_per_client`` 32 (queued + running), so one
  client cannot starve the others; ``max_clients`` 256 tracked connections.
* ``max_steps`` 1000 sampling steps (the schedule has 1000 timesteps).
* ``max_render_frames`` 3000 (100 s at 30 fps) and ``max_render_pixels`` 67,108,864 frame pixels
  a render job (frames x width x height): the reply is 3 bytes a pixel, so at most 192 MiB, and
  the displacements the renderer holds meanwhile 8 bytes a pixel (512 MiB).
* ``default_heartbeat_timeout_s`` 60: a client that never declared one (in hello) and has been
  silent for a minute is taken as gone. Like a client's own, 2 to 3600 s.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from ..protocol.codec import CodecLimits
from ..protocol.messages import MAX_HEARTBEAT_TIMEOUT_S, MIN_HEARTBEAT_TIMEOUT_S

__all__ = ["Limits", "LimitError", "largest_request_bytes", "largest_reply_bytes", "unread_bytes_for"]

MIB = 2**20
IMAGE_BYTES_PER_PIXEL = 16  # float32 RGBA, the widest photo a client may send
VOLUME_BYTES_PER_PIXEL = 16 * 2 * 8  # K = 16 (the shipped models) complex64 x and y displacements
COORD_BYTES_PER_FRAME = 16 * 8  # a render's coords row: K complex64
FRAME_BYTES_PER_PIXEL = 3  # a rendered frame: uint8 RGB
MIN_MESSAGE_BYTES = 1024  # room for a request header
MAX_MESSAGE_BYTES = 2**40  # a sanity bound (1 TiB), far past any machine's memory
MIN_UNREAD_BYTES = MIB  # below this even progress and pong replies would trip it

_DEFAULT_HEADER_BYTES = 64 * 1024


def _round_up_mib(n: int) -> int:
    return -(-n // MIB) * MIB


def largest_request_bytes(max_image_pixels: int, max_output_pixels: int, max_render_frames: int,
                          max_header_bytes: int = _DEFAULT_HEADER_BYTES) -> int:
    """A bound on the biggest request those limits allow: the largest photo in its widest dtype, the
    largest K = 16 volume and coords (a render carries all three) and a full header, rounded up to
    whole MiB. As ``max_message_bytes`` it lets every such request through."""
    return _round_up_mib(max_header_bytes + IMAGE_BYTES_PER_PIXEL * max_image_pixels
                         + VOLUME_BYTES_PER_PIXEL * max_output_pixels + COORD_BYTES_PER_FRAME * max_render_frames)


def largest_reply_bytes(max_output_pixels: int, max_render_pixels: int,
                        max_header_bytes: int = _DEFAULT_HEADER_BYTES) -> int:
    """The biggest result those limits allow (a K = 16 volume or a clip of frames), header included."""
    return max_header_bytes + max(VOLUME_BYTES_PER_PIXEL * max_output_pixels, FRAME_BYTES_PER_PIXEL * max_render_pixels)


def unread_bytes_for(max_output_pixels: int, max_render_pixels: int) -> int:
    """The default ``max_unread_bytes``: two of the largest replies, so one slow read never trips it."""
    return _round_up_mib(2 * largest_reply_bytes(max_output_pixels, max_render_pixels))


class LimitError(ValueError):
    """A limit out of range: ``name`` (the ``Limits`` field) ``rule``, got ``value``."""

    def __init__(self, name: str, rule: str, value) -> None:
        super().__init__(f"{name} {rule}, got {value!r}")
        self.name, self.rule, self.value = name, rule, value


_D_IMAGE, _D_OUTPUT, _D_FRAMES, _D_RENDER = 4096 * 4096, 1024 * 1024, 3000, 64 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_image_pixels: int = _D_IMAGE
    min_image_side: int = 8
    max_output_pixels: int = _D_OUTPUT
    min_output_side: int = 8
    max_output_side: int = 8192
    max_message_bytes: int = largest_request_bytes(_D_IMAGE, _D_OUTPUT, _D_FRAMES)
    max_header_bytes: int = _DEFAULT_HEADER_BYTES
    max_unread_bytes: int = unread_bytes_for(_D_OUTPUT, _D_RENDER)
    max_queue: int = 64
    max_jobs_per_client: int = 32
    max_clients: int = 256
    max_steps: int = 1000
    max_render_frames: int = _D_FRAMES
    max_render_pixels: int = _D_RENDER
    max_batch: int = 8
    default_heartbeat_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "default_heartbeat_timeout_s":
                # NaN would make every hello reply unencodable (JSON has no NaN), a tiny one expire everyone
                ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                      and MIN_HEARTBEAT_TIMEOUT_S <= value <= MAX_HEARTBEAT_TIMEOUT_S)
                if not ok:
                    raise LimitError(f.name, f"must be a number of seconds from {MIN_HEARTBEAT_TIMEOUT_S:g} to "
                                             f"{MAX_HEARTBEAT_TIMEOUT_S:g}", value)
            elif not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise LimitError(f.name, "must be a positive integer", value)
        self._at_least("max_image_pixels", self.min_image_side ** 2, "min_image_side squared")
        self._at_least("max_output_side", self.min_output_side, "min_output_side")
        self._at_least("max_output_pixels", self.min_output_side ** 2, "min_output_side squared")
        self._at_least("max_header_bytes", MIN_MESSAGE_BYTES, "1 KiB")
        self._at_least("max_message_bytes", self.max_header_bytes, "max_header_bytes")
        self._at_least("max_unread_bytes", MIN_UNREAD_BYTES, "1 MiB")
        for name in ("max_message_bytes", "max_unread_bytes"):
            if getattr(self, name) > MAX_MESSAGE_BYTES:
                raise LimitError(name, f"must be at most {MAX_MESSAGE_BYTES} bytes (1 TiB)", getattr(self, name))

    def _at_least(self, name: str, least: int, what: str) -> None:
        if getattr(self, name) < least:
            raise LimitError(name, f"must be at least {what} ({least})", getattr(self, name))

    @property
    def max_frame_bytes(self) -> int:
        """The largest single frame a request can need (ZMQ_MAXMSGSIZE: libzmq checks frames, not messages)."""
        return max(self.max_message_bytes, self.max_header_bytes)

    def codec(self) -> CodecLimits:
        return CodecLimits(max_header_bytes=self.max_header_bytes, max_message_bytes=self.max_message_bytes, max_arrays=8)

    def to_wire(self) -> dict:
        """The limits as reported in the hello reply."""
        d = asdict(self)
        d.pop("max_clients")
        return d
