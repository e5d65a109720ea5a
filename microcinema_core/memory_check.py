"""Refuse, before any work starts, a video that cannot fit in memory, naming the input at fault.

The nodes allow up to 4096 frames and 8192x8192 pixels; an input beyond what the device holds used to run for
minutes and then die inside KSampler with a raw allocation error (or, on CPU, with no error at all until the
machine swapped). Here the memory a run needs is compared with what ComfyUI says is free, up front.

The figure is a *lower bound* on the UNet's activations, not ComfyUI's sizing estimate (``memory_required``, which
is deliberately generous so that it offloads enough): refusing on a generous figure would refuse runs that work.
One SD UNet forward keeps the skip connections of every input block alive until the output blocks use them: for
SD1.x/2.x (channel_mult 1, 2, 4, 4; two ResBlocks per level) that is 1620 values per latent pixel per frame for
320 model channels, ~5 x model_channels, plus the working tensors of the level being computed (~3 x
model_channels). ``ACTIVATION_VALUES_PER_CHANNEL`` = 8 therefore undercounts a real run; anything refused here
would have failed.

The keyframe VAE encode is bounded differently: ComfyUI's tiled encode keeps it within a few tiles of memory, and
``encode_keyframes`` switches to it when ComfyUI's own estimate of a whole encode exceeds the free memory (on CPU
nothing else would stop a whole 8192x8192 encode; on GPUs it saves the out-of-memory retry).
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

GIB = 2**30
IMAGE_TO_VIDEO = "MicroCinema Image To Video"  # sampling.IMAGE_TO_VIDEO (sampling imports this module)
SD_MODEL_CHANNELS = 320  # SD1.x and SD2.x UNets, the only family MicroCinema inflates
ACTIVATION_VALUES_PER_CHANNEL = 8  # lower bound on live activations per latent pixel per frame, x model channels
MIN_FRAMES_HELD = 2  # the keyframe and one frame: the least any run (windowed or not) puts through the UNet
CONTEXT_WINDOWS_HINT = "use MicroCinema Context Windows for long videos"


def _size(nbytes: float) -> str:
    return f"{nbytes / GIB:.1f} GiB" if nbytes >= GIB / 10 else f"{nbytes / 2**20:.0f} MiB"


def activation_bytes(frames: int, latent_height: int, latent_width: int, model_channels: int = SD_MODEL_CHANNELS,
                     dtype_size: int | None = None) -> int:
    """Lower bound on one UNet forward's activations over ``frames`` latent frames (one of cond/uncond)."""
    import comfy.model_management

    if dtype_size is None:
        dtype_size = comfy.model_management.dtype_size(comfy.model_management.unet_dtype())
    return frames * latent_height * latent_width * model_channels * ACTIVATION_VALUES_PER_CHANNEL * dtype_size


def available_bytes(device: torch.device | None = None) -> int:
    """What a run can get on ``device``: ComfyUI's free memory, plus on an accelerator the models ComfyUI would
    offload to make room (on CPU they stay in the same RAM, so they free nothing)."""
    import comfy.model_management as mm

    device = device if device is not None else mm.get_torch_device()
    free = int(mm.get_free_memory(device))
    if torch.device(device).type != "cpu":
        free += sum(int(loaded.model_loaded_memory()) for loaded in list(mm.current_loaded_models)
                    if loaded.device == device)
    return free


def check_fits(node: str, *, width: int, height: int, frames_held: int, length: int,
               model_channels: int = SD_MODEL_CHANNELS, dtype_size: int | None = None,
               device: torch.device | None = None) -> None:
    """ValueError naming ``node`` and the input at fault when the UNet's activations over ``frames_held`` frames
    at width x height cannot fit: 'width'/'height' when even the keyframe and one frame cannot, else 'length'."""
    latent_h, latent_w = max(1, height // 8), max(1, width // 8)
    available = available_bytes(device)
    least = activation_bytes(min(MIN_FRAMES_HELD, frames_held), latent_h, latent_w, model_channels, dtype_size)
    if least > available:
        raise ValueError(f"{node}, input 'width'/'height': a {width}x{height} video needs about "
                         f"{_size(least)} even for the keyframe and one frame, {_size(available)} free; lower width "
                         "and height")
    needed = activation_bytes(frames_held, latent_h, latent_w, model_channels, dtype_size)
    if needed > available:
        held = f"{frames_held} frames at a time" if frames_held < length else f"{length} frames"
        raise ValueError(f"{node}, input 'length': sampling {held} at {width}x{height} needs about "
                         f"{_size(needed)}, {_size(available)} free; {CONTEXT_WINDOWS_HINT}")


def check_video_inputs(node: str, *, width: int, height: int, length: int) -> None:
    """What Image To Video can check without the model: whether width x height fits at all. The model (and any
    context windows on it) is only known to the sampler, which checks 'length' (``check_sampling``)."""
    check_fits(node, width=width, height=height, frames_held=MIN_FRAMES_HELD, length=length)


def frames_held(model_patcher, length: int) -> int:
    """Frames the UNet holds at once: a context window (plus the keyframe) when windows are set, else all."""
    from .video_unet import CONTEXT_OPTION

    options = getattr(model_patcher, "model_options", None) or {}
    settings = (options.get("transformer_options") or {}).get(CONTEXT_OPTION)
    if settings is None:
        from .stock_context import frames_held as stock_frames_held  # ComfyUI's own windows (newer releases)

        stock = stock_frames_held(model_patcher, length)
        return length if stock is None else stock
    return min(length, settings.length + int(settings.keep_keyframe))


def check_sampling(node: str, model_patcher, *, length: int, latent_height: int, latent_width: int,
                   videos: int = 1) -> None:
    """ValueError before sampling when the video model's activations over the frames it holds at once (for each of
    ``videos`` videos in the batch) cannot fit on its device."""
    import comfy.model_management

    model = getattr(model_patcher, "model", None)
    if model is None or not hasattr(model, "get_dtype"):
        return  # not a ComfyUI model patcher (a test double): nothing to size
    unet_config = getattr(getattr(model, "model_config", None), "unet_config", None) or {}
    dtype = getattr(model, "manual_cast_dtype", None) or model.get_dtype()
    check_fits(node, width=latent_width * 8, height=latent_height * 8, frames_held=videos * frames_held(model_patcher, length),
               length=videos * length, model_channels=int(unet_config.get("model_channels", SD_MODEL_CHANNELS)),
               dtype_size=comfy.model_management.dtype_size(dtype),
               device=getattr(model_patcher, "load_device", None))


def encode_keyframes(vae, pixels: torch.Tensor) -> torch.Tensor:
    """``vae.encode(pixels)``, or ComfyUI's tiled encode when its estimate of a whole encode exceeds free memory."""
    import comfy.model_management

    shape = pixels.movedim(-1, 1).shape  # memory_used_encode takes [B, C, H, W]
    estimate = getattr(vae, "memory_used_encode", None)
    if estimate is not None and hasattr(vae, "encode_tiled"):
        needed = estimate(shape, getattr(vae, "vae_dtype", torch.float32))
        free = comfy.model_management.get_free_memory(getattr(vae, "device", None))
        if needed > free:
            log.info("keyframe %dx%d: a whole VAE encode needs about %.1f GiB, %.1f GiB free; encoding in tiles",
                     shape[-1], shape[-2], needed / GIB, free / GIB)
            if torch.is_inference_mode_enabled():  # as ComfyUI runs nodes
                return vae.encode_tiled(pixels)
            # ComfyUI's tiled encode accumulates in place, which plain no-grad tensors outside inference mode
            # refuse; the clone hands back an ordinary tensor to callers outside it (validation, benchmarks)
            with torch.inference_mode():
                latent = vae.encode_tiled(pixels)
            return latent.clone()
    return vae.encode(pixels)
