"""The extension package: built by scripts/build_extension.py, validated by Blender's own CLI,
installed into a temporary user repository and enabled in real Blender."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import build_extension

REPO = Path(__file__).resolve().parents[2]


def _validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(build_extension.find_blender_ext()), "validate", str(path)],
                          capture_output=True, text=True)


def test_zip_validates_and_carries_the_vendored_modules(extension_zip):
    res = _validate(extension_zip)
    assert res.returncode == 0, res.stdout + res.stderr
    with zipfile.ZipFile(extension_zip) as zf:
        names = set(zf.namelist())
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        assert {"__init__.py", "blender_manifest.toml", "core/grid.py", "operators/predict_motion.py"} <= names
        for src, dst in [("protocol/client.py", "_vendor/image_dynamics_protocol/client.py"),
                         ("protocol/codec.py", "_vendor/image_dynamics_protocol/codec.py"),
                         ("protocol/messages.py", "_vendor/image_dynamics_protocol/messages.py"),
                         ("motion/spectral.py", "_vendor/image_dynamics_motion/spectral.py"),
                         ("motion/modal.py", "_vendor/image_dynamics_motion/modal.py"),
                         ("motion/loops.py", "_vendor/image_dynamics_motion/loops.py"),
                         ("motion/volume_file.py", "_vendor/image_dynamics_motion/volume_file.py")]:
            # one source of truth: byte-for-byte copies made at build time
            assert zf.read(dst) == (REPO / "backend" / "image_dynamics" / src).read_bytes(), dst
        manifest = zf.read("blender_manifest.toml").decode()
        assert 'id = "image_dynamics"' in manifest and "[permissions]" in manifest


def test_build_with_pyzmq_wheels_for_every_platform(tmp_path):
    cache = Path(os.environ.get("IMAGE_DYNAMICS_WHEEL_CACHE") or tmp_path / "wheels")
    wheels = build_extension.fetch_wheels(cache)
    if len(wheels) < 6:
        pytest.skip(f"pyzmq wheels could not be downloaded (offline?): got {[w.name for w in wheels]}")
    zips = build_extension.build(tmp_path / "dist", tmp_path / "build", wheels, build_extension.find_blender_ext())
    assert sorted(z.name for z in zips) == [f"image_dynamics-0.1.0-{p}.zip" for p in
                                            ("linux_x64", "macos_arm64", "macos_x64", "windows_x64")]
    for z in zips:
        assert _validate(z).returncode == 0
        with zipfile.ZipFile(z) as zf:
            whl = [n for n in zf.namelist() if n.startswith("wheels/")]
            manifest = zf.read("blender_manifest.toml").decode()
        assert len(whl) == 2, whl  # cp311 (Blender 4.2-5.0) and cp312-abi3 (5.1+, Python 3.13)
        assert any("cp311" in w for w in whl) and any("abi3" in w for w in whl)
        for w in whl:
            assert f"./{w}" in manifest


def test_vendoring_refuses_heavy_imports(tmp_path):
    (tmp_path / "bad.py").write_text("import torch\n")
    with pytest.raises(SystemExit, match="torch"):
        build_extension.check_vendored_imports(tmp_path)


def test_installed_extension_registers_everything(addon):
    bpy, pkg = addon
    assert pkg.__name__ == "bl_ext.user_default.image_dynamics"
    assert pkg.preferences.IMAGE_DYNAMICS_AddonPreferences.bl_idname == pkg.__name__  # __package__
    for op in ("import_photo", "use_active_plane", "predict_motion", "cancel_prediction", "test_connection",
               "start_backend", "stop_backend", "update_motion", "add_poke", "remove_poke", "import_motion",
               "export_motion", "fit_to_camera", "setup_passes", "bake_cache"):
        assert hasattr(bpy.ops.image_dynamics, op), op
    for panel in ("IMAGE_DYNAMICS_PT_main", "IMAGE_DYNAMICS_PT_predict", "IMAGE_DYNAMICS_PT_motion"):
        assert hasattr(bpy.types, panel)
    assert "torch" not in sys.modules or not any(m.startswith("bl_ext") and "torch" in m for m in sys.modules)
    src = Path(pkg.__file__).parent
    for path in src.rglob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+torch\b", path.read_text(), re.M), path


def test_use_active_plane_adopts_an_image_plane(addon, scene):
    bpy, pkg = addon
    img = bpy.data.images.new("photo", 40, 20)
    bpy.ops.mesh.primitive_plane_add(size=2.0)
    obj = bpy.context.active_object
    obj.scale = (2.0, 1.0, 1.0)
    mat = pkg.plane.make_material(img)
    obj.data.materials.append(mat)
    assert bpy.ops.image_dynamics.use_active_plane(resolution=21) == {"FINISHED"}
    p = obj.image_dynamics
    assert p.is_plane and p.image == img and (p.grid_nx, p.grid_ny) == (21, 11)
    assert len(obj.data.vertices) == 21 * 11 and obj.data.materials[0] == mat


def _python313() -> str | None:
    candidates = [shutil.which("python3.13")] + sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3.13")))
    for c in candidates:
        if c and subprocess.run([c, "-c", "pass"], capture_output=True).returncode == 0:
            return c
    return None


def test_addon_sources_compile_on_python_3_13(tmp_path):
    """Blender 5.1+ runs Python 3.13: the add-on (and what it vendors) must at least compile there."""
    py313 = _python313()
    if py313 is None:
        pytest.skip("no Python 3.13 interpreter here")
    pkg = build_extension.assemble(tmp_path, None)
    files = [str(p) for p in pkg.rglob("*.py")]
    res = subprocess.run([py313, "-m", "py_compile", *files], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
