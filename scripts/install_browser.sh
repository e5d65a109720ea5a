#!/usr/bin/env bash
# What the browser tests (tests/test_browser.py, marker `browser`) need, idempotently:
#   /usr/bin/chromium   Debian's Chromium (apt; needs root or sudo). Playwright never downloads a browser here.
#   playwright          the Python driver, in the test virtualenv (.venv or MICROCINEMA_VENV)
# The web front end itself (comfyui-frontend-package) comes with ComfyUI's requirements (scripts/bootstrap.sh).
# A second run only checks and takes a second.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MICROCINEMA_VENV:-$ROOT/.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
VPY="$VENV/bin/python"
PLAYWRIGHT_VERSION="1.65.2"
log() { echo "[install_browser] $*" >&2; }

# 1. Chromium from the distribution
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { log "need root (or sudo) to apt-get install chromium"; exit 1; }
    SUDO="sudo"
  fi
  log "installing chromium (apt)"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
/usr/bin/chromium --version 2>/dev/null | head -1 >&2 || { log "/usr/bin/chromium does not run"; exit 1; }

# 2. the test environment (bootstrap is idempotent) and the Python driver
[ -x "$VPY" ] || bash "$ROOT/scripts/bootstrap.sh"
if ! "$VPY" -c "import importlib.metadata as m; assert m.version('playwright') == '$PLAYWRIGHT_VERSION'" 2>/dev/null; then
  log "installing playwright==$PLAYWRIGHT_VERSION into $VENV (driver only: browsers are not downloaded)"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$VPY" -m pip install --disable-pip-version-check -q "playwright==$PLAYWRIGHT_VERSION" 2>&1 \
    | { grep -v -E "^WARNING: Location 'file://[^']*' is ignored" || true; } >&2
fi
"$VPY" -c "import comfyui_frontend_package" 2>/dev/null \
  || log "WARNING: comfyui-frontend-package is not importable: the browser tests will skip (run scripts/bootstrap.sh)"
log "ready: chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'), playwright $PLAYWRIGHT_VERSION"
