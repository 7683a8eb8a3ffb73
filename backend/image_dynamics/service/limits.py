"""Server limits: safe defaults, each settable with a ``serve`` flag, all reported in hello.

Defaults and why:

* ``max_image_pixels`` 16,777,216 (4096 x 4096): any photo a user would pick, downscaled or not.
  The networks see the photo at their own resolution (256 x 160), so more pixels buy nothing.
* ``max_output_pixels`` 1,048,576 (1 MPix, e.g. 1280 x 800): the result is K * 2 * 8 bytes a pixel
  (256 bytes at K = 16), so 1 MPix is a 256 MiB reply. The Blender mesh is 512 x 512.
* ``max_message_bytes`` 256 MiB: a 4096 x 4096 float32 RGBA photo fits (with the header). libzmq
  itself drops (and disconnects) frames over twice this (``hard_message_bytes``), so a
  structured ``too_large`` error answers everything in between.
* ``max_queue`` 64 jobs waiting in all, ``max_jobs_per_client`` 32 (queued + running), so one
  client cannot starve the others; ``max_clients`` 256 tracked connections.
* ``max_steps`` 1000 sampling steps (the schedule has 1000 timesteps).
* ``max_render_frames`` 3000 (100 s at 30 fps) and ``max_render_pixels`` 67,108,864 frame pixels
  a render job (frames x width x height): the reply is 3 bytes a pixel, so at most 192 MiB, and
  the displacements the renderer holds meanwhile 8 bytes a pixel (512 MiB).
* ``default_heartbeat_timeout_s`` 60: a client that never declared one (in hello) and has been
  silent for a minute is taken as gone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..protocol.codec import CodecLimits

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    max_image_pixels: int = 4096 * 4096
    min_image_side: int = 8
    max_output_pixels: int = 1024 * 1024
    min_output_side: int = 8
    max_output_side: int = 8192
    max_message_bytes: int = 256 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    max_queue: int = 64
    max_jobs_per_client: int = 32
    max_clients: int = 256
    max_steps: int = 1000
    max_render_frames: int = 3000
    max_render_pixels: int = 64 * 1024 * 1024
    max_batch: int = 8
    default_heartbeat_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value <= 0:
                raise ValueError(f"limit {name} must be positive, got {value}")

    @property
    def hard_message_bytes(self) -> int:
        return 2 * self.max_message_bytes + self.max_header_bytes

    def codec(self) -> CodecLimits:
        return CodecLimits(max_header_bytes=self.max_header_bytes, max_message_bytes=self.max_message_bytes, max_arrays=8)

    def to_wire(self) -> dict:
        """The limits as reported in the hello reply."""
        d = asdict(self)
        d.pop("max_clients")
        return d
