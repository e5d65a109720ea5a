"""CLIPSIM: the mean cosine similarity between CLIP's embedding of each frame and of the video's prompt.

A video's score is the mean over all its frames of cos(image embedding, text embedding); the reported CLIPSIM is
the mean of the videos' scores (the paper: 0.2967 on MSR-VTT). Raw cosine: no x100 scale, no clipping at 0.

The model sits behind ``ClipEncoder`` (``encode_images`` on preprocessed pixels, ``encode_texts`` on strings), so
any CLIP can be plugged in; ``HFClip`` adapts a local Hugging Face CLIP folder (``transformers.CLIPModel``,
safetensors weights, loaded with ``local_files_only``). transformers is only imported when a folder is loaded.

The image preprocessing is CLIP's own, done in torch (``clip_preprocess``): shorter side resized to the model's
input size with bicubic interpolation (antialiased, the filter of PIL's bicubic which CLIP's reference pipeline
uses; the longer side becomes ``int(size * long / short)``), rounded to 8-bit levels as the reference's PIL image
is, centre crop, scaled to [0, 1] and normalised with CLIP's mean and standard deviation. The resize equals PIL's
float-mode bicubic; PIL's 8-bit path uses fixed-point coefficients and differs from it by one level on some pixels.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from . import InputError, file_sha256

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_preprocess(frames: np.ndarray | torch.Tensor, size: int = 224, mean: Sequence[float] = CLIP_MEAN,
                    std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """uint8 frames [N, H, W, 3] -> float32 [N, 3, size, size], CLIP-normalised."""
    x = rearrange(torch.as_tensor(np.asarray(frames)).float(), "n h w c -> n c h w")
    height, width = x.shape[-2:]
    short, long = min(height, width), max(height, width)
    if short != size:
        # torchvision's Resize(size) rule, which CLIP's reference preprocessing uses: the long side is truncated.
        other = int(size * long / short)
        target = (size, other) if height <= width else (other, size)
        x = F.interpolate(x, size=target, mode="bicubic", align_corners=False, antialias=True)
        x = x.clamp(0, 255).round()
    height, width = x.shape[-2:]
    # torchvision's CenterCrop offsets (round half to even, as Python's round).
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    x = x[..., top:top + size, left:left + size] / 255.0
    mean_t = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


class ClipEncoder(Protocol):
    """What CLIPSIM needs from a CLIP model."""

    image_size: int
    mean: Sequence[float]
    std: Sequence[float]

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed images [N, 3, S, S] -> embeddings [N, D] (not necessarily unit length)."""

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Strings -> embeddings [M, D] (not necessarily unit length)."""


class HFClip:
    """A Hugging Face CLIP folder (config.json, model.safetensors, tokenizer files), e.g. a local copy of
    openai/clip-vit-large-patch14 or openai/clip-vit-base-patch32. Only safetensors weights are accepted."""

    def __init__(self, folder: str, device: str | torch.device = "cpu"):
        if not os.path.isdir(folder):
            raise InputError(f"{folder}: no such folder (expected a Hugging Face CLIP folder)")
        try:
            from transformers import AutoTokenizer, CLIPModel
        except ImportError:
            raise InputError(f"{folder}: CLIPSIM with a Hugging Face CLIP folder needs the transformers package "
                             f"(pip install transformers)") from None
        try:
            self.model = CLIPModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{folder}: not a loadable CLIP folder ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:300]})") from None
        self.folder = folder
        self.device = torch.device(device)
        self.model = self.model.float().eval().to(self.device)
        self.image_size = int(self.model.config.vision_config.image_size)
        self.max_tokens = int(self.model.config.text_config.max_position_embeddings)
        self.mean, self.std = _normalisation(folder)
        log.info("CLIP: %s (images %dx%d)", folder, self.image_size, self.image_size)

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        # vision tower + projection directly: get_image_features' return type changed across transformers versions
        pooled = self.model.vision_model(pixel_values=pixels.to(self.device)).pooler_output
        return self.model.visual_projection(pooled)

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens,
                                return_tensors="pt").to(self.device)
        pooled = self.model.text_model(input_ids=tokens["input_ids"],
                                       attention_mask=tokens["attention_mask"]).pooler_output
        return self.model.text_projection(pooled)

    def describe(self) -> dict:
        """For the report: the folder and the SHA-256 of its weight files."""
        weights = sorted(f for f in os.listdir(self.folder) if f.endswith(".safetensors"))
        return {"folder": os.path.abspath(self.folder), "image_size": self.image_size,
                "weights_sha256": {f: file_sha256(os.path.join(self.folder, f)) for f in weights}}


def _normalisation(folder: str) -> tuple[Sequence[float], Sequence[float]]:
    """The folder's preprocessor_config.json mean/std when it has them (OpenAI's CLIPs have CLIP's constants)."""
    path = os.path.join(folder, "preprocessor_config.json")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        mean, std = config.get("image_mean"), config.get("image_std")
        if isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == 3:
            return tuple(float(v) for v in mean), tuple(float(v) for v in std)
    except (OSError, ValueError):
        pass
    return CLIP_MEAN, CLIP_STD


class ClipSim:
    """Scores videos one at a time (``score``); text embeddings are cached per prompt (UCF-101 repeats its 101
    class prompts); frames go through the image tower in chunks of ``batch_size``."""

    def __init__(self, encoder: ClipEncoder, batch_size: int = 32):
        self.encoder, self.batch_size = encoder, max(1, batch_size)
        self._texts: dict[str, torch.Tensor] = {}

    def _text(self, prompt: str) -> torch.Tensor:
        if prompt not in self._texts:
            self._texts[prompt] = F.normalize(self.encoder.encode_texts([prompt]).double(), dim=-1)[0].cpu()
        return self._texts[prompt]

    def score(self, prompt: str, frames: np.ndarray) -> float:
        """Mean over the frames [T, H, W, 3] (uint8) of the cosine similarity with ``prompt``."""
        text = self._text(prompt)
        total = 0.0
        for start in range(0, len(frames), self.batch_size):
            pixels = clip_preprocess(frames[start:start + self.batch_size], self.encoder.image_size,
                                     self.encoder.mean, self.encoder.std)
            images = F.normalize(self.encoder.encode_images(pixels).double(), dim=-1).cpu()
            total += float((images @ text).sum())
        return total / len(frames)
