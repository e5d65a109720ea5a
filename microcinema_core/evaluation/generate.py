"""Generating the videos an evaluation scores, with a MicroCinema module on its SD base: MicroCinema's own
divide and conquer. Stage 1 (only when an item has no keyframe image): the base SD model draws the keyframe from
the prompt (ComfyUI's KSampler on an empty latent). Stage 2: ``sampling.animate`` (what the MicroCinema Sampler
node runs) animates it with the module. Each video is written as <generated>/<index>.mp4 (an existing file for an
item is kept, so an interrupted generation resumes), and the scoring then reads those files like any others.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from . import InputError

log = logging.getLogger("microcinema.evaluate")


@dataclass
class GenerationSettings:
    frames: int = 16
    size: int = 256
    steps: int = 25
    cfg: float = 7.5
    gamma: float = 0.02
    seed: int = 0
    fps: float = 8.0
    negative: str = ""


class ModuleGenerator:
    def __init__(self, base: str, module: str, settings: GenerationSettings):
        import comfy.sd

        from .. import loading

        for flag, path in (("--base", base), ("--module", module)):
            if not os.path.isfile(path):
                raise InputError(f"{flag} {path}: no such file")
            if not path.lower().endswith((".safetensors", ".sft")):
                raise InputError(f"{flag} {path}: only .safetensors files are loaded")
        if settings.size % 16 or settings.frames < 1:
            raise InputError(f"--gen-size {settings.size} must be a multiple of 16 and --gen-frames >= 1")
        self.settings = settings
        self.base_model, self.clip, self.vae, *_ = comfy.sd.load_checkpoint_guess_config(
            base, output_vae=True, output_clip=True)
        self.video_model = loading.microcinema_model(self.base_model, module)

    def keyframe(self, prompt: str, path: str | None, seed: int) -> torch.Tensor:
        """[1, H, W, 3] in [0, 1]: the item's keyframe image, or stage 1's picture for the prompt."""
        if path:
            from PIL import Image

            with Image.open(path) as image:
                return torch.from_numpy(np.asarray(image.convert("RGB"), np.float32) / 255.0)[None]
        import nodes as comfy_nodes  # ComfyUI's nodes.py

        from .. import sampling

        s = self.settings
        latent = {"samples": torch.zeros(1, 4, s.size // 8, s.size // 8)}
        (samples,) = comfy_nodes.common_ksampler(self.base_model, seed, s.steps, s.cfg, "euler", "normal",
                                                 sampling.text_conditioning(self.clip, prompt),
                                                 sampling.text_conditioning(self.clip, s.negative), latent)
        return self.vae.decode(samples["samples"]).float().clamp(0, 1)[:1]

    def video(self, prompt: str, keyframe_path: str | None, seed: int) -> np.ndarray:
        from .. import sampling
        from ..training.video_decode import image_to_uint8

        s = self.settings
        image = self.keyframe(prompt, keyframe_path, seed)
        frames, _ = sampling.animate(
            self.video_model, sampling.text_conditioning(self.clip, prompt),
            sampling.text_conditioning(self.clip, s.negative), self.vae, image, width=s.size, height=s.size,
            length=s.frames, seed=seed, steps=s.steps, cfg=s.cfg, noise_prior_gamma=s.gamma, frame_rate=s.fps)
        return image_to_uint8(frames)


def generate_missing(items: Iterable, folder: str, generator: ModuleGenerator) -> None:
    """Writes <folder>/<index>.mp4 for every item that has no generated video and no file there yet."""
    from ..training.video_decode import write_video

    os.makedirs(folder, exist_ok=True)
    todo = [item for item in items if item.generated is None
            and not any(os.path.exists(os.path.join(folder, f"{item.index}{ext}")) for ext in (".mp4", ".webm"))]
    with torch.no_grad():
        for done, item in enumerate(todo, 1):
            frames = generator.video(item.prompt, item.keyframe, generator.settings.seed + item.index)
            target = os.path.join(folder, f"{item.index}.mp4")
            staged = os.path.join(folder, f".staged-{os.getpid()}-{item.index}.mp4")  # the suffix names the format
            write_video(staged, list(frames), generator.settings.fps, codec="libx264")
            os.replace(staged, target)
            log.info("generated %d/%d: %s", done, len(todo), target)
