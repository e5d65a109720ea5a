#!/usr/bin/env bash
# The README's main command: set everything up (idempotent), then render the example text -> image -> video
# workflow in a real ComfyUI with the demo model. Files land in output/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec .venv/bin/python scripts/run_demo.py "$@"
