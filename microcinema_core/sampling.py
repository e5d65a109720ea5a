"""Stage 2 as functions: a keyframe IMAGE + text conditioning -> appearance-conditioned inputs for the stock
KSampler, and -> video frames. The nodes (MicroCinema Image To Video, MicroCinema Sampler), validation during
training and the benchmarks all call these, by keyword, so they all sample the same way.

Inputs are assumed valid here (the nodes check widget values and name the input at fault); what only the data can
reveal (an IMAGE of the wrong shape, NaN pixels, a VAE of another family) raises ValueError naming ``node`` and
the input.
"""
from __future__ import annotations

import torch

from . import conditioning, memory_check, noise_prior

IMAGE_TO_VIDEO = "MicroCinema Image To Video"


def rgb_image(image, node: str, name: str, what: str) -> torch.Tensor:
    """An IMAGE [N, H, W, C] (RGB, RGBA or greyscale; one frame may come without the batch axis) as float RGB
    [N, H, W, 3], not yet clamped; ValueError naming ``node`` and input ``name`` (``what`` it holds) otherwise."""
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"{node}, input '{name}': expected an IMAGE, got {type(image).__name__}")
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[-1] not in (1, 2, 3, 4) or image.shape[1] < 1 or image.shape[2] < 1:
        raise ValueError(f"{node}, input '{name}': expected an IMAGE [batch, height, width, channels] ({what}), "
                         f"got shape {tuple(image.shape)}")
    if image.shape[0] < 1:
        raise ValueError(f"{node}, input '{name}': the IMAGE batch is empty ({what})")
    if not bool(torch.isfinite(image).all()):
        raise ValueError(f"{node}, input '{name}': NaN or infinite pixel values ({what}; a broken upstream node?)")
    channels = image.shape[-1]
    if channels in (1, 2):  # greyscale (+ alpha)
        image = image[..., :1].expand(*image.shape[:-1], 3)
    elif channels == 4:  # drop alpha
        image = image[..., :3]
    return image.float()


def prepare_keyframes(image: torch.Tensor, width: int, height: int, method: str = "bilinear", crop: str = "center",
                      node: str = IMAGE_TO_VIDEO, name: str = "image") -> torch.Tensor:
    """[B, H, W, C] IMAGE (RGB, RGBA or greyscale; any size) -> [B, height, width, 3] in [0, 1]."""
    import comfy.utils

    pixels = rgb_image(image, node, name, "the keyframe").movedim(-1, 1)
    pixels = comfy.utils.common_upscale(pixels, width, height, method, crop)
    return pixels.movedim(1, -1).clamp(0.0, 1.0)


def video_inputs(positive: list, negative: list, vae, image: torch.Tensor, *, width: int, height: int, length: int,
                 keyframe_position: str = "center", keyframe_index: int = 0, appearance_strength: float = 1.0,
                 noise_prior_gamma: float = 0.02, crop: str = "center", resize_method: str = "bilinear",
                 frame_rate: float = 8.0, node: str = IMAGE_TO_VIDEO) -> tuple[list, list, dict]:
    """(positive, negative, LATENT): the appearance conds attached to both prompts and the noise-prior latent for
    the stock KSampler at denoise 1 (what MicroCinema Image To Video outputs)."""
    if getattr(vae, "latent_channels", 4) != 4 or getattr(vae, "downscale_ratio", 8) != 8:
        raise ValueError(f"{node}, input 'vae': an SD1.x/SD2.x VAE (4 latent channels, 8x downscale) is needed, "
                         f"this one has {vae.latent_channels} channels")
    key_index = noise_prior.keyframe_index(keyframe_position, length, keyframe_index)
    for name, conds in (("positive", positive), ("negative", negative)):
        conditioning.check_text_frames(conds, length, node, name)
    # Before the resize and the encode: a width x height that cannot be sampled at all is refused here, naming it.
    memory_check.check_video_inputs(node, width=width, height=height, length=length)
    pixels = prepare_keyframes(image, width, height, resize_method, crop, node)
    # The keyframe is resized to width x height first, so the encode costs what width x height costs: tiled when a
    # whole encode would not fit (an 8192x8192 encode alone grew past 12 GiB).
    keyframes = memory_check.encode_keyframes(vae, pixels).float().cpu()  # raw VAE latent [B, 4, h/8, w/8]
    conds = conditioning.appearance_model_conds(keyframes, length, key_index, appearance_strength)
    latent = noise_prior.ksampler_prior_latent(keyframes, length, noise_prior_gamma, noise_prior.sd_sigma_max())
    out_latent = {"samples": latent.contiguous(),
                  "microcinema": {"noise_prior_gamma": float(noise_prior_gamma), "length": int(length),
                                  "frame_rate": float(frame_rate)}}
    return conditioning.attach(positive, conds), conditioning.attach(negative, conds), out_latent


def animate(model, positive: list, negative: list, vae, image: torch.Tensor, *, width: int, height: int,
            length: int, seed: int, steps: int, cfg: float, sampler_name: str = "euler", scheduler: str = "normal",
            keyframe_position: str = "center", keyframe_index: int = 0, appearance_strength: float = 1.0,
            noise_prior_gamma: float = 0.02, crop: str = "center", resize_method: str = "bilinear",
            frame_rate: float = 8.0, node: str = IMAGE_TO_VIDEO) -> tuple[torch.Tensor, dict]:
    """Frames [B*T, H, W, 3] in [0, 1] and the sampled LATENT: video_inputs, ComfyUI's own KSampler code
    (``nodes.common_ksampler``, denoise 1) and VAE decode."""
    import nodes as comfy_nodes  # ComfyUI's nodes.py

    # The model is known here: refuse a length that cannot fit (context windows counted) before encoding anything.
    memory_check.check_sampling(node, model, length=length, latent_height=height // 8, latent_width=width // 8,
                                videos=image.shape[0] if image.ndim == 4 else 1)
    pos, neg, latent = video_inputs(positive, negative, vae, image, width=width, height=height, length=length,
                                    keyframe_position=keyframe_position, keyframe_index=keyframe_index,
                                    appearance_strength=appearance_strength, noise_prior_gamma=noise_prior_gamma,
                                    crop=crop, resize_method=resize_method, frame_rate=frame_rate, node=node)
    (samples,) = comfy_nodes.common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, pos, neg, latent,
                                             denoise=1.0)
    frames = vae.decode(samples["samples"])
    if frames.ndim == 5:  # video VAEs return [B, T, H, W, C]
        frames = frames.reshape(-1, *frames.shape[-3:])
    return frames, samples


def text_conditioning(clip, text: str) -> list:
    """What CLIP Text Encode outputs for ``text``."""
    tokens = clip.tokenize(text)
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    return [[cond, {"pooled_output": pooled}]]
