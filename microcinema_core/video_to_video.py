"""Video-to-video as functions: an existing clip (IMAGE frames or a LATENT) + a keyframe + text conditioning ->
appearance-conditioned inputs for the stock KSampler at denoise < 1 (what MicroCinema Video To Video outputs).

The prior at partial denoise is defined in noise_prior.py (``video_prior_latent``): the KSampler's first sigma s
decides how much of gamma * z_c the latent must carry, so this module asks ComfyUI's own KSampler class for the
schedule the sampler will use (same model, steps, denoise, sampler and scheduler) and reads s = sigmas[0].

What only the data can reveal (frame counts that do not split into videos, sizes off the 8-pixel grid, NaN
pixels, a VAE or model of another family) raises ValueError naming ``node`` and the input.
"""
from __future__ import annotations

import logging
import math

import torch
from einops import rearrange

from . import conditioning, memory_check, noise_prior, prior_check, sampling

log = logging.getLogger(__name__)

VIDEO_TO_VIDEO = "MicroCinema Video To Video"
SD_SIGMA_REL_TOL = 1e-6  # float32 rounding of the SD schedule's sigma_max is ~1e-8 relative


def sampler_start_sigma(model_patcher, *, steps: int, denoise: float, sampler_name: str, scheduler: str,
                        node: str = VIDEO_TO_VIDEO) -> tuple[float | None, float]:
    """(first sigma of the stock KSampler's schedule or None when it takes no step, the model's sigma_max).

    ComfyUI's own ``comfy.samplers.KSampler`` computes the schedule (denoise shortening, samplers that discard the
    penultimate sigma, any model_sampling patch), exactly as ``common_ksampler`` will; building it loads nothing.
    """
    import comfy.model_sampling
    import comfy.samplers

    model_sampling = model_patcher.get_model_object("model_sampling")
    # The prior formula relies on EPS/V noise scaling (latent + c(s) * noise); flow models mix differently.
    if getattr(type(model_sampling), "noise_scaling", None) is not comfy.model_sampling.EPS.noise_scaling:
        raise ValueError(f"{node}, input 'model': the noise prior at partial denoise is defined for SD1.x/SD2.x "
                         f"(EPS or v-prediction) models; this model samples with {type(model_sampling).__name__}")
    ksampler = comfy.samplers.KSampler(model_patcher, steps=steps, device=torch.device("cpu"), sampler=sampler_name,
                                       scheduler=scheduler, denoise=denoise)
    sigmas = ksampler.sigmas
    sigma_max = float(model_sampling.sigma_max)
    if sigmas.numel() == 0:
        return None, sigma_max
    return float(sigmas[0]), sigma_max


def noise_scale_for(sigma_start: float | None, sigma_max: float) -> float:
    """c(s) of noise_prior.sampler_noise_scale. At full denoise on the SD schedule the float64 SD sigma_max (what
    Image To Video uses) stands in for the sampler's float32 rounding of it, so both nodes give the same bits."""
    if sigma_start is not None and noise_prior.is_max_denoise(sigma_start, sigma_max):
        sd_max = noise_prior.sd_sigma_max()
        if math.isclose(sigma_start, sd_max, rel_tol=SD_SIGMA_REL_TOL):
            return noise_prior.start_scale(sd_max)
    return noise_prior.sampler_noise_scale(sigma_start, sigma_max)


def split_frames(total: int, length: int, keyframes: int | None, node: str, source: str) -> tuple[int, int]:
    """(videos, frames per video) for ``total`` source frames; length 0 means all frames, one video per keyframe."""
    if length == 0:
        videos = keyframes or 1
        if total % videos != 0:
            raise ValueError(f"{node}, input '{source}': {total} frames cannot be split evenly among {videos} "
                             "keyframes (input 'keyframe': one keyframe per video); set 'length' to the frames "
                             "per video")
        return videos, total // videos
    if total % length != 0:
        raise ValueError(f"{node}, input 'length': the source ('{source}') has {total} frames, which is not a "
                         f"whole number of {length}-frame videos; set length to {total} (one video) or to a "
                         f"divisor of {total}, or 0 to use all frames")
    videos = total // length
    if keyframes is not None and keyframes != videos:
        raise ValueError(f"{node}, input 'keyframe': {keyframes} keyframe image(s) for {videos} video(s) "
                         f"({total} source frames / length {length}); give one keyframe per video")
    return videos, length


def check_source(video=None, video_latent=None, node: str = VIDEO_TO_VIDEO) -> torch.Tensor:
    """The source clip, checked: RGB frames [N, H, W, 3] from 'video', or raw latents [N, 4, h, w] from
    'video_latent' (exactly one of them)."""
    if (video is None) == (video_latent is None):
        raise ValueError(f"{node}, inputs 'video' / 'video_latent': connect exactly one source clip (IMAGE frames "
                         f"to 'video', or a LATENT to 'video_latent'); got "
                         f"{'both' if video is not None else 'neither'}")
    if video_latent is not None:
        samples = video_latent.get("samples") if isinstance(video_latent, dict) else None
        if not isinstance(samples, torch.Tensor) or samples.ndim != 4 or samples.shape[1] != 4:
            shape = tuple(samples.shape) if isinstance(samples, torch.Tensor) else None
            raise ValueError(f"{node}, input 'video_latent': expected an SD1.x/SD2.x LATENT [frames, 4, h, w], "
                             f"got {shape}")
        if samples.shape[0] < 1:
            raise ValueError(f"{node}, input 'video_latent': the LATENT has no frames")
        if not bool(torch.isfinite(samples).all()):
            raise ValueError(f"{node}, input 'video_latent': NaN or infinite values")
        return samples.float().cpu()
    frames = sampling.rgb_image(video, node, "video", "the source clip's frames").clamp(0.0, 1.0)
    height, width = frames.shape[1:3]
    if width % 8 or height % 8:
        # VAE Encode would crop silently, and the frames would no longer match the decoded result.
        raise ValueError(f"{node}, input 'video': the frames are {width}x{height}; width and height must be "
                         "multiples of 8 (the VAE works on 8x8 pixel cells): resize them first (Upscale Image)")
    return frames


def video_to_video_inputs(positive: list, negative: list, vae, model, *, video=None, video_latent=None,
                          keyframe=None, length: int = 0, keyframe_position: str = "first", keyframe_index: int = 0,
                          appearance_strength: float = 1.0, noise_prior_gamma: float = 0.02, steps: int = 20,
                          denoise: float = 0.6, sampler_name: str = "euler", scheduler: str = "normal",
                          crop: str = "center", resize_method: str = "bilinear",
                          node: str = VIDEO_TO_VIDEO) -> tuple[list, list, dict]:
    """(positive, negative, LATENT) for the stock KSampler run with the same steps/denoise/sampler/scheduler.

    The LATENT is the source's latents plus the prior for the sampler's first sigma (noise_prior.video_prior_latent);
    the conds are Image To Video's, with the keyframe given, or else each video's own frame at the keyframe position.
    """
    if getattr(vae, "latent_channels", 4) != 4 or getattr(vae, "downscale_ratio", 8) != 8:
        raise ValueError(f"{node}, input 'vae': an SD1.x/SD2.x VAE (4 latent channels, 8x downscale) is needed, "
                         f"this one has {getattr(vae, 'latent_channels', '?')} channels")
    if keyframe is not None:
        keyframe = sampling.rgb_image(keyframe, node, "keyframe", "the appearance keyframe").clamp(0.0, 1.0)
    clip = check_source(video, video_latent, node)
    source = "video" if video is not None else "video_latent"
    # Frame counts first: a mismatch is refused before anything is encoded.
    videos, frames = split_frames(clip.shape[0], length, keyframe.shape[0] if keyframe is not None else None,
                                  node, source)
    if keyframe_position == "index" and not -frames <= keyframe_index < frames:
        raise ValueError(f"{node}, input 'keyframe_index': {keyframe_index} is outside a clip of {frames} frames "
                         f"(allowed {-frames}..{frames - 1})")
    key = noise_prior.keyframe_index(keyframe_position, frames, keyframe_index)
    for name, conds in (("positive", positive), ("negative", negative)):
        conditioning.check_text_frames(conds, frames, node, name)
    latent_h, latent_w = (clip.shape[-2:] if video is None else (clip.shape[1] // 8, clip.shape[2] // 8))
    memory_check.check_video_inputs(node, width=latent_w * 8, height=latent_h * 8, length=frames)
    memory_check.check_sampling(node, model, length=frames, latent_height=latent_h, latent_width=latent_w,
                                videos=videos)
    sigma_start, sigma_max = sampler_start_sigma(model, steps=steps, denoise=denoise, sampler_name=sampler_name,
                                                 scheduler=scheduler, node=node)
    scale = noise_scale_for(sigma_start, sigma_max)
    log.debug("%s: first sigma %s, prior scale %.6g", node, sigma_start, scale)
    # The VAE batches frames by free memory (and the encode is tiled when one frame would not fit), as VAE Encode.
    z_video = clip if video is None else memory_check.encode_keyframes(vae, clip).float().cpu()
    if keyframe is None:
        # Each video's own frame at the keyframe position: its latent is already in z_video.
        keyframes = rearrange(z_video, "(b t) c h w -> b t c h w", t=frames)[:, key].clone()
    else:
        pixels = sampling.prepare_keyframes(keyframe, latent_w * 8, latent_h * 8, resize_method, crop, node,
                                          name="keyframe")
        keyframes = memory_check.encode_keyframes(vae, pixels).float().cpu()
    samples = noise_prior.video_prior_latent(z_video, keyframes, noise_prior_gamma, scale)
    conds = conditioning.appearance_model_conds(keyframes, frames, key, appearance_strength)
    out_latent = {"samples": samples.contiguous(),
                  "microcinema": {"noise_prior_gamma": float(noise_prior_gamma), "length": int(frames),
                                  "denoise": float(denoise), "prior_sigma": sigma_start}}
    if isinstance(video_latent, dict) and "noise_mask" in video_latent:
        if noise_prior_gamma > 0 and scale > 0:
            # KSampler keeps latent_image where the mask is 0, and that latent now carries the prior.
            raise ValueError(f"{node}, input 'video_latent': it has a noise mask, and the kept areas would keep "
                             "the noise prior; set noise_prior_gamma to 0 for masked video-to-video")
        out_latent["noise_mask"] = video_latent["noise_mask"]
    positive, negative = conditioning.attach(positive, conds), conditioning.attach(negative, conds)
    if noise_prior_gamma > 0 and sigma_start is not None:
        # the prior is right for this first sigma only: the sampler checks it starts there (prior_check.py)
        positive, negative = prior_check.mark(positive, sigma_start), prior_check.mark(negative, sigma_start)
    return positive, negative, out_latent
