"""More test models, generated (never downloaded): a ControlNet, a LoRA and an upscaler that fit the tiny SD1.5
checkpoint, a MicroCinema module file, and test images."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .tiny_models import TINY_SD15_UNET, _meta_shapes, random_state_dict, save_atomically


def controlnet_state_dict(unet_config: dict[str, Any] | None = None, seed: int = 7) -> dict[str, torch.Tensor]:
    """An LDM-format ControlNet ('control_model.*') for the tiny UNet; random, non-zero zero-convs so it acts."""
    import comfy.ops
    from comfy.cldm.cldm import ControlNet

    cfg = dict(unet_config or TINY_SD15_UNET)
    cfg.pop("out_channels", None)
    shapes = _meta_shapes(lambda: ControlNet(**cfg, hint_channels=3, device="meta",
                                             operations=comfy.ops.disable_weight_init))
    return random_state_dict(shapes, seed, prefix="control_model.", dtype=torch.float32, std=0.05)


def lora_state_dict(model_patcher, rank: int = 4, seed: int = 3, scale: float = 0.5) -> dict[str, torch.Tensor]:
    """A LoRA in the common 'lora_unet_*' format on every attention projection of the SD UNet."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    sd = model_patcher.model.diffusion_model.state_dict()
    for key, weight in sd.items():
        if not (key.endswith(".weight") and weight.ndim == 2 and ".attn" in key and ".to_" in key):
            continue
        name = "lora_unet_" + key[: -len(".weight")].replace(".", "_")
        out[name + ".lora_up.weight"] = torch.randn(weight.shape[0], rank, generator=gen) * scale
        out[name + ".lora_down.weight"] = torch.randn(rank, weight.shape[1], generator=gen) * scale
        out[name + ".alpha"] = torch.tensor(float(rank))
    return out


def upscaler_state_dict(scale: int = 2, seed: int = 5) -> dict[str, torch.Tensor]:
    """A tiny Real-ESRGAN 'compact' network (spandrel detects it from the keys), random weights."""
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=scale)
    return {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}


def save(state_dict: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    return save_atomically(state_dict, path, metadata)


def make_test_image(height: int = 48, width: int = 64, batch: int = 1, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """A smooth coloured IMAGE [B, H, W, C] in [0, 1] with a bright disc (something to keep in view)."""
    gen = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height)[:, None]
    xs = torch.linspace(0, 1, width)[None, :]
    images = []
    for b in range(batch):
        phase = torch.rand(3, generator=gen)
        rgb = torch.stack([(torch.sin(6.0 * (xs + ys) + 6.28 * phase[c]) + 1) / 2 for c in range(3)], dim=-1)
        disc = (((xs - 0.5) ** 2 + (ys - 0.5) ** 2) < 0.04).float()[..., None]
        images.append(rgb * (1 - disc) + disc)
    image = torch.stack(images)
    if channels == 1:
        image = image.mean(-1, keepdim=True)
    elif channels == 4:
        image = torch.cat([image, torch.ones_like(image[..., :1])], dim=-1)
    return image.clamp(0, 1)
