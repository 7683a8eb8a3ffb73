"""The vendored motion math (copies of ``image_dynamics.motion`` made by the build script)."""

from __future__ import annotations

try:
    from .._vendor.image_dynamics_motion import loops, modal, spectral, volume_file
except ImportError as exc:  # running the bare source folder: the copies are made at build time
    raise ImportError(
        "the add-on's vendored motion modules are missing: build the extension with "
        "`python scripts/build_extension.py` and install the zip from dist/"
    ) from exc

__all__ = ["loops", "modal", "spectral", "volume_file"]
