"""Failures -> one short sentence with the fix (bpy-free).

Every way a prediction can fail ends up here: protocol error codes from the backend
(``docs/protocol.md`` section 6), the client library's own codes (timeout, backend_unreachable,
backend_restarted, cancelled) and the add-on's (connection refused, pyzmq missing, no backend
configured, the local backend exited). Unknown codes are treated like ``internal_error``, as the
protocol asks.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

__all__ = ["describe_failure", "probe_tcp", "parse_tcp_address", "CANCELLED_MESSAGE"]

CANCELLED_MESSAGE = "Prediction cancelled; the scene was not changed."

_START = "start it (add-on preferences > Start Local Backend, or run `image-dynamics serve`)"

_MESSAGES: dict[str, str] = {
    "connection_refused": "Nothing is listening at {address} (connection refused): " + _START
                          + " or fix the address in the add-on preferences.",
    "backend_unreachable": "The backend at {address} stopped answering; the prediction was lost. Check that it "
                           "is still running (or restart it) and predict again.",
    "timeout": "No answer from a backend at {address}: " + _START + ", or fix the address in the add-on "
               "preferences.",
    "backend_restarted": "The backend restarted and lost the prediction: run Predict Motion again.",
    "unsupported_version": "The add-on and the backend speak different protocol versions: update the older "
                           "of the two.",
    "out_of_memory": "The backend ran out of memory: lower the motion resolution, or restart the backend "
                     "on the CPU (--device cpu).",
    "queue_full": "The backend is busy: wait for its other jobs to finish (or cancel some), then try again.",
    "shutting_down": "The backend is shutting down: start it again and predict again.",
    "too_large": "The photo or the requested motion size is too large for this backend: lower the motion "
                 "resolution. ({message})",
    "bad_image": "The backend rejected the photo: {message}. Check that the image loads in Blender.",
    "bad_option": "The backend rejected a setting: {message}. Change it in the Image Dynamics panel.",
    "bad_header": "The backend rejected the request ({message}): the add-on and backend versions may not "
                  "match; update the older of the two.",
    "malformed_message": "The backend could not read the request: the add-on and backend versions may not "
                         "match; update the older of the two.",
    "bad_array": "The backend could not read the request's data ({message}): update the older of the add-on "
                 "and the backend.",
    "unknown_op": "The backend does not know this request: update the backend.",
    "duplicate_job": "A prediction with this id is already running: wait for it or cancel it.",
    "unknown_job": "The backend no longer knows this prediction (it finished or was cancelled).",
    "internal_error": "The backend failed: {message}. Its console log has the details; try again, and "
                      "restart the backend if it persists.",
    "cancelled": CANCELLED_MESSAGE,
    "missing_zmq": "pyzmq is not available in Blender's Python, so the add-on cannot reach a backend: "
                   "install the extension zip built for your platform (it bundles pyzmq).",
    "no_backend": "No backend is configured: set its address, or a local backend executable, in the add-on "
                  "preferences.",
    "backend_exited": "The local backend exited: {message}. Check the executable and model in the add-on "
                      "preferences.",
    "backend_start_failed": "Could not start the local backend: {message}.",
    "no_photo": "The plane has no photo: import one with Import Photo as Plane.",
}


def describe_failure(code: str, message: str = "", hint: str = "", address: str = "") -> str:
    """One or two sentences a user can act on, for a failure ``code`` (see module doc)."""
    template = _MESSAGES.get(str(code))
    message = (message or "").strip().rstrip(".")
    if template is None:
        text = f"The backend reported a problem ({code}): {message or 'no details'}."
        if hint:
            text += f" {hint[0].upper()}{hint[1:]}" + ("" if hint.endswith(".") else ".")
        return text
    return template.format(address=address or "the configured address", message=message or "no details")


def parse_tcp_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a ``tcp://HOST:PORT`` address, else None (ipc:// and friends)."""
    try:
        parts = urlsplit(address)
        if parts.scheme != "tcp" or parts.hostname is None or parts.port is None:
            return None
        return parts.hostname, int(parts.port)
    except ValueError:
        return None


def probe_tcp(address: str, timeout: float = 0.5) -> str | None:
    """Quick TCP check before talking ZeroMQ (which never reports a refused connection).

    None when something accepts the connection (or the address is not tcp://), else a failure
    code for ``describe_failure``: 'connection_refused' or 'timeout'.
    """
    hp = parse_tcp_address(address)
    if hp is None:
        return None
    try:
        with socket.create_connection(hp, timeout=timeout):
            return None
    except ConnectionRefusedError:
        return "connection_refused"
    except OSError:
        return "timeout"
