"""Rules for backend requests that need no Blender (bpy-free, unit-tested).

* ``check_address``    - is the backend address one the client can connect to; if not, the fix
* ``fit_render_size``  - the photo size for a frame render within the backend's limits
* ``cancel_text``      - the sentence for a job the backend (not the user) cancelled
* ``edit_mode_text``   - why a finished result waits, and what to do
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit

__all__ = ["check_address", "fit_render_size", "RenderTooLarge", "cancel_text", "edit_mode_text",
           "MIN_RENDER_SIDE"]

_EXAMPLE = "tcp://HOST:PORT (e.g. tcp://127.0.0.1:5555)"
_WHERE = "in the add-on preferences"

# Frames smaller than this (shorter side) are not worth rendering: refuse instead of shrinking.
MIN_RENDER_SIDE = 64


def check_address(address: str) -> str | None:
    """None if ``address`` is a ZeroMQ address the add-on can connect to (``tcp://HOST:PORT`` or
    ``ipc://PATH``), else one sentence saying what is wrong and how to write it."""
    address = (address or "").strip()
    if not address:
        return (f"No backend address is set: enter {_EXAMPLE} {_WHERE}, or turn on Start a Local Backend.")
    if "://" not in address:
        if ":" in address and address.rsplit(":", 1)[1].isdigit():
            return (f'The backend address "{address}" needs the tcp:// prefix: write tcp://{address} {_WHERE}.')
        return f'The backend address "{address}" is not valid: write it as {_EXAMPLE} {_WHERE}.'
    scheme, rest = address.split("://", 1)
    if scheme == "ipc":
        return None if rest else f'The backend address "{address}" has no path: write it as ipc://PATH {_WHERE}.'
    if scheme != "tcp":
        return (f'The backend address "{address}" uses {scheme}://, which the add-on cannot use: write it as '
                f"{_EXAMPLE} {_WHERE}.")
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        return (f'The backend address "{address}" has no valid port (a number from 1 to 65535): write it as '
                f"{_EXAMPLE} {_WHERE}.")
    host = parts.hostname
    if not host or host == "*" or parts.path or parts.query or parts.fragment or parts.username:
        return f'The backend address "{address}" is not valid: write it as {_EXAMPLE} {_WHERE}.'
    if port is None:
        return f'The backend address "{address}" has no port: write it as {_EXAMPLE} {_WHERE}.'
    if not 1 <= port <= 65535:
        return (f'The backend address "{address}" has no valid port (a number from 1 to 65535): write it as '
                f"{_EXAMPLE} {_WHERE}.")
    return None


class RenderTooLarge(ValueError):
    """A frame render the backend would refuse whatever the photo size: ``text`` says the fix."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def fit_render_size(width: int, height: int, frames: int, max_render_pixels: int | None,
                    max_render_frames: int | None, modes: int = 1,
                    min_side: int = MIN_RENDER_SIDE) -> tuple[int, int]:
    """(width, height) of the photo to send for ``frames`` frames of a volume with ``modes``
    frequencies: the photo's own size if it fits the backend's ``max_render_pixels`` (which bounds
    frames x width x height, the reply, and modes x width x height, the volume at the photo's
    size), else the largest size with the same aspect ratio that fits. Raises ``RenderTooLarge``
    when there are more frames than ``max_render_frames`` or the frames would be smaller than
    ``min_side`` (or the photo's own shorter side, if smaller). ``None`` limits (an older
    backend) are not checked."""
    width, height, frames = int(width), int(height), int(frames)
    if max_render_frames is not None and frames > int(max_render_frames):
        raise RenderTooLarge(f"The scene's frame range has {frames} frames but this backend renders at most "
                             f"{int(max_render_frames)} at once: shorten the frame range.")
    per = max(1, frames, int(modes))
    if max_render_pixels is None or per * width * height <= int(max_render_pixels):
        return width, height
    budget = int(max_render_pixels) // per  # pixels a frame may have
    scale = math.sqrt(budget / float(width * height))
    w, h = max(1, int(width * scale)), max(1, int(height * scale))
    while w * h > budget and (w > 1 or h > 1):  # float rounding: step down the longer side
        if w >= h:
            w -= 1
        else:
            h -= 1
    if min(w, h) < min(min_side, width, height):
        raise RenderTooLarge(f"{frames} frames would be only {w} x {h} pixels each (the backend renders at most "
                             f"{int(max_render_pixels)} pixels in all): shorten the frame range, or start the "
                             "backend with a larger --max-render-pixels.")
    return w, h


_AGAIN = {"prediction": "predict again", "frame render": "render the frames again"}


def cancel_text(reason: str | None, what: str, user_text: str) -> str:
    """The message for a job the backend reported as cancelled, from its ``reason``
    (``docs/protocol.md``: client, heartbeat_timeout, client_gone, shutdown). ``user_text`` is
    the message for a cancel the user asked for."""
    again = _AGAIN.get(what, "try again")
    reason = (reason or "client").strip()
    if reason == "client":
        return user_text
    if reason == "shutdown":
        text = f"The backend stopped (shut down) before the {what} finished: start it again and {again}."
    elif reason == "heartbeat_timeout":
        text = (f"The backend dropped the {what} because it did not hear from Blender for too long (heartbeat "
                f"timeout; Blender may have been busy): {again}.")
    elif reason == "client_gone":
        text = f"The backend dropped the {what} because the connection to it closed: {again}."
    else:
        text = f"The backend cancelled the {what} ({reason}): {again}."
    return text + " The scene was not changed."


def edit_mode_text(object_name: str, mode: str, what: str = "the predicted motion") -> str:
    """Why a finished result is not applied yet: the plane is in Edit Mode (or another mode)."""
    name = "Edit Mode" if mode.startswith("EDIT") else mode.replace("_", " ").title() + " Mode"
    return f"Leave {name} on {object_name} to apply {what}."
