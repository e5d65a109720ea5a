#!/usr/bin/env bash
# The README's test command: makes sure the environment exists (idempotent, seconds when it does), then runs
# the test suite in the real ComfyUI. Extra arguments go to pytest (e.g. -m graph, -k noise).
#
# Without a -m of your own, tests marked `slow` (minutes each) are left out; select them explicitly, e.g.
# `bash scripts/test.sh -m slow`. One browser test runs by default; `-m browser` runs them all. COMFYUI_PATH / MICROCINEMA_VENV: see bootstrap.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
VENV="${MICROCINEMA_VENV:-$ROOT/.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac

# The test models are tiny: one intra-op thread per process runs them fastest (OpenMP's second thread costs more
# than it brings on small ops, several times more on a shared machine). Set OMP_NUM_THREADS to override.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

# Browser tests need Debian's Chromium and Playwright: installed here, best effort (apt needs root); where that
# fails the browser tests skip and say why.
if ! bash "$ROOT/scripts/install_browser.sh" >/dev/null 2>&1; then
  echo "[test] Chromium/Playwright could not be installed: browser tests will be skipped" >&2
fi

select=(-m "not slow")
for arg in "$@"; do
  case "$arg" in -m|-m*|--markexpr|--markexpr=*) select=() ;; esac
done
exec "$VENV/bin/python" -m pytest "${select[@]}" "$@"
