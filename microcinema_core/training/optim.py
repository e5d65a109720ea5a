"""The optimiser every trainer uses: AdamW, with the text-sign projection in a group of its own."""
from __future__ import annotations

import logging

import torch
from torch import nn

from ..module import TEXT_SIGN_LR_SCALE

log = logging.getLogger("microcinema.train")
OPTIMIZERS = ("adamw", "adamw8bit")


def param_groups(model: nn.Module, lr: float) -> list[dict]:
    """appearnet.text_sign gets TEXT_SIGN_LR_SCALE x ``lr``: it is a 768 -> k map whose output only matters
    through hint_in weights that start at zero, and at the module's rate it stays where it started
    (docs/benchmarks.md, "learned sign"). Each group keeps its own ``base_lr`` for the warm-up."""
    sign, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (sign if ".text_sign." in f".{name}" else rest).append(p)
    groups = [{"params": rest, "lr": lr, "base_lr": lr}]
    if sign:
        groups.append({"params": sign, "lr": lr * TEXT_SIGN_LR_SCALE, "base_lr": lr * TEXT_SIGN_LR_SCALE})
    return groups


def adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    return build(model, "adamw", lr, weight_decay, torch.device("cpu"))


def build(model: nn.Module, kind: str, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    """``adamw``: torch's AdamW, its fused CUDA kernel on CUDA. ``adamw8bit``: bitsandbytes' 8-bit AdamW (its
    moments take a quarter of the memory), only where bitsandbytes is installed and the device is CUDA."""
    groups = param_groups(model, lr)
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=device.type == "cuda" or None)
    if kind == "adamw8bit":
        if device.type != "cuda":
            raise ValueError("--optimizer adamw8bit needs a CUDA device (bitsandbytes' kernels); use adamw on CPU")
        try:
            import bitsandbytes
        except ImportError as error:
            raise ValueError("--optimizer adamw8bit needs bitsandbytes: pip install -r requirements-train.txt "
                             "(or pip install bitsandbytes)") from error
        return bitsandbytes.optim.AdamW8bit(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"--optimizer {kind!r}: expected one of {', '.join(OPTIMIZERS)}")
