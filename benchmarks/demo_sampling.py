"""What the benchmarks that sample the trained demo model share (bench_seams, noise_prior_ablation,
direction_probe): the demo checkpoint loaded by ComfyUI's own loader, a narrow twin (narrow.py: the shipped wide
model's exact arithmetic, several times cheaper on a CPU) patched in as its diffusion model, and a keyframe
animated the way the MicroCinema Image To Video node prepares it (appearance conds on both prompts, the Appearance
Noise Prior latent) through ComfyUI's KSampler code (``nodes.common_ksampler``).

Import it after ``pack_import.core()`` has put ComfyUI on sys.path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pack_import import sub


class DemoSampler:
    def __init__(self, models_dir: Path):
        import comfy.sd

        files = sub("demo").ensure_demo_models(models_dir)
        self.model, self.clip, self.vae, *_ = comfy.sd.load_checkpoint_guess_config(
            str(files["checkpoint"]), output_vae=True, output_clip=True)
        self._texts: dict[str, list] = {}

    def with_twin(self, unet: torch.nn.Module, module: torch.nn.Module):
        """A clone of the demo MODEL whose diffusion model is the video UNet of this (narrow) UNet and module."""
        patched = self.model.clone()
        patched.add_object_patch("diffusion_model", sub("video_unet").VideoUNet(unet, module).eval())
        return patched

    def text(self, caption: str) -> list:
        if caption not in self._texts:
            import nodes

            self._texts[caption] = nodes.CLIPTextEncode().encode(self.clip, caption)[0]
        return self._texts[caption]

    def animate(self, model, keyframe, caption: str, frames: int, key: int, seed: int, steps: int, cfg: float,
                gamma: float) -> np.ndarray:
        """Frames [T, H, W, 3] in [0, 1] of ``keyframe`` ([H, W, 3] in [0, 1]) animated by ``model`` under
        ``caption`` (negative prompt empty), euler sampler, normal schedule."""
        import nodes

        conditioning, noise_prior = sub("conditioning"), sub("noise_prior")
        raw = self.vae.encode(torch.as_tensor(keyframe, dtype=torch.float32)[None])
        conds = conditioning.appearance_model_conds(raw, frames, key, 1.0)
        latent = noise_prior.ksampler_prior_latent(raw, frames, gamma, noise_prior.sd_sigma_max())
        positive = conditioning.attach(self.text(caption), conds)
        negative = conditioning.attach(self.text(""), conds)
        samples = nodes.common_ksampler(model, seed, steps, cfg, "euler", "normal", positive, negative,
                                        {"samples": latent})[0]["samples"]
        return self.vae.decode(samples).detach().numpy()
