"""Turning a stock SD MODEL (a ComfyUI ModelPatcher) into the MicroCinema video model, natively.

The result is a clone of the user's ModelPatcher whose ``diffusion_model`` is object-patched with a
``VideoUNet`` over the same SD blocks. ComfyUI's own object-patch mechanism (also used by core nodes such as
ModelSamplingDiscrete) swaps it in when the model is loaded for sampling and back out afterwards, so:
- the SD weights are shared, not copied, and the same BaseModel serves the stage-1 image sampler;
- LoRA weight patches keep their SD key names (diffusion_model.input_blocks...), before or after applying;
- ComfyUI loads/offloads our module weights with the UNet (lowvram partial loading included), because while
  patched they are part of the model's module tree;
- stock KSampler, SamplerCustomAdvanced, ControlNet residuals and attention patches go through our forward.
"""
from __future__ import annotations

import logging

import comfy.latent_formats
import comfy.model_management
import comfy.ops
import torch
from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

from . import dynamic_vram, memory_estimate, per_video_cfg, prior_check, stock_context
from .base_unet import base_unet
from .module import MicroCinemaModule, ModuleConfig, build_module
from .video_unet import VideoUNet

log = logging.getLogger(__name__)

MEMORY_FACTOR_TEMPORAL = 1.4   # measured order of magnitude: temporal convs + motion modules per frame
MEMORY_FACTOR_APPEARNET = 1.8  # plus AppearNet's encoder + middle pass
MODULE_OPERATIONS = comfy.ops.manual_cast  # casts weights to the compute dtype/device per call (fp16/bf16/fp8)


class IncompatibleBaseModel(ValueError):
    pass


def spatial_unet(model_patcher) -> UNetModel:
    """The SD UNet under a MODEL, whether or not a MicroCinema VideoUNet is (or was) patched over it."""
    current = model_patcher.get_model_object("diffusion_model")
    if isinstance(current, VideoUNet):
        return current.spatial
    return current


def check_base(model_patcher) -> UNetModel:
    base = model_patcher.model
    unet = spatial_unet(model_patcher)
    problems = []
    if not isinstance(unet, UNetModel) or type(unet) is not UNetModel:
        problems.append(f"its diffusion model is {type(unet).__name__}, not an SD UNet")
    elif getattr(unet, "in_channels", 4) != 4 or getattr(unet, "out_channels", 4) != 4:
        problems.append(f"its UNet takes {unet.in_channels} input channels (inpainting/other); 4 are needed")
    elif not isinstance(getattr(base, "latent_format", None), comfy.latent_formats.SD15):
        problems.append(f"its latent format is {type(base.latent_format).__name__}; SD1.x/SD2.x (SD15 format) needed")
    elif unet.num_classes is not None:
        problems.append("it is class/ADM-conditioned (SDXL, unCLIP...), not an SD1.x/SD2.x text-to-image UNet")
    if problems:
        raise IncompatibleBaseModel(
            f"MicroCinema needs an SD1.x or SD2.x model, but {type(base).__name__}: " + "; ".join(problems))
    return unet


def module_base(model_patcher) -> UNetModel:
    """What a module for this MODEL is built from (layout, AppearNet's encoder copy): the SD UNet's own layers
    with the checkpoint's weights, without what other packs injected or patched into the shared UNet."""
    return base_unet(check_base(model_patcher), model_patcher)


def new_module(model_patcher, cfg: ModuleConfig) -> MicroCinemaModule:
    """A fresh module for this base: zero temporal outputs, AppearNet copied from the base's encoder."""
    unet = module_base(model_patcher)
    dtype = model_patcher.model.get_dtype()
    with torch.no_grad():
        # Initialise in fp32 (init kernels do not exist for fp8), then store in the base model's dtype.
        module = build_module(unet, cfg, MODULE_OPERATIONS, dtype=torch.float32, device=model_patcher.offload_device)
        module.to(dtype=dtype)
    return module


def apply_module(model_patcher, module: MicroCinemaModule):
    """A clone of ``model_patcher`` that runs as the MicroCinema video model."""
    # The live UNet, not module_base's view: the video model must run the very layers LoRAs, object patches and
    # offloading of this MODEL act on. VideoUNet itself keeps to the SD children and blocks of it.
    unet = check_base(model_patcher)
    video = VideoUNet(unet, module, base=module_base(model_patcher))
    patched = model_patcher.clone()
    patched.add_object_patch("diffusion_model", video)
    # ModelPatcher caches its size; count the module so ComfyUI plans memory for it too.
    patched.size = model_patcher.model_size() + comfy.model_management.module_size(module)
    # Activation memory per frame grows by AppearNet (a second encoder pass) and the temporal layers; ComfyUI
    # reads this factor when it batches conds and plans memory for the loaded model.
    factor = MEMORY_FACTOR_APPEARNET if module.appearnet is not None else MEMORY_FACTOR_TEMPORAL
    patched.add_object_patch("memory_usage_factor", model_patcher.model.memory_usage_factor * factor)
    # ...but ComfyUI estimates a run before it applies object patches: size it with our factor (and per window).
    memory_estimate.install(patched)
    # ComfyUI's own context windows (newer releases) resize our per-video conds per window, or refuse clearly.
    stock_context.install(patched)
    # CFG functions set downstream (stock cfg ramps) see one video at a time, not the whole N*T-frame batch.
    per_video_cfg.install(patched)
    # Dynamic VRAM unloading restores weights by name after undoing object patches: ours go back before that.
    dynamic_vram.install(patched)
    # Video To Video scaled its noise prior for the sampler's first sigma: refuse a sampler set otherwise.
    prior_check.install(patched)
    return patched
