"""The MicroCinema "motion + appearance" module: every weight MicroCinema adds to an SD UNet.

    temporal.<block>.res.<k>.{t1,t2}   pseudo-3D temporal convs of the k-th ResBlock of a block
    temporal.<block>.motion            temporal transformer (AnimateDiff layout) after the block's attention
    inject.<block>.res.<k>             SPADE projector/gamma/beta feeding the ResBlock's second temporal layer
    inject.<block>.attn                additive projection after the block's spatial attention
    appearnet.*                        AppearNet: hint_in zero conv + a copy of time_embed, input_blocks and
                                       middle_block (SD key names) + their own temporal layers
    appearnet.text_sign                (optional, our addition) Linear(context_dim -> k): k numbers per frame read
                                       from its prompt, each multiplying offset x keyframe into k more hint_in
                                       inputs (see AppearNet)

<block> is ``input.<i>``, ``middle`` or ``output.<j>`` (indices of the SD UNet's blocks). The spatial UNet is
not part of this module: it stays the user's SD model, so LoRAs, ControlNets and patches keep working on it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .base_unet import sd_copy
from .dynamic_vram import eager_weights
from .layout import BlockInfo, UNetLayout, read_layout
from .temporal import ResBlockTemporal, TemporalTransformer

KEYFRAME_MASK_CHANNELS = 1  # hint_in reads the keyframe latent, its position mask (+ the text sign's inputs)
TEXT_SIGN_LR_SCALE = 20.0  # trainers give appearnet.text_sign this many times the module's learning rate


@dataclass
class ModuleConfig:
    temporal_convs: bool = True
    motion_modules: bool = True
    motion_heads: int = 8
    motion_attention_blocks: int = 2
    motion_ff_mult: int = 4
    motion_layers: int = 1
    motion_mid_block: bool = True
    appearnet: bool = True
    latent_channels: int = 4
    motion_text_sign: int = 0  # k: text-read signs of the frame offset fed to AppearNet (0: none, as in the paper)

    def __post_init__(self) -> None:
        if not self.appearnet:
            self.motion_text_sign = 0  # the text sign is an AppearNet input: nothing to feed without AppearNet

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModuleConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class BlockTemporal(nn.Module):
    def __init__(self, info: BlockInfo, cfg: ModuleConfig, operations, dtype, device):
        super().__init__()
        self.res = nn.ModuleList([ResBlockTemporal(c, operations, dtype, device) for c in info.res_channels]) \
            if cfg.temporal_convs else None
        wants_motion = cfg.motion_modules and (info.part != "middle" or cfg.motion_mid_block)
        self.motion = TemporalTransformer(info.channels, cfg.motion_heads, cfg.motion_attention_blocks,
                                          cfg.motion_ff_mult, cfg.motion_layers, operations, dtype, device) \
            if wants_motion else None


class SpadeInjection(nn.Module):
    """p = Projector(a); gamma = Conv1x1(p); beta = Conv1x1(p). Our choice: the projector is a 1x1 conv + SiLU;
    gamma/beta convs are zero-initialised so an untrained AppearNet changes nothing."""

    zero_init = ("to_gamma", "to_beta")

    def __init__(self, channels: int, operations, dtype, device):
        super().__init__()
        self.projector = operations.Conv2d(channels, channels, 1, dtype=dtype, device=device)
        self.to_gamma = operations.Conv2d(channels, channels, 1, dtype=dtype, device=device)
        self.to_beta = operations.Conv2d(channels, channels, 1, dtype=dtype, device=device)

    def forward(self, appearance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = nn.functional.silu(self.projector(appearance))
        return self.to_gamma(p), self.to_beta(p)


class AttentionInjection(nn.Module):
    """out = Attn(x) + Projector'(a'), the projector a zero-initialised 1x1 conv."""

    zero_init = ("proj",)

    def __init__(self, channels: int, operations, dtype, device):
        super().__init__()
        self.proj = operations.Conv2d(channels, channels, 1, dtype=dtype, device=device)

    def forward(self, appearance: torch.Tensor) -> torch.Tensor:
        return self.proj(appearance)


class BlockInjection(nn.Module):
    def __init__(self, info: BlockInfo, operations, dtype, device):
        super().__init__()
        self.res = nn.ModuleList([SpadeInjection(c, operations, dtype, device) for c in info.res_channels])
        self.attn = AttentionInjection(info.channels, operations, dtype, device) if info.has_attention else None


def _block_dict(layout: UNetLayout, make, parts=("input", "middle", "output")) -> nn.ModuleDict:
    out = nn.ModuleDict()
    for part in parts:
        if part == "middle":
            out["middle"] = make(layout.middle)
            continue
        sub = nn.ModuleDict()
        for info in getattr(layout, part):
            if info.animated:
                sub[str(info.index)] = make(info)
        out[part] = sub
    return out


def block_entry(container: nn.ModuleDict, info: BlockInfo):
    if info.part == "middle":
        return container["middle"]
    sub = container[info.part]
    key = str(info.index)
    return sub[key] if key in sub else None


def _uninitialised_memo(modules, dtype, device) -> dict:
    memo = {}
    for module in modules:
        for p in module.parameters():
            memo[id(p)] = nn.Parameter(torch.empty_like(p, dtype=dtype or p.dtype, device=device or p.device),
                                       requires_grad=p.requires_grad)
        for b in module.buffers():
            memo[id(b)] = torch.empty_like(b, device=device or b.device)
    return memo


class AppearNet(nn.Module):
    """A ControlNet-like copy of the video UNet's encoder + middle block, fed z_t + ZeroConv(hint).

    Text sign (``motion_text_sign`` = k > 0, our addition, not in the paper): the paper's AppearNet sees the
    keyframe but not the prompt's direction word, and the temporal layers, trained on the demo data, did not learn
    to read it from cross-attention (docs/benchmarks.md). Here k learned numbers per frame, a linear map of the
    mean token of the frame's prompt, each multiply (frame offset from the keyframe) x keyframe latent into one
    more group of hint_in inputs: a ready-made "shift the keyframe this way, this much by this frame" signal. Its
    hint_in weights start at zero, so a fresh or converted module computes exactly what it did without it."""

    zero_init = ("hint_in",)

    def __init__(self, unet: nn.Module, layout: UNetLayout, cfg: ModuleConfig, operations, dtype, device,
                 copy_weights: bool):
        super().__init__()
        hint_channels = cfg.latent_channels + KEYFRAME_MASK_CHANNELS + cfg.motion_text_sign * cfg.latent_channels
        self.hint_in = operations.Conv2d(hint_channels, cfg.latent_channels, 3, padding=1, dtype=dtype, device=device)
        if cfg.motion_text_sign and not layout.context_dim:
            raise ValueError("motion_text_sign needs a UNet with cross-attention (no text context width found)")
        self.text_sign = operations.Linear(layout.context_dim, cfg.motion_text_sign, dtype=dtype, device=device) \
            if cfg.motion_text_sign else None
        # Same classes and key names as the main UNet's encoder; initialised from it (as ControlNet does).
        parts = (unet.time_embed, unet.input_blocks, unet.middle_block)
        # When a checkpoint will fill the weights, copy the layers but not their data: each parameter and buffer
        # is met in the memo by an uninitialised tensor (an SD1.5 encoder is ~1 GB of data copied for nothing).
        memo = {} if copy_weights else _uninitialised_memo(parts, dtype, device)
        # ``unet`` is the checkpoint's own UNet (patching.module_base): nothing another pack inserted or patched
        # is copied, and sd_copy drops ComfyUI's per-load state (lowvram LoRA functions) from the copy.
        self.time_embed, self.input_blocks, self.middle_block = (sd_copy(part, memo) for part in parts)
        if copy_weights and (dtype is not None or device is not None):
            for m in (self.time_embed, self.input_blocks, self.middle_block):
                m.to(dtype=dtype, device=device)
        self.temporal = _block_dict(layout, lambda info: BlockTemporal(info, cfg, operations, dtype, device),
                                    parts=("input", "middle"))


class MicroCinemaModule(nn.Module):
    def __init__(self, unet: nn.Module, cfg: ModuleConfig, operations, dtype=None, device=None,
                 copy_encoder: bool = True):
        super().__init__()
        self.config = cfg
        self.layout = read_layout(unet)
        self.temporal = _block_dict(self.layout, lambda info: BlockTemporal(info, cfg, operations, dtype, device))
        if cfg.appearnet:
            self.inject = _block_dict(self.layout, lambda info: BlockInjection(info, operations, dtype, device))
            self.appearnet = AppearNet(unet, self.layout, cfg, operations, dtype, device, copy_encoder)
        else:
            self.inject = None
            self.appearnet = None


def _torch_class(layer: nn.Module) -> type:
    """The torch.nn class under a comfy.ops layer (whose own reset_parameters does nothing on purpose)."""
    return next(c for c in type(layer).__mro__ if c.__module__.startswith("torch.nn.modules"))


def initialise_new_weights(module: nn.Module, skip_prefixes: tuple[str, ...] = ()) -> None:
    """comfy.ops layers skip weight initialisation; give every new layer torch's default init, norms (1, 0),
    then zero the layers the design requires to start at zero (``zero_init`` on their parent modules)."""
    for name, layer in module.named_modules():
        if any(name.startswith(p) for p in skip_prefixes):
            continue
        if isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            _torch_class(layer).reset_parameters(layer)
        elif isinstance(layer, (nn.GroupNorm, nn.LayerNorm)) and layer.weight is not None:
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
    for name, layer in module.named_modules():
        if any(name.startswith(p) for p in skip_prefixes):
            continue
        for child_name in getattr(type(layer), "zero_init", ()):
            child = getattr(layer, child_name)
            for p in child.parameters():
                nn.init.zeros_(p)


def build_module(unet: nn.Module, cfg: ModuleConfig, operations, dtype=None, device=None,
                 fresh: bool = True) -> MicroCinemaModule:
    """A MicroCinema module shaped for ``unet``. ``fresh``: initialise it (zero temporal outputs, AppearNet copied
    from the UNet's encoder); otherwise weights are left to a state-dict load."""
    with eager_weights():  # dynamic VRAM would build our Linear layers weightless (dynamic_vram.py)
        module = MicroCinemaModule(unet, cfg, operations, dtype, device, copy_encoder=fresh)
    if fresh:
        skip = ("appearnet.time_embed", "appearnet.input_blocks", "appearnet.middle_block")
        initialise_new_weights(module, skip_prefixes=skip)
        text_sign = module.appearnet.text_sign if module.appearnet is not None else None
        if text_sign is not None:  # unit-variance signs for unit-scale tokens (the hint_in side is what starts at 0)
            nn.init.normal_(text_sign.weight, std=text_sign.in_features ** -0.5)
            nn.init.zeros_(text_sign.bias)
    return module
