"""Tiny, deterministic SD1.5-shaped checkpoints for tests (random weights; no downloads).

The UNet is small (model_channels 320 and context_dim 768 are what ComfyUI's SD15 detection keys on; one
level, one res block, depth-1 transformers). CLIP-L and the VAE must be full size: ComfyUI builds both from
fixed configs and leaves any weight missing from the file as uninitialised memory.

Key sets and shapes come from ComfyUI's own modules built on the meta device, so a file always matches what
the ComfyUI under test loads. Each tensor gets its own generator seeded from (seed, key), so the values do
not depend on key order or on other keys. Files are cached in .cache/test_models/ under a name derived from
everything that defines them, and rebuilt when missing.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from pathlib import Path
from typing import Any, Callable

from .locations import MODEL_CACHE

log = logging.getLogger("microcinema.tests.tiny_models")

# Bump when the generation below changes in a way that changes file contents.
GENERATOR_VERSION = 1
INIT_STD = 0.02

# What comfy.model_detection.detect_unet_config returns for such a file (UNetModel takes it as kwargs).
TINY_SD15_UNET: dict[str, Any] = {
    "use_checkpoint": False,
    "image_size": 32,
    "out_channels": 4,
    "use_spatial_transformer": True,
    "legacy": False,
    "adm_in_channels": None,
    "in_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [1],
    "transformer_depth": [1],
    "transformer_depth_output": [1, 1],
    "channel_mult": [1],
    "transformer_depth_middle": 1,
    "use_linear_in_transformer": False,
    "context_dim": 768,
    "num_heads": 8,
    "num_head_channels": -1,
    "use_temporal_resblock": False,
    "use_temporal_attention": False,
}

# SD's VAE as ComfyUI builds it for an SD1.x checkpoint (comfy/sd.py VAE, fixed; embed_dim 4).
SD_VAE_DDCONFIG: dict[str, Any] = {
    "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
    "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
}

Shapes = dict[str, tuple[tuple[int, ...], bool]]  # key -> (shape, is a normalisation parameter)


def _meta_shapes(build: Callable[[], Any]) -> Shapes:
    """Build a module on the meta device (no memory, no init) and list its parameters and buffers."""
    import torch

    with torch.device("meta"):
        module = build()
    norm_types = (torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.BatchNorm2d)
    norm_prefixes = {name + "." for name, m in module.named_modules() if isinstance(m, norm_types)}
    shapes: Shapes = {}
    for key, tensor in module.state_dict().items():
        parent = key.rsplit(".", 1)[0] + "."
        shapes[key] = (tuple(tensor.shape), parent in norm_prefixes)
    return shapes


def unet_shapes(unet_config: dict[str, Any]) -> Shapes:
    """Keys (without prefix) and shapes of ComfyUI's openaimodel UNet for ``unet_config``."""
    from .runtime import import_comfy_core

    import_comfy_core()
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    return _meta_shapes(lambda: UNetModel(**unet_config, device="meta",
                                          operations=comfy.ops.disable_weight_init))


def clip_l_shapes() -> Shapes:
    """SD1 CLIP-L keys as an SD1.x checkpoint stores them (relative to ``cond_stage_model.transformer.``).
    text_projection and logit_scale are left out: real SD1.x files do not have them either."""
    from .runtime import import_comfy_core

    import_comfy_core()
    import comfy.sd1_clip
    import torch

    shapes = _meta_shapes(lambda: comfy.sd1_clip.SDClipModel(device="meta", dtype=torch.float16))
    prefix = "transformer."
    return {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix + "text_model.")}


def vae_shapes() -> Shapes:
    from .runtime import import_comfy_core

    import_comfy_core()
    from comfy.ldm.models.autoencoder import AutoencoderKL

    return _meta_shapes(lambda: AutoencoderKL(ddconfig=dict(SD_VAE_DDCONFIG), embed_dim=4))


def random_state_dict(shapes: Shapes, seed: int, prefix: str = "", dtype=None, std: float = INIT_STD):
    """Deterministic small random weights: N(0, std) for weights/biases, 1/0 for norm weight/bias."""
    import torch

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


def build_unet_state_dict(unet_config: dict[str, Any] | None = None, seed: int = 0,
                          prefix: str = "model.diffusion_model.", dtype=None):
    return random_state_dict(unet_shapes(unet_config or TINY_SD15_UNET), seed, prefix, dtype)


def build_sd15_checkpoint_state_dict(unet_config: dict[str, Any] | None = None, seed: int = 0, dtype=None):
    """UNet + CLIP-L + VAE under SD1.x checkpoint prefixes."""
    sd = build_unet_state_dict(unet_config, seed, dtype=dtype)
    sd.update(random_state_dict(clip_l_shapes(), seed + 1, "cond_stage_model.transformer.", dtype))
    sd.update(random_state_dict(vae_shapes(), seed + 2, "first_stage_model.", dtype))
    return sd


def _cache_name(kind: str, spec: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps({"v": GENERATOR_VERSION, **spec}, sort_keys=True).encode()).hexdigest()
    return f"{kind}-{digest[:12]}.safetensors"


def save_atomically(state_dict: dict, path: Path, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    save_file(state_dict, str(partial), metadata=metadata)
    os.replace(partial, path)  # a crash never leaves a truncated file under the cached name
    return path


def ensure_tiny_sd15_checkpoint(unet_config: dict[str, Any] | None = None, seed: int = 0,
                                cache_dir: Path = MODEL_CACHE) -> Path:
    """Path of the cached tiny SD1.5 checkpoint for (unet_config, seed); generated when missing."""
    unet_config = unet_config or TINY_SD15_UNET
    path = cache_dir / _cache_name("tiny-sd15", {"unet": unet_config, "seed": seed, "std": INIT_STD})
    if path.is_file():
        return path
    log.info("generating %s (once; cached afterwards)", path)
    sd = build_sd15_checkpoint_state_dict(unet_config, seed)
    return save_atomically(sd, path, metadata={"generator": "ComfyUI-MicroCinema tests",
                                               "unet_config": json.dumps(unet_config)})
