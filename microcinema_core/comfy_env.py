"""Locating a real ComfyUI when our code runs outside one (CLI tools, the demo-model installer, benchmarks).

Inside ComfyUI ``comfy`` is already importable and nothing happens. Otherwise, in this order:

1. ``COMFYUI_PATH``;
2. the ComfyUI the pack is installed in (the pack folder sits in that ComfyUI's ``custom_nodes/``): the usual
   install, where nothing else records where ComfyUI is;
3. the checkout ``scripts/bootstrap.sh`` recorded in ``.comfyui/comfyui_path.txt`` (the development checkout);
4. bootstrap's default place, ``.comfyui/ComfyUI``.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("microcinema.comfy_env")

# The pack folder as Python imported it, symlinks kept: a pack linked into ComfyUI/custom_nodes/ belongs to that
# ComfyUI, which the resolved path (the linked checkout) does not tell.
PACK_DIR = Path(os.path.abspath(__file__)).parent.parent
# The checkout itself: bootstrap keeps its records there whichever link the pack was reached through.
PACK_ROOT = PACK_DIR.resolve()


def looks_like_comfyui(folder: Path) -> bool:
    return (folder / "comfy").is_dir() and ((folder / "main.py").is_file() or (folder / "folder_paths.py").is_file())


def installed_in(pack_dir: Path) -> Path | None:
    """The ComfyUI whose ``custom_nodes/`` holds ``pack_dir``, or None."""
    custom_nodes = pack_dir.parent
    if custom_nodes.name == "custom_nodes" and looks_like_comfyui(custom_nodes.parent):
        return custom_nodes.parent
    return None


def comfyui_path() -> Path:
    env = os.environ.get("COMFYUI_PATH")
    if env:
        return Path(env).resolve()
    # the path as imported first (a linked pack), then the real one (a pack reached through some other link)
    for pack_dir in dict.fromkeys((PACK_DIR, PACK_ROOT)):
        root = installed_in(pack_dir)
        if root is not None:
            return root
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
            f"ComfyUI not found at {root}: install the pack in ComfyUI/custom_nodes/, set COMFYUI_PATH to a "
            "ComfyUI folder, or run scripts/bootstrap.sh (development checkout)"
        )
    log.debug("using ComfyUI at %s", root)
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
