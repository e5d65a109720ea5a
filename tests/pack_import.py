"""The pack's ``microcinema_core`` package for tests, without putting the repository root on sys.path.

The repository root is the pack's package and holds a ``nodes/`` folder that would shadow ComfyUI's own
``nodes`` module, so ``import microcinema_core`` from the root is never done. Instead:

* when the in-process ComfyUI of the test harness has loaded the pack (``harness.runtime.boot``), the
  ``microcinema_core`` of that loaded pack is returned, so tests use the very objects the nodes use;
* otherwise ComfyUI is put on sys.path exactly as the harness does (``import_comfy_core(cpu=True)``) and the
  package is imported standalone from its folder under the name ``microcinema_core`` (benchmarks, quick runs).

Usage in a test module::

    from pack_import import core, sub
    mc = core()                  # the package
    temporal = sub("temporal")   # a submodule, from the same copy of the package
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent
_PACKAGE_DIR = REPO_ROOT / "microcinema_core"
STANDALONE_NAME = "microcinema_core"


def _harness_runtime():
    tests_dir = str(Path(__file__).resolve().parent)
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    from harness import runtime

    return runtime


def loaded_pack_module() -> str | None:
    """sys.modules name of the pack as ComfyUI loaded it in this process, or None when not booted."""
    runtime = sys.modules.get("harness.runtime")
    booted = getattr(runtime, "_runtime", None) if runtime is not None else None
    if booted is None:
        return None
    return booted.pack_module


def core(cpu: bool = True) -> ModuleType:
    """The pack's ``microcinema_core`` package (the loaded pack's copy when ComfyUI runs in-process).
    ``cpu=False`` (benchmarks on a GPU machine): ComfyUI picks its device itself, as when it runs normally."""
    pack = loaded_pack_module()
    if pack is not None:
        return importlib.import_module(pack + ".microcinema_core")
    if STANDALONE_NAME in sys.modules:
        return sys.modules[STANDALONE_NAME]
    _harness_runtime().import_comfy_core(cpu=cpu)
    spec = importlib.util.spec_from_file_location(
        STANDALONE_NAME, _PACKAGE_DIR / "__init__.py", submodule_search_locations=[str(_PACKAGE_DIR)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[STANDALONE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[STANDALONE_NAME]
        raise
    return module


def sub(name: str, package: ModuleType | None = None) -> ModuleType:
    """A submodule (``"temporal"``, ``"module"``...) of ``package`` (default: ``core()``)."""
    package = package if package is not None else core()
    return importlib.import_module(f"{package.__name__}.{name}")


# -- small builders shared by the tests/test_core_*.py modules ------------------------------------------------

def module_operations():
    """The comfy.ops family the pack builds MicroCinema modules with (patching.MODULE_OPERATIONS)."""
    return sub("patching").MODULE_OPERATIONS


def tiny_unet(cfg: dict | None = None, seed: int = 0, std: float = 0.05, device=None):
    """A ComfyUI openaimodel.UNetModel (comfy.ops.disable_weight_init, as ComfyUI builds SD UNets) with random
    weights: comfy's ops skip initialisation, so every parameter is drawn here."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    cfg = cfg if cfg is not None else sub("configs").tiny_unet_config()
    unet = UNetModel(**cfg, operations=comfy.ops.disable_weight_init, device=device)
    if device is None or str(device) != "meta":
        sub("module").initialise_new_weights(unet)
        randomize(unet, seed=seed, std=std)
    return unet.eval()


def randomize(module, seed: int = 0, std: float = 0.05, skip_zero_init: bool = False):
    """Random weights everywhere (norm scales around 1). ``skip_zero_init`` keeps the layers our design
    zero-initialises (``zero_init`` children) as they are."""
    import torch
    from torch import nn

    keep: set[int] = set()
    if skip_zero_init:
        for layer in module.modules():
            for child_name in getattr(type(layer), "zero_init", ()):
                keep.update(id(p) for p in getattr(layer, child_name).parameters())
    norms = {id(m.weight) for m in module.modules()
             if isinstance(m, (nn.GroupNorm, nn.LayerNorm)) and m.weight is not None}
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if id(p) in keep:
                continue
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.dtype)
            if id(p) in norms:
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(std * noise)
    return module


def single_thread_fixture():
    """A module-scoped autouse fixture body: tiny CPU models run on one intra-op thread (on a 2-core machine
    shared with other test processes, OpenMP's second thread makes small ops several times slower)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
