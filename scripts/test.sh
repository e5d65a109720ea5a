#!/usr/bin/env bash
# The README's test command: makes sure the environment exists (idempotent, seconds when it does), then runs
# the test suite in the real ComfyUI. Extra arguments go to pytest (e.g. -m graph, -k noise).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec .venv/bin/python -m pytest "$@"
