"""The demo's captions, their text embeddings (from the demo CLIP-L through ComfyUI's own text encoder, the one
the workflows use) and SD's noise schedule: the fixed inputs of the demo's model set-up. The demo has 61 distinct
captions (60 + the empty one), so encoding them once is bounded."""
from __future__ import annotations

import torch

from .. import demo, demo_vae, tiny_models
from . import synthetic


def captions() -> list[str]:
    return sorted({f"a {c} {s} moving {d}" for c in synthetic.COLOURS for s in synthetic.SHAPES
                   for d in synthetic.DIRECTIONS})


def encode_captions(texts: list[str]) -> dict[str, torch.Tensor]:
    import comfy.sd

    sd = tiny_models.random_state_dict(tiny_models.clip_l_shapes(), demo.CLIP_SEED, "cond_stage_model.transformer.",
                                       torch.float16)
    sd.update(tiny_models.random_state_dict(tiny_models.unet_shapes(tiny_models.TINY_SD15_UNET), 0,
                                            "model.diffusion_model.", torch.float16))
    sd.update(demo_vae.taesd_state_dict())
    _, clip, *_ = comfy.sd.load_state_dict_guess_config(sd, output_vae=False, output_clip=True)
    out = {}
    with torch.no_grad():
        for text in texts + [""]:
            out[text] = clip.encode_from_tokens(clip.tokenize(text)).float().cpu()
    return out


def alphas_cumprod() -> torch.Tensor:
    """SD's default discrete schedule (the demo checkpoint's), as ComfyUI builds it."""
    import comfy.model_sampling

    from .model_setup import alphas_cumprod_of

    return alphas_cumprod_of(comfy.model_sampling.ModelSamplingDiscrete(model_config=None))
