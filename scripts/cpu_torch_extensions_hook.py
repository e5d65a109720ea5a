"""Start-up hook for CPU-only virtual environments (installed by scripts/bootstrap.sh as a .pth file).

The torchvision/torchaudio wheels that match torch 2.13 are CUDA builds. On a CPU torch their compiled
extensions cannot load, and ``import torchvision`` then fails with "operator torchvision::nms does not
exist" (pytorch/vision#9085). ComfyUI imports both at start but only uses their pure-Python parts.

The hook costs nothing at interpreter start: it only registers a meta-path finder. When torchvision or
torchaudio is imported for the first time, it checks whether the compiled extension loads, and only
when it does not, it declares what the pure-Python parts need.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import sys

_log = logging.getLogger("microcinema.cpu_hook")
_pending = {"torchvision"}


def _extension_loads(package: str, stem: str) -> bool:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return True
    import ctypes
    folder = list(spec.submodule_search_locations)[0]
    candidates = []
    for root, _dirs, files in os.walk(folder):
        candidates += [os.path.join(root, f) for f in files if f.startswith(stem) and f.endswith(".so")]
    if not candidates:
        return False
    try:
        import torch  # noqa: F401  (the extension links against libtorch)
        for path in candidates:
            ctypes.CDLL(path)
        return True
    except OSError:
        return False


def _prepare_torchvision() -> None:
    if _extension_loads("torchvision", "_C"):
        return
    import torch
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for schema in (
        "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
        "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    ):
        name = schema.split("(")[0]
        if not hasattr(torch.ops.torchvision, name):
            lib.define(schema)
    _keep.append(lib)


def _patch_torchaudio_loader(module) -> None:
    """torchaudio loads its extension through ``_load_lib`` and re-raises load failures; report "not built"."""
    original = module._load_lib

    def load_lib_or_report_missing(lib: str) -> bool:
        try:
            return original(lib)
        except OSError:
            _log.debug("torchaudio extension %s cannot load on this CPU torch; treated as not built", lib)
            return False

    module._load_lib = load_lib_or_report_missing


_keep: list = []
_post_exec = {"torchaudio._extension.utils": _patch_torchaudio_loader}


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):  # noqa: D401
        if name == "torchvision" and name in _pending:
            _pending.discard(name)
            try:
                _prepare_torchvision()
            except Exception as exc:  # never break interpreter start-up
                _log.warning("cpu torch extension hook for torchvision failed: %s", exc)
        patch = _post_exec.pop(name, None)
        if patch is None:
            return None
        spec = self._real_spec(name, path, target)
        if spec is None or spec.loader is None:
            return spec
        real_exec = spec.loader.exec_module

        def exec_then_patch(module):
            real_exec(module)
            patch(module)

        spec.loader.exec_module = exec_then_patch
        return spec

    def _real_spec(self, name, path, target):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                return spec
        return None


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
