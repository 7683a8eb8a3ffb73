#!/usr/bin/env bash
# The main job, on a fresh machine too: sets up .venv, then runs `image-dynamics demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/image-dynamics demo --out "${1:-out/demo}"
