"""What ComfyUI's dynamic VRAM loading (ModelPatcherDynamic, comfy-aimdo; the default on NVIDIA GPUs in the newest
releases) needs from the MicroCinema MODEL. docs/architecture.md, "ComfyUI 0.38 and dynamic VRAM loading", has the
reading this comes from; each piece here is tested on the CPU (tests/test_dynamic_vram.py).

1. Layers built by the pack get real weights. With dynamic VRAM on, ``comfy.ops`` Linear/Embedding layers are
   created without weights (``weight = None``) and only get them from ``load_state_dict``: a fresh module has no
   state dict to load and our own loader copies into existing tensors. ``eager_weights`` turns that off while the
   pack builds a module (ComfyUI's own models are not affected: they are built outside it).
2. Backups of the module's weights are put back while the module is still in the model. A dynamic load
   force-loads small weights (<= 16 KiB per layer) and every buffer with a backup keyed by name
   (``diffusion_model.microcinema...``); unloading puts the object patches back FIRST (the plain SD UNet returns
   under ``diffusion_model``) and only then restores the backups by name, which fails for names only the VideoUNet
   has. An injection's eject (run at the start of every unpatch, before object patches are undone) restores and
   drops those backups itself.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import comfy.patcher_extension
import comfy.utils

log = logging.getLogger(__name__)

INJECTION_KEY = "MicroCinema_dynamic_vram_backups"


@contextlib.contextmanager
def eager_weights() -> Iterator[None]:
    """Build comfy.ops layers with allocated weights even when dynamic VRAM is on (no-op on releases without it)."""
    try:
        import comfy.memory_management as memory_management
    except ImportError:  # releases before dynamic VRAM
        yield
        return
    previous = getattr(memory_management, "aimdo_enabled", False)
    memory_management.aimdo_enabled = False
    try:
        yield
    finally:
        memory_management.aimdo_enabled = previous


def is_dynamic(model_patcher) -> bool:
    check = getattr(model_patcher, "is_dynamic", None)
    return bool(check()) if callable(check) else False


def _lost_after_unpatch(model_patcher, key: str) -> bool:
    """Whether ``key`` (a name in the patched model) stops resolving once the object patches are undone."""
    for name, original in model_patcher.object_patches_backup.items():
        if key.startswith(name + "."):
            try:
                comfy.utils.resolve_attr(original, key[len(name) + 1:])
            except AttributeError:
                return True
    return False


def restore_module_backups(model_patcher) -> int:
    """Put back (and forget) the dynamic loader's backups of weights and buffers that only the object-patched model
    has, while it still has them. Returns how many were restored."""
    if not is_dynamic(model_patcher) or not model_patcher.object_patches_backup:
        return 0
    restored = 0
    for key in [k for k in model_patcher.backup if _lost_after_unpatch(model_patcher, k)]:
        try:
            comfy.utils.set_attr_param(model_patcher.model, key, model_patcher.backup[key].weight)
        except AttributeError:  # not patched in right now: leave it to ComfyUI
            continue
        del model_patcher.backup[key]
        restored += 1
    buffers = getattr(model_patcher, "backup_buffers", {})
    for key in [k for k in buffers if _lost_after_unpatch(model_patcher, k)]:
        try:
            comfy.utils.set_attr_buffer(model_patcher.model, key, buffers[key])
        except AttributeError:
            continue
        del buffers[key]
        restored += 1
    if restored:
        log.debug("MicroCinema: restored %d module weights/buffers before the object patches were undone", restored)
    return restored


def _inject(model_patcher) -> None:
    """Nothing to inject: the injection exists for its eject."""


def install(model_patcher) -> None:
    model_patcher.set_injections(INJECTION_KEY, [comfy.patcher_extension.PatcherInjection(
        inject=_inject, eject=restore_module_backups)])
