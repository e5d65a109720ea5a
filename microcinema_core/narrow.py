"""A narrow training twin of an SD1.5-shaped model, and its exact embedding into the wide shapes.

ComfyUI recognises an SD1.5 checkpoint only with ``model_channels`` 320 and a 768-wide text context, so the
smallest model the stock CheckpointLoader accepts is still 320 channels wide: too slow to train on a CPU. The
demo model is therefore trained as a twin with ``320 / ratio`` channels whose arithmetic is *exactly* that of the
wide model with all extra channels held at zero, and is then written out in the wide shapes:

- every width (channels, FF inner width, time-embedding width) keeps 2 of every ``2 * ratio`` wide channels
  (``kept_channels``), so each GroupNorm group and each attention head of the wide model holds the same
  narrow channels as in the twin;
- norms of the twin divide their statistics by the wide count (the dropped channels are zeros), see
  ``virtual_group_norm`` / ``virtual_layer_norm``;
- attention scales by 1/sqrt(head width): the wide head is ``ratio`` times wider, so ``widen`` multiplies every
  query projection by sqrt(ratio);
- the sinusoidal timestep embedding and the temporal positions are computed at the wide width and the kept
  channels are read from them.

Every bias, norm weight and weight row of a dropped channel is zero, so dropped channels stay zero through
convs, SiLU/GELU/ReLU (which map 0 to 0), residual sums and attention. ``tests/test_demo_model.py`` checks the
twin against the widened model run by ComfyUI's own modules.
"""
from __future__ import annotations

import math
from typing import Any

import comfy.ops
import torch
from einops import rearrange
from torch import nn

from .module import ModuleConfig, build_module, initialise_new_weights
from .temporal import TemporalAttention

RATIO = 5  # wide width / narrow width (320 -> 64)


def kept_channels(narrow: int, ratio: int = RATIO) -> torch.Tensor:
    """Wide indices of the ``narrow`` kept channels: positions 0 and ``ratio`` of every group of 2 * ratio."""
    if narrow % 2:
        raise ValueError(f"a narrow width must be even, got {narrow}")
    i = torch.arange(narrow)
    return 2 * ratio * (i // 2) + ratio * (i % 2)


def virtual_group_norm(x: torch.Tensor, groups: int, weight, bias, eps: float, ratio: int) -> torch.Tensor:
    """GroupNorm of the wide tensor (this one plus (ratio - 1) zero channels per kept one), on the kept ones."""
    xg = rearrange(x.float(), "b (g c) ... -> b g (c ...)", g=groups)
    count = xg.shape[-1] * ratio
    mean = xg.sum(-1, keepdim=True) / count
    var = (xg * xg).sum(-1, keepdim=True) / count - mean * mean
    y = ((xg - mean) * torch.rsqrt(var + eps)).reshape(x.shape).to(x.dtype)
    if weight is not None:
        view = (1, -1) + (1,) * (x.dim() - 2)
        y = y * weight.view(view) + bias.view(view)
    return y


def virtual_layer_norm(x: torch.Tensor, weight, bias, eps: float, ratio: int) -> torch.Tensor:
    xf = x.float()
    count = xf.shape[-1] * ratio
    mean = xf.sum(-1, keepdim=True) / count
    var = (xf * xf).sum(-1, keepdim=True) / count - mean * mean
    y = ((xf - mean) * torch.rsqrt(var + eps)).to(x.dtype)
    return y * weight + bias if weight is not None else y


class NarrowOps(comfy.ops.disable_weight_init):
    """ComfyUI's layer set with norms that compute the wide model's statistics."""

    ratio = RATIO

    class GroupNorm(comfy.ops.disable_weight_init.GroupNorm):
        def forward(self, x):
            return virtual_group_norm(x, self.num_groups, self.weight, self.bias, self.eps, RATIO)

    class LayerNorm(comfy.ops.disable_weight_init.LayerNorm):
        def forward(self, x):
            return virtual_layer_norm(x, self.weight, self.bias, self.eps, RATIO)


def narrow_unet_config(wide_config: dict[str, Any], ratio: int = RATIO) -> dict[str, Any]:
    cfg = dict(wide_config)
    cfg["model_channels"] = wide_config["model_channels"] // ratio
    return cfg


def build_narrow_unet(wide_config: dict[str, Any], ratio: int = RATIO, seed: int = 0):
    """A freshly initialised narrow twin of ``UNetModel(**wide_config)`` (ComfyUI's class, NarrowOps layers)."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    torch.manual_seed(seed)
    unet = UNetModel(**narrow_unet_config(wide_config, ratio), operations=NarrowOps)
    wide_channels = wide_config["model_channels"]
    # The timestep sinusoid is computed at the wide width (the forward reads model_channels), so the first
    # time-embedding layer takes all of it.
    first = unet.time_embed[0]
    unet.time_embed[0] = NarrowOps.Linear(wide_channels, first.out_features)
    unet.model_channels = wide_channels
    initialise_new_weights(unet)
    return unet


def build_narrow_module(narrow_unet: nn.Module, cfg: ModuleConfig, ratio: int = RATIO):
    module = build_module(narrow_unet, cfg, NarrowOps, dtype=torch.float32)
    set_wide_positions(module, ratio)
    return module


def load_twin(unet_path: str, module_path: str, wide_config: dict[str, Any] | None = None):
    """A trained narrow twin (UNet, module) from safetensors files (demo_training's outputs), in fp32, eval mode."""
    from . import checkpoint, tiny_models

    unet = build_narrow_unet(wide_config or tiny_models.TINY_SD15_UNET)
    unet.load_state_dict({k: v.float() for k, v in checkpoint.read_safetensors(unet_path)[0].items()})
    module_sd, meta = checkpoint.read_safetensors(module_path)
    module = build_narrow_module(unet, checkpoint.detect_config(module_sd, meta))
    module.load_state_dict({k: v.float() for k, v in module_sd.items()})
    return unet.eval(), module.eval()


def set_wide_positions(module: nn.Module, ratio: int = RATIO) -> None:
    for layer in module.modules():
        if isinstance(layer, TemporalAttention):
            narrow = layer.to_q.in_features
            layer.position_channels = (narrow * ratio, kept_channels(narrow, ratio))


def widen(narrow_sd: dict[str, torch.Tensor], wide_shapes: dict[str, tuple[int, ...]], ratio: int = RATIO,
          dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The wide state dict computing exactly what the narrow one computes (see the module docstring)."""
    missing = sorted(set(wide_shapes) - set(narrow_sd))
    extra = sorted(set(narrow_sd) - set(wide_shapes))
    if missing or extra:
        raise ValueError(f"narrow and wide models differ: missing {missing[:5]}, unexpected {extra[:5]}")
    query_gain = math.sqrt(ratio)
    out = {}
    for key, value in narrow_sd.items():
        shape = tuple(wide_shapes[key])
        if len(shape) != value.dim():
            raise ValueError(f"{key}: rank {value.dim()} vs wide {len(shape)}")
        wide = value.detach().float()
        for dim, (n, w) in enumerate(zip(value.shape, shape)):
            if n == w:
                continue
            if w != n * ratio:
                raise ValueError(f"{key}: dimension {dim} is {n} narrow and {w} wide (expected x{ratio})")
            grown = torch.zeros(wide.shape[:dim] + (w,) + wide.shape[dim + 1:])
            wide = grown.index_copy_(dim, kept_channels(n, ratio), wide)
        if key.endswith("to_q.weight"):
            wide = wide * query_gain
        out[key] = wide.to(dtype) if dtype is not None and wide.is_floating_point() else wide
    return out


def wide_module_shapes(wide_unet_config: dict[str, Any], cfg: ModuleConfig) -> dict[str, tuple[int, ...]]:
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    from .patching import MODULE_OPERATIONS

    with torch.device("meta"):
        unet = UNetModel(**wide_unet_config, device="meta", operations=comfy.ops.disable_weight_init)
        module = build_module(unet, cfg, MODULE_OPERATIONS, device="meta", fresh=False)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}
