"""The optimiser both trainers use: AdamW, with the text-sign projection in a group of its own."""
from __future__ import annotations

import torch
from torch import nn

from ..module import TEXT_SIGN_LR_SCALE


def adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over ``model``'s trainable parameters. appearnet.text_sign gets TEXT_SIGN_LR_SCALE x ``lr``: it is a
    768 -> k map whose output only matters through hint_in weights that start at zero, and at the module's rate it
    stays where it started (docs/benchmarks.md, "learned sign"). Each group keeps its own ``base_lr`` for warm-up."""
    sign, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (sign if ".text_sign." in f".{name}" else rest).append(p)
    groups = [{"params": rest, "lr": lr, "base_lr": lr}]
    if sign:
        groups.append({"params": sign, "lr": lr * TEXT_SIGN_LR_SCALE, "base_lr": lr * TEXT_SIGN_LR_SCALE})
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
