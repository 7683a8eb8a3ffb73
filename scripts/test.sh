#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: sets up .venv, then runs pytest.
# Without test paths or selections (flags like -q only), the add-on's Blender tests then run a
# second time in Blender 4.2 LTS, the oldest Blender the extension supports (bpy 5.0.1 runs first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# Tests must not write into the user's real Blender or cache folders.
export XDG_CACHE_HOME="${XDG_CACHE_HOME:-$(mktemp -d)}"

whole_suite=1
for arg in "$@"; do
    [[ "$arg" == -* ]] || whole_suite=0
done

rc=0
.venv/bin/python -m pytest "$@" || rc=$?
if [ "$whole_suite" = 1 ] && [ "$rc" = 0 ]; then
    echo "== the add-on's tests again, in Blender 4.2 LTS =="
    lts_python=$(bash scripts/bootstrap_blender_lts.sh)
    # The backend the add-on starts is .venv's console script (the same code, one install).
    IMAGE_DYNAMICS_EXE="$PWD/.venv/bin/image-dynamics" "$lts_python" -m pytest tests/blender "$@" || rc=$?
fi
exit "$rc"
