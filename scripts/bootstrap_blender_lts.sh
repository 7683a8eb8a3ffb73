#!/usr/bin/env bash
# A second venv for the add-on's tests in Blender 4.2 LTS, the oldest Blender the extension
# supports (blender_manifest.toml); .venv holds bpy 5.0.1. It holds only bpy 4.2 (and numpy 1.x,
# which bpy pins) and layers .venv's site-packages *after* its own, so bpy resolves to 4.2 while
# torch, pyzmq, pytest and the project itself are .venv's: one install, two Blenders.
# Prints the venv's python. Idempotent; re-installs when this script changes.
set -euo pipefail
cd "$(dirname "$0")/.."

BPY_LTS="${BPY_LTS:-4.2.23}"
venv=".venv-bpy-$BPY_LTS"
bash scripts/bootstrap.sh >&2

stamp="$venv/.bootstrap-stamp"
want=$(cat scripts/bootstrap_blender_lts.sh .venv/.bootstrap-stamp | sha256sum | cut -d' ' -f1)
if ! { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }; then
    echo "bootstrap: setting up $venv (Blender $BPY_LTS as a module) ..." >&2
    rm -rf "$venv"
    # The interpreter .venv was made from: the layered site-packages need the same Python.
    base_python=$(.venv/bin/python -c 'import sys; print(sys._base_executable)')
    "$base_python" -m venv "$venv"
    numpy=$(.venv/bin/python -c 'import numpy; print(numpy.__version__)')
    "$venv/bin/python" -m pip install --quiet "bpy==$BPY_LTS" "numpy==$numpy" >&2
    main_site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    lts_site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    # addsitedir (not a plain path line) so .venv's own .pth files, the editable install among
    # them, are processed too. The name sorts last: .venv comes after bpy 4.2 on sys.path.
    echo "import site; site.addsitedir('$main_site')" > "$lts_site/zz_layer_main_venv.pth"
    "$venv/bin/python" -c "import bpy, image_dynamics, torch, zmq, pytest; assert bpy.app.version_string.startswith('${BPY_LTS%.*}'), bpy.app.version_string" >&2
    echo "$want" > "$stamp"
fi
echo "$PWD/$venv/bin/python"
