#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: sets up .venv, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# Tests must not write into the user's real Blender or cache folders.
export XDG_CACHE_HOME="${XDG_CACHE_HOME:-$(mktemp -d)}"
exec .venv/bin/python -m pytest "$@"
