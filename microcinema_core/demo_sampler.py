"""Sampling the demo model with a narrow twin (offline tools: validation during demo training, the benchmarks).

The demo checkpoint is loaded by ComfyUI's own loader (its CLIP, VAE and noise schedule are the ones the
workflows use); its diffusion model is replaced, as an object patch on a clone of the MODEL, by the video UNet of
a narrow twin (narrow.py: the shipped wide model's exact arithmetic, several times cheaper on a CPU). A keyframe
is then animated through ``sampling.animate``, the function the nodes call.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import demo, sampling
from .video_unet import VideoUNet


class DemoSampler:
    def __init__(self, models_dir: Path):
        import comfy.sd

        files = demo.ensure_demo_models(Path(models_dir))
        self.model, self.clip, self.vae, *_ = comfy.sd.load_checkpoint_guess_config(
            str(files["checkpoint"]), output_vae=True, output_clip=True)
        self._texts: dict[str, list] = {}

    def with_twin(self, unet: torch.nn.Module, module: torch.nn.Module):
        """A clone of the demo MODEL whose diffusion model is the video UNet of this (narrow) UNet and module."""
        patched = self.model.clone()
        patched.add_object_patch("diffusion_model", VideoUNet(unet, module).eval())
        return patched

    def shipped_twin(self):
        """The demo MODEL with the shipped narrow twin (the trained demo UNet and module) as its video UNet."""
        from . import narrow

        return self.with_twin(*narrow.load_twin(str(demo.NARROW_UNET), str(demo.NARROW_MODULE)))

    def text(self, caption: str) -> list:
        if caption not in self._texts:
            self._texts[caption] = sampling.text_conditioning(self.clip, caption)
        return self._texts[caption]

    def animate(self, model, keyframe, caption: str, frames: int, key: int, seed: int, steps: int, cfg: float,
                gamma: float) -> np.ndarray:
        """Frames [T, H, W, 3] in [0, 1] of ``keyframe`` ([H, W, 3] in [0, 1]) animated by ``model`` under
        ``caption`` (negative prompt empty), euler sampler, normal schedule, keyframe at frame ``key``."""
        image = torch.as_tensor(np.asarray(keyframe), dtype=torch.float32)[None]
        out, _ = sampling.animate(model, self.text(caption), self.text(""), self.vae, image, width=image.shape[2],
                                  height=image.shape[1], length=frames, seed=seed, steps=steps, cfg=cfg,
                                  keyframe_position="index", keyframe_index=key, noise_prior_gamma=gamma)
        return out.detach().cpu().numpy()
