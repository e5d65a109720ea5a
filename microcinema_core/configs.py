"""UNet configurations (ComfyUI ``unet_config`` dicts for openaimodel.UNetModel) used by tests and benchmarks.

``reference`` has SD1.5's real widths (320/640/1280/1280, 2 ResBlocks per level, CLIP-L context) for
benchmarks; ``tiny`` keeps the same block structure at a size a 2-core CPU runs in milliseconds.
"""
from __future__ import annotations

from typing import Sequence


def sd_unet_config(model_channels: int = 320, channel_mult: Sequence[int] = (1, 2, 4, 4),
                   attention_levels: Sequence[bool] = (True, True, True, False), num_res_blocks: int = 2,
                   context_dim: int = 768, num_heads: int = 8, linear_in_transformer: bool = False,
                   num_head_channels: int = -1) -> dict:
    levels = len(channel_mult)
    depth_in = []
    for level in range(levels):
        depth_in += [1 if attention_levels[level] else 0] * num_res_blocks
    # UNetModel pops transformer_depth_output from the END while it builds output blocks deepest level first,
    # so the list runs from level 0 to the deepest (as ComfyUI's model detection writes it).
    depth_out = []
    for level in range(levels):
        depth_out += [1 if attention_levels[level] else 0] * (num_res_blocks + 1)
    return {
        "use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4,
        "model_channels": model_channels, "num_res_blocks": [num_res_blocks] * levels,
        "channel_mult": list(channel_mult), "transformer_depth": depth_in, "transformer_depth_middle": 1,
        "transformer_depth_output": depth_out, "use_spatial_transformer": True, "legacy": False,
        "context_dim": context_dim, "num_heads": num_heads, "num_head_channels": num_head_channels,
        "use_linear_in_transformer": linear_in_transformer, "adm_in_channels": None,
        "use_temporal_attention": False, "use_temporal_resblock": False,
    }


def reference_unet_config() -> dict:
    """SD1.5's UNet."""
    return sd_unet_config()


def tiny_unet_config(context_dim: int = 64) -> dict:
    """Two levels (32/64 channels), attention at both, SD's block structure otherwise."""
    return sd_unet_config(model_channels=32, channel_mult=(1, 2), attention_levels=(True, True),
                          num_res_blocks=2, context_dim=context_dim, num_heads=4)
