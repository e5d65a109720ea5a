"""Tiny, deterministic SD1.5-shaped models with random weights: the untrained demo model and test models.

Nothing is downloaded. The UNet is small but keeps what ComfyUI's SD15 detection keys on (model_channels 320,
context_dim 768): one level, one ResBlock, depth-1 transformers. CLIP-L and the VAE are full size because
ComfyUI builds both from fixed configs (weights missing from a file would be uninitialised memory).

Key sets and shapes come from ComfyUI's own modules built on the meta device, so a file always matches the
ComfyUI that loads it. Every tensor has its own generator seeded from (seed, key): values do not depend on
key order, and the same seed gives the same bytes on every machine with the same torch.
"""
from __future__ import annotations

import zlib
from typing import Any, Callable

import torch

TINY_SD15_UNET: dict[str, Any] = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
    "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": 320, "num_res_blocks": [1],
    "transformer_depth": [1], "transformer_depth_output": [1, 1], "channel_mult": [1],
    "transformer_depth_middle": 1, "use_linear_in_transformer": False, "context_dim": 768, "num_heads": 8,
    "num_head_channels": -1, "use_temporal_resblock": False, "use_temporal_attention": False,
}

SD_VAE_DDCONFIG: dict[str, Any] = {
    "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
    "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
}
INIT_STD = 0.02

Shapes = dict[str, tuple[tuple[int, ...], bool]]  # key -> (shape, is a normalisation parameter)


def meta_shapes(build: Callable[[], torch.nn.Module]) -> Shapes:
    """Build a module on the meta device (no memory, no init) and list its parameters and buffers."""
    with torch.device("meta"):
        module = build()
    norm_types = (torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.BatchNorm2d)
    norm_prefixes = {name + "." for name, m in module.named_modules() if isinstance(m, norm_types)}
    return {key: (tuple(t.shape), key.rsplit(".", 1)[0] + "." in norm_prefixes)
            for key, t in module.state_dict().items()}


def unet_shapes(unet_config: dict[str, Any]) -> Shapes:
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    return meta_shapes(lambda: UNetModel(**unet_config, device="meta", operations=comfy.ops.disable_weight_init))


def clip_l_shapes() -> Shapes:
    """SD1 CLIP-L keys relative to ``cond_stage_model.transformer.`` (no text_projection/logit_scale, as in SD1.x
    files)."""
    import comfy.sd1_clip

    shapes = meta_shapes(lambda: comfy.sd1_clip.SDClipModel(device="meta", dtype=torch.float16))
    prefix = "transformer."
    return {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix + "text_model.")}


def vae_shapes() -> Shapes:
    from comfy.ldm.models.autoencoder import AutoencoderKL

    return meta_shapes(lambda: AutoencoderKL(ddconfig=dict(SD_VAE_DDCONFIG), embed_dim=4))


def random_state_dict(shapes: Shapes, seed: int, prefix: str = "", dtype=None, std: float = INIT_STD):
    """Deterministic small random weights: N(0, std) for weights/biases, 1/0 for norm weight/bias."""
    dtype = dtype or torch.float16
    out = {}
    for key, (shape, is_norm) in sorted(shapes.items()):
        full = prefix + key
        if is_norm:
            value = torch.ones(shape) if key.endswith("weight") else torch.zeros(shape)
        else:
            gen = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(full.encode())) % (2**63))
            value = torch.randn(shape, generator=gen) * std
        out[full] = value.to(dtype).contiguous()
    return out


def sd15_checkpoint_state_dict(unet_config: dict[str, Any] | None = None, seed: int = 0, dtype=None):
    """UNet + CLIP-L + VAE under SD1.x checkpoint prefixes."""
    sd = random_state_dict(unet_shapes(unet_config or TINY_SD15_UNET), seed, "model.diffusion_model.", dtype)
    sd.update(random_state_dict(clip_l_shapes(), seed + 1, "cond_stage_model.transformer.", dtype))
    sd.update(random_state_dict(vae_shapes(), seed + 2, "first_stage_model.", dtype))
    return sd
