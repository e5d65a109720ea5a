"""The Appearance Noise Prior (ANP), method.md section 4.

Training:   eps = eps_n + lambda * repeat_T(z_c);  z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps;  target = eps.
Inference:  the sampler starts from z_T = eps_n + gamma * repeat_T(z_c).

In ComfyUI (k-diffusion, EPS/V models, full denoise) the first model input is x_T / sqrt(1 + sigma_max^2) with
x_T = noise * sqrt(1 + sigma_max^2) + latent_image. So the same start is reached either by a NOISE that already
contains the prior (latent_image = 0), or by the stock KSampler with
latent_image = gamma * sqrt(1 + sigma_max^2) * z_c (in the latent space the sampler receives).

All latents here are [B*T, C, h, w] with the T frames of one video consecutive (frames in the batch dimension).
"""
from __future__ import annotations

import math

import torch
from einops import repeat

KEYFRAME_POSITIONS = ("center", "first", "last", "index")


def keyframe_index(position: str, num_frames: int, index: int = 0) -> int:
    """Frame that shows the keyframe. "center" is the paper's training choice: frame T // 2."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if position == "center":
        return num_frames // 2
    if position == "first":
        return 0
    if position == "last":
        return num_frames - 1
    if position == "index":
        if not -num_frames <= index < num_frames:
            raise ValueError(f"keyframe index {index} is outside a clip of {num_frames} frames")
        return index % num_frames
    raise ValueError(f"unknown keyframe position {position!r}; expected one of {KEYFRAME_POSITIONS}")


def repeat_keyframes(keyframes: torch.Tensor, num_frames: int) -> torch.Tensor:
    """[B, C, h, w] keyframe latents -> [B*T, C, h, w], each video's keyframe copied to its T frames."""
    return repeat(keyframes, "b c h w -> (b t) c h w", t=num_frames)


def frames_per_video(total_frames: int, num_videos: int) -> int:
    if num_videos < 1 or total_frames % num_videos != 0:
        raise ValueError(
            f"a batch of {total_frames} latent frames cannot be split into {num_videos} videos of equal length"
        )
    return total_frames // num_videos


def training_noise(eps_n: torch.Tensor, keyframes: torch.Tensor, lam: float) -> torch.Tensor:
    """eps = eps_n + lambda * repeat_T(z_c); eps_n is [B*T, C, h, w], keyframes [B, C, h, w] (model space)."""
    t = frames_per_video(eps_n.shape[0], keyframes.shape[0])
    return eps_n + lam * repeat_keyframes(keyframes.to(eps_n), t)


def noisy_latent(z0: torch.Tensor, eps: torch.Tensor, alphas_cumprod_t: torch.Tensor) -> torch.Tensor:
    """z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps, with one abar per frame ([B*T])."""
    abar = alphas_cumprod_t.to(z0).reshape(-1, 1, 1, 1)
    return abar.sqrt() * z0 + (1.0 - abar).sqrt() * eps


def noise_with_prior(base_noise: torch.Tensor, keyframes: torch.Tensor, gamma: float) -> torch.Tensor:
    """Inference start for a NOISE object: eps_n + gamma * repeat_T(z_c) (keyframes in model space)."""
    return training_noise(base_noise, keyframes, gamma)


def start_scale(sigma_max: float) -> float:
    """sqrt(1 + sigma_max^2): how ComfyUI scales unit noise at full denoise for EPS/V models."""
    return math.sqrt(1.0 + float(sigma_max) ** 2)


def ksampler_prior_latent(keyframes: torch.Tensor, num_frames: int, gamma: float, sigma_max: float) -> torch.Tensor:
    """latent_image for the stock KSampler route: gamma * sqrt(1 + sigma_max^2) * repeat_T(z_c).

    The latent space is whatever space ``keyframes`` is in; SD's latent format is linear (a scale), so the
    raw VAE latent may be used and the sampler's process_latent_in scales both sides alike.
    """
    return gamma * start_scale(sigma_max) * repeat_keyframes(keyframes, num_frames)


def sd_sigma_max(linear_start: float = 0.00085, linear_end: float = 0.012, timesteps: int = 1000) -> float:
    """sigma_max of Stable Diffusion 1.x/2.x's "scaled linear" schedule (about 14.61), computed independently
    of ComfyUI so the prior latent can be built without a model at hand."""
    betas = torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64) ** 2
    abar_last = torch.prod(1.0 - betas)
    return float(((1.0 - abar_last) / abar_last) ** 0.5)


# --- Partial denoise (video-to-video) -------------------------------------------------------------------------
# The stock KSampler at denoise d < 1 starts at its first sigma s = sigmas[0] of the shortened schedule and, for
# EPS/V models (comfy.model_sampling.EPS.noise_scaling), from x_s = latent_image + c(s) * noise with
#   c(s) = sqrt(1 + s^2)  when s is the schedule's sigma_max ("max denoise": ComfyUI's relative tolerance 1e-5),
#   c(s) = s              otherwise.
# With the prior the noise is eps_n + gamma * z_c, so the sampler must start from
#   x_s = z_video + c(s) * (eps_n + gamma * repeat_T(z_c)),
# which the stock KSampler reaches with latent_image = z_video + gamma * c(s) * repeat_T(z_c). At denoise 1 this
# is Image To Video's latent plus z_video; at denoise 0 (no sigma, the sampler returns latent_image) the prior is
# zero, so nothing is added.

MAX_DENOISE_REL_TOL = 1e-5  # ComfyUI's KSAMPLER.max_denoise tolerance


def is_max_denoise(sigma_start: float, sigma_max: float) -> bool:
    """Whether the sampler treats ``sigma_start`` as a start from pure noise (ComfyUI's max_denoise test)."""
    return math.isclose(sigma_max, sigma_start, rel_tol=MAX_DENOISE_REL_TOL) or sigma_start > sigma_max


def sampler_noise_scale(sigma_start: float | None, sigma_max: float) -> float:
    """c(s): what the EPS/V sampler multiplies unit noise by at its first sigma; 0 when there is no step."""
    if sigma_start is None:
        return 0.0
    if is_max_denoise(sigma_start, sigma_max):
        return start_scale(sigma_start)
    return float(sigma_start)


def prior_latent(keyframes: torch.Tensor, num_frames: int, gamma: float, noise_scale: float) -> torch.Tensor:
    """gamma * c(s) * repeat_T(z_c): the prior as the sampler's latent_image carries it (same space as keyframes).
    Computed as ``ksampler_prior_latent`` computes it (the scalar first), so the two agree bitwise at denoise 1."""
    return gamma * noise_scale * repeat_keyframes(keyframes, num_frames)


def video_prior_latent(video_latents: torch.Tensor, keyframes: torch.Tensor, gamma: float,
                       noise_scale: float) -> torch.Tensor:
    """latent_image = z_video + gamma * c(s) * repeat_T(z_c) for [B*T, C, h, w] video latents and [B, C, h, w]
    keyframes (one per video); with gamma or c(s) zero it is z_video itself, unchanged."""
    t = frames_per_video(video_latents.shape[0], keyframes.shape[0])
    if gamma == 0 or noise_scale == 0:
        return video_latents
    return video_latents + prior_latent(keyframes.to(video_latents), t, gamma, noise_scale)
