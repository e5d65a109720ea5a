"""What ComfyUI is told a MicroCinema sampling run needs, before it loads the model.

ComfyUI sizes a sampling run in ``sampler_helpers._prepare_sampling``: ``estimate_memory`` multiplies the
latent's area by ``model.model.memory_usage_factor``, then ``load_models_gpu`` frees that much (offloading other
models, or loading ours partially). Two things would make that figure wrong for our video model:
- our factor is an object patch (``patching.apply_module``), and object patches are applied by that very load,
  after the estimate: a model's first run would be sized with plain SD's factor (too little memory);
- with context windows the UNet only ever holds one window of frames (plus the keyframe), not all T: sizing for
  T would offload more than needed (slow on long clips, never out of memory).
A PREPARE_SAMPLING wrapper (the hook ComfyUI's own context windows use for the same reason) rescales the frame
axis of the shape it estimates for; nothing else reads that shape.
"""
from __future__ import annotations

import math

import comfy.patcher_extension

from . import memory_check
from .video_unet import CONTEXT_OPTION

WRAPPER_KEY = "MicroCinema_memory_estimate"


def frames_in_conds(conds: dict) -> int | None:
    """T of the videos being sampled, as MicroCinema Image To Video put it in the conds."""
    for entries in conds.values():
        for entry in entries or ():
            frames = (entry.get("model_conds") or {}).get("mc_num_frames")
            if frames is not None:
                return int(frames.cond)
    return None


def estimate_scale(model_patcher, conds: dict, transformer_options: dict) -> float:
    """Multiplier on the latent batch that turns ComfyUI's estimate into ours."""
    scale = 1.0
    wanted = model_patcher.object_patches.get("memory_usage_factor")
    current = getattr(model_patcher.model, "memory_usage_factor", None)
    if wanted and current:
        scale *= wanted / current  # 1.0 once the model is loaded with its patches
    settings = transformer_options.get(CONTEXT_OPTION)
    frames = frames_in_conds(conds)
    if settings is not None and frames:
        held = min(frames, settings.length + int(settings.keep_keyframe))
        scale *= held / frames
    return scale


def _prepare_sampling(executor, model, noise_shape, conds, *args, **kwargs):
    frames = frames_in_conds(conds)
    if frames and len(noise_shape) == 4:
        # Before ComfyUI loads anything: a video whose frames cannot fit fails here, naming 'length', instead of
        # minutes later with an allocation error. The stock KSampler got its latent from Image To Video (the
        # MicroCinema Sampler checks with its own name before it gets here).
        memory_check.check_sampling(memory_check.IMAGE_TO_VIDEO, model, length=frames, latent_height=noise_shape[2],
                                    latent_width=noise_shape[3], videos=max(1, noise_shape[0] // frames))
    options = (kwargs.get("model_options") or {}).get("transformer_options", {})
    scale = estimate_scale(model, conds, options)
    if scale != 1.0 and len(noise_shape) > 0:
        noise_shape = [max(1, math.ceil(noise_shape[0] * scale))] + list(noise_shape[1:])
    return executor(model, noise_shape, conds, *args, **kwargs)


def install(model_patcher) -> None:
    model_patcher.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREPARE_SAMPLING, WRAPPER_KEY,
                                       _prepare_sampling)
