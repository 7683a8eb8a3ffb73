#!/usr/bin/env bash
# Create or update the project's virtual environment at .venv (idempotent).
# Re-installs only when pyproject.toml or this script changed since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
    echo "bootstrap: Python 3.11 is required (the Python of Blender 4.2 to 5.0); found $("$PYTHON" --version 2>&1)." >&2
    echo "  hint: install Python 3.11 and run again, or set PYTHON=/path/to/python3.11" >&2
    exit 1
fi

stamp=.venv/.bootstrap-stamp
want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/image-dynamics ]; then
    exit 0
fi

echo "bootstrap: setting up .venv (first run or dependencies changed) ..."
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# numpy<2 in the same command as everything else: bpy pins it and other wheels would pull numpy 2.
.venv/bin/python -m pip install --quiet 'numpy<2' -e '.[dev]'
echo "$want" > "$stamp"
echo "bootstrap: ready (.venv/bin/image-dynamics)"
