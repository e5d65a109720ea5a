"""The block layout of an SD UNet (ComfyUI's openaimodel.UNetModel), read from the module itself.

Everything MicroCinema adds (temporal layers, AppearNet, injection) is placed per block of the spatial UNet,
so the same code inflates SD1.x, SD2.x and the tiny test configs without a table per architecture.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, ResBlock, Upsample
from torch import nn


@dataclass(frozen=True)
class BlockInfo:
    part: str                      # "input", "middle" or "output"
    index: int                     # position in input_blocks / output_blocks (0 for middle)
    level: int                     # resolution level: 0 = full latent resolution
    channels: int                  # channels of the block output (before an Upsample)
    res_channels: tuple[int, ...]  # output channels of each ResBlock in the block
    has_attention: bool
    resamples: bool                # ends with a Downsample/Upsample (or is one)

    @property
    def key(self) -> str:
        return "middle" if self.part == "middle" else f"{self.part}.{self.index}"

    @property
    def animated(self) -> bool:
        """Blocks that get a motion module: every block holding a ResBlock (not conv_in / pure resamplers)."""
        return len(self.res_channels) > 0


@dataclass(frozen=True)
class UNetLayout:
    input: tuple[BlockInfo, ...]
    middle: BlockInfo
    output: tuple[BlockInfo, ...]
    model_channels: int
    context_dim: int | None = None
    appearance_source: dict = field(default_factory=dict, compare=False)

    def blocks(self):
        yield from self.input
        yield self.middle
        yield from self.output

    def source_for(self, block: BlockInfo) -> str:
        """Which AppearNet embedding feeds a main block (method.md section 3, decoder mapping is our choice):
        encoder blocks take the AppearNet block of the same index, the middle block and the first decoder block
        take the AppearNet middle block, every other decoder block takes the last animated AppearNet encoder
        block at its own resolution level."""
        return self.appearance_source[block.key]


def _describe(part: str, index: int, level: int, seq: nn.Module) -> BlockInfo:
    res_channels = tuple(layer.out_channels for layer in seq if isinstance(layer, ResBlock))
    has_attention = any(isinstance(layer, SpatialTransformer) for layer in seq)
    resamples = any(isinstance(layer, (Downsample, Upsample)) for layer in seq)
    channels = res_channels[-1] if res_channels else 0
    return BlockInfo(part, index, level, channels, res_channels, has_attention, resamples)


def read_layout(unet: nn.Module) -> UNetLayout:
    inputs, level = [], 0
    for i, seq in enumerate(unet.input_blocks):
        info = _describe("input", i, level, seq)
        inputs.append(info)
        if info.resamples:
            level += 1
    middle = _describe("middle", 0, level, unet.middle_block)
    outputs = []
    for j, seq in enumerate(unet.output_blocks):
        info = _describe("output", j, level, seq)
        outputs.append(info)
        if info.resamples:
            level -= 1

    source: dict[str, str] = {}
    last_animated_at_level: dict[int, str] = {}
    for info in inputs:
        if info.animated:
            source[info.key] = info.key
            last_animated_at_level[info.level] = info.key
    source["middle"] = "middle"
    for info in outputs:
        if info.index == 0:
            source[info.key] = "middle"
        elif info.level in last_animated_at_level:
            source[info.key] = last_animated_at_level[info.level]
        else:
            source[info.key] = "middle"
    for info in outputs:
        wanted = middle.channels if source[info.key] == "middle" else next(
            b.channels for b in inputs if b.key == source[info.key])
        if wanted != info.channels:
            raise ValueError(f"AppearNet mapping: {info.key} has {info.channels} channels but its source "
                             f"{source[info.key]} has {wanted}")
    return UNetLayout(tuple(inputs), middle, tuple(outputs), getattr(unet, "model_channels", 0),
                      _context_dim(unet), source)


def _context_dim(unet: nn.Module) -> int | None:
    """Width of the text tokens the UNet cross-attends to (ComfyUI's UNetModel does not keep its context_dim)."""
    for layer in unet.modules():
        if isinstance(layer, SpatialTransformer):
            return layer.transformer_blocks[0].attn2.to_k.in_features
    return getattr(unet, "context_dim", None)
