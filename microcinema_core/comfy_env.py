"""Locating a real ComfyUI when our code runs outside one (CLI tools, benchmarks).

Inside ComfyUI ``comfy`` is already importable and nothing happens. Otherwise the checkout is taken from
``COMFYUI_PATH`` or from the one ``scripts/bootstrap.sh`` recorded in ``.comfyui/comfyui_path.txt``.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent


def comfyui_path() -> Path:
    env = os.environ.get("COMFYUI_PATH")
    if env:
        return Path(env).resolve()
    recorded = PACK_ROOT / ".comfyui" / "comfyui_path.txt"
    if recorded.is_file():
        return Path(recorded.read_text().strip())
    return PACK_ROOT / ".comfyui" / "ComfyUI"


def ensure_comfy(cpu: bool | None = None) -> Path | None:
    """Make ``import comfy`` work; returns the ComfyUI folder it added to sys.path (None if already there)."""
    if importlib.util.find_spec("comfy") is not None and "comfy" in sys.modules:
        return None
    root = comfyui_path()
    if not (root / "comfy").is_dir():
        raise RuntimeError(
            f"ComfyUI not found at {root}: run scripts/bootstrap.sh or set COMFYUI_PATH to a ComfyUI checkout"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    if cpu is None:
        cpu = not _cuda_available()
    if cpu:
        comfy.cli_args.args.cpu = True
    return root


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch missing is reported elsewhere
        return False
