"""The SD UNet a MicroCinema module is built from: the checkpoint's own layers with the checkpoint's weights.

A ModelPatcher's ``model`` is shared by all its clones, and ComfyUI leaves the last sampled clone patched until
another one is loaded. So when "Apply Module" runs, the live UNet may carry what other models put there:
layers inserted by ModelPatcher injections (AnimateDiff-Evolved's motion modules), object patches, weights
patched in place (LoRA, hooks). ``base_unet`` returns a view of the UNet without any of it:

- foreign top-level children and block layers are left out (identified by structure, see sd_layers.py);
- a sub-module replaced by a live object patch is swapped back for the original, which ComfyUI keeps in the
  ``object_patches_backup`` shared by all clones;
- a weight patched in place is swapped back for the checkpoint's, kept in the shared ``backup`` (``hook_backup``
  for hook patches).

The view is copy-on-write: it shares every layer and tensor with the live UNet and shallow-copies only the
modules on the path to something it swaps, so building it costs no weight memory and never changes the live
UNet (the other packs eject and restore what they changed themselves, later, by the same names).

Weights are always the checkpoint's, never a LoRA's, even when the MODEL given to Apply Module carries the
LoRA: AppearNet's encoder is then initialised the same whether the LoRA comes before or after Apply Module (a
LoRA loaded after it patches only the SD UNet's own keys), and a new module is the same whatever the process
sampled before. This is how a ControlNet is initialised too: from the base model.
"""
from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from typing import Optional

import comfy.model_patcher
from torch import nn

from .sd_layers import SD_CHILDREN, foreign_summary, is_block_layer

log = logging.getLogger(__name__)

PREFIX = "diffusion_model."  # object/weight patch keys are named from the BaseModel


def base_unet(unet: nn.Module, model_patcher=None) -> nn.Module:
    """``unet`` itself when nothing foreign is live on it, else a view of its own layers and base weights."""
    objects, weights = _originals(model_patcher)
    foreign = foreign_summary(unet)
    if not (foreign or objects or weights):
        return unet
    view = _View(unet)
    root = view.root
    for name in [n for n in root._modules if n not in SD_CHILDREN]:
        del root._modules[name]
    for name in SD_CHILDREN:  # a whole top-level child replaced by an object patch
        if name in objects and name in root._modules:
            root._modules[name] = objects.pop(name)
    _canonical_blocks(view, objects)
    restored = _restore_objects(view, objects)
    patched = _restore_weights(view, weights)
    log.info("MicroCinema: module built from the SD UNet's own layers; left out %s, restored %d object-patched "
             "sub-modules and %d patched weights to the checkpoint's",
             ", ".join(foreign) if foreign else "nothing", restored, patched)
    return root


def sd_copy(part: nn.Module, memo: Optional[dict] = None) -> nn.Module:
    """deepcopy of (view) layers without ComfyUI's per-load state: a lowvram load hangs the patcher's LoRA
    patches on layers as weight functions and flips their cast flags; a copy must not keep (or deep-copy) them."""
    memo = {} if memo is None else memo
    for module in part.modules():
        for attr in ("weight_function", "bias_function"):
            functions = module.__dict__.get(attr)
            if functions:
                memo.setdefault(id(functions), [])
    twin = copy.deepcopy(part, memo)
    for module in twin.modules():
        comfy.model_patcher.wipe_lowvram_weight(module)
        module.__dict__.pop("comfy_patched_weights", None)
    return twin


def _originals(model_patcher) -> tuple[dict, dict]:
    """(object patch originals, base weights) for what is live on the UNet, keyed by path inside the UNet.
    The backups are shared by every clone, so they also cover what other packs' clones patched."""
    if model_patcher is None:
        return {}, {}
    objects = {k[len(PREFIX):]: v for k, v in (getattr(model_patcher, "object_patches_backup", None) or {}).items()
               if k.startswith(PREFIX)}
    weights = {}
    # backup first wins: hooks are applied over the weight patches, so their backup may already hold a LoRA
    for key, entry in (getattr(model_patcher, "backup", None) or {}).items():
        if key.startswith(PREFIX):
            weights[key[len(PREFIX):]] = entry.weight
    for key, entry in (getattr(model_patcher, "hook_backup", None) or {}).items():
        if key.startswith(PREFIX):
            weights.setdefault(key[len(PREFIX):], entry[0])
    return objects, weights


def _shallow(module: nn.Module) -> nn.Module:
    """A second handle on ``module``: same attributes, tensors and children, but its own tables of children,
    parameters and buffers, so the view can swap entries without touching the shared module."""
    twin = copy.copy(module)
    for table in ("_modules", "_parameters", "_buffers"):
        twin.__dict__[table] = OrderedDict(module.__dict__[table])
    return twin


class _View:
    """Copy-on-write handles on a module tree: a module is shallow-copied the first time something under it is
    swapped (modules made for the view are owned from the start)."""

    def __init__(self, unet: nn.Module):
        self.root = _shallow(unet)
        self._owned = {id(self.root)}

    def adopt(self, module: nn.Module) -> nn.Module:
        self._owned.add(id(module))
        return module

    def child(self, parent: nn.Module, name: str) -> nn.Module:
        child = parent._modules.get(name)
        if child is None:
            raise KeyError(name)
        if id(child) not in self._owned:
            child = self.adopt(_shallow(child))
            parent._modules[name] = child
        return child

    def owned(self, path: list[str]) -> nn.Module:
        node = self.root
        for name in path:
            node = self.child(node, name)
        return node


def _canonical_blocks(view: _View, objects: dict) -> None:
    """Every block rebuilt from its SD layers only, re-numbered as openaimodel numbered them."""
    root = view.root
    for part in ("input_blocks", "output_blocks"):
        if root._modules.get(part) is None:
            continue
        container = view.child(root, part)
        for position, name in enumerate(list(container._modules)):
            key = f"{part}.{name}"
            seq = objects.pop(key, container._modules[name])
            container._modules[name] = _canonical_block(view, seq, key, objects,
                                                        part == "input_blocks" and position == 0)
    if root._modules.get("middle_block") is not None:
        root._modules["middle_block"] = _canonical_block(view, root._modules["middle_block"], "middle_block",
                                                         objects, False)


def _canonical_block(view: _View, seq: nn.Module, key: str, objects: dict, first_block: bool) -> nn.Module:
    # Object patch keys name SD slots (ComfyUI applies them with injections ejected). A slot with a live object
    # patch holds the patch's value, whatever its class: the original goes back in that slot.
    replaced = {}
    for name in [k for k in objects if k.rpartition(".")[0] == key and k.rpartition(".")[2].isdigit()]:
        replaced[int(name.rpartition(".")[2])] = objects.pop(name)
    layers: list[nn.Module] = []
    for layer in seq:
        slot = len(layers)
        if slot in replaced:
            layers.append(replaced.pop(slot))
        elif is_block_layer(layer, first_block, slot):
            layers.append(layer)
    block = view.adopt(_shallow(seq))
    block.__dict__["_modules"] = OrderedDict((str(i), layer) for i, layer in enumerate(layers))
    return block


def _restore_objects(view: _View, objects: dict) -> int:
    """Object patches inside SD layers (e.g. an attention module swapped for a wrapper): originals back in."""
    restored = 0
    for key in sorted(objects, key=lambda k: k.count(".")):  # outer first: inner keys resolve through originals
        *path, name = key.split(".")
        try:
            parent = view.owned(path)
        except KeyError:
            log.debug("MicroCinema: object patch %s is not under an SD layer; ignored", key)
            continue
        if name in parent._modules:
            parent._modules[name] = objects[key]
            restored += 1
    return restored


def _restore_weights(view: _View, weights: dict) -> int:
    restored = 0
    for key, tensor in weights.items():
        *path, name = key.split(".")
        try:
            module = view.owned(path)
        except KeyError:
            log.debug("MicroCinema: patched weight %s is not in an SD layer; ignored", key)
            continue
        live = module._parameters.get(name)
        if live is not None and live.shape == tensor.shape:
            module._parameters[name] = tensor if isinstance(tensor, nn.Parameter) else \
                nn.Parameter(tensor, requires_grad=live.requires_grad)
            restored += 1
        elif module._buffers.get(name) is not None and module._buffers[name].shape == tensor.shape:
            module._buffers[name] = tensor
            restored += 1
    return restored
