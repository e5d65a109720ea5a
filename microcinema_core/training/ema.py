"""An exponential moving average of the trained weights (torch's AveragedModel), with a warm-up.

decay at update n (n = updates so far) = min(decay, (1 + n) / (warmup + n)): early on the average follows the
weights closely (a fresh module is far from where it will end), later it settles to ``decay``. ``warmup`` 10 is the
customary choice; 0 switches the warm-up off. The average is kept in fp32 on the training device, saved next to
the trained weights in the same format (module_ema.safetensors: loadable by the nodes like any module file) and
restored on resume.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ema_decay(decay: float, warmup: int, updates: int) -> float:
    if warmup <= 0:
        return decay
    return min(decay, (1.0 + updates) / (warmup + updates))


class EMA:
    def __init__(self, model: nn.Module, decay: float, warmup: int = 10):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"--ema-decay {decay}: expected a number between 0 and 1 (0 switches EMA off)")
        self.decay, self.warmup = decay, warmup

        def average(ema_params: list, params: list, updates: torch.Tensor) -> None:
            weight = 1.0 - ema_decay(self.decay, self.warmup, int(updates))
            torch._foreach_lerp_(ema_params, [p.detach().to(e.dtype) for e, p in zip(ema_params, params)], weight)

        self.averaged = AveragedModel(model, multi_avg_fn=average, use_buffers=False)
        self.averaged.requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        """The averaged copy of the trained module (same class and state-dict keys)."""
        return self.averaged.module

    @property
    def updates(self) -> int:
        return int(self.averaged.n_averaged)

    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def load(self, state: dict[str, torch.Tensor], updates: int) -> None:
        self.module.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
        self.averaged.n_averaged.fill_(updates)
