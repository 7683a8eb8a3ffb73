"""Real Blender (the ``bpy`` module: 5.0.1 in .venv, 4.2 LTS through scripts/test.sh's second pass)
with the extension built, installed and enabled.

The whole folder is skipped when the ``bpy`` module is not installed (it is a test-only
dependency: ``pip install 'numpy<2' bpy==5.0.1`` in the venv). The root conftest points
``BLENDER_USER_RESOURCES`` and ``XDG_CACHE_HOME`` at temporary folders before anything here imports
bpy, so the extension lands in a throw-away user repository.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "scripts"))

# EEVEE renders through Mesa's software OpenGL; compiling its shaders costs about 30 s per cold
# run. Mesa's cache (not Blender state: the root conftest still isolates XDG_CACHE_HOME) is kept in
# the git-ignored build/ folder so that later runs start warm. Set before bpy creates a GL context.
os.environ.setdefault("MESA_SHADER_CACHE_DIR", str(REPO / "build" / "mesa-shader-cache"))

if importlib.util.find_spec("bpy") is None:
    collect_ignore_glob = ["test_*.py"]


def pytest_report_header(config):
    """Which Blender runs (the suite runs under two); from the metadata: importing bpy here would
    come before the root conftest isolates Blender's user folders."""
    try:
        return f"bpy: {importlib.metadata.version('bpy')}"
    except importlib.metadata.PackageNotFoundError:
        return "bpy: not installed (the Blender tests are skipped)"


@pytest.fixture(scope="session")
def extension_zip(_private_caches, tmp_path_factory) -> Path:
    """The extension zip, built without wheels (fast and offline; the venv already has pyzmq)."""
    import build_extension

    out = tmp_path_factory.mktemp("dist")
    zips = build_extension.build(out, tmp_path_factory.mktemp("build"), [], build_extension.find_blender_ext())
    assert len(zips) == 1
    return zips[0]


@pytest.fixture(scope="session")
def addon(_private_caches, extension_zip):
    """``(bpy, the add-on package)``: the zip installed into the temporary user repository, enabled."""
    assert "blender-user" in os.environ["BLENDER_USER_RESOURCES"]
    import bpy

    res = bpy.ops.extensions.package_install_files(filepath=str(extension_zip), repo="user_default",
                                                   enable_on_install=True)
    assert res == {"FINISHED"}
    name = "bl_ext.user_default.image_dynamics"
    assert name in bpy.context.preferences.addons.keys()
    pkg = sys.modules[name]
    yield bpy, pkg
    pkg.prediction.cancel_all()
    pkg.prediction.close_clients()
    pkg.backend_process.LOCAL.stop()


@pytest.fixture
def scene(addon):
    """An empty scene at 30 fps, frames 1-60 (the add-on stays enabled)."""
    bpy, pkg = addon
    pkg.prediction.cancel_all()
    pkg.prediction.MESSAGES.clear()
    pkg.frame_render.cancel_all()  # a test's frame render or its message must not leak into the next
    pkg.frame_render.MESSAGES.clear()
    bpy.ops.wm.read_homefile(use_empty=True)
    sc = bpy.context.scene
    sc.render.fps = 30
    sc.render.fps_base = 1.0
    sc.frame_start = 1
    sc.frame_end = 60
    sc.frame_set(1)
    return sc
