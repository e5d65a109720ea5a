"""ComfyUI's own context windows ("Context Windows (Manual)", ``model_options["context_handler"]``) on our MODEL.

The stock handler windows the sampler's batch along ``dim`` (0 for frames-in-batch models like ours) at the
calc_cond_batch level and slices every per-frame cond whose first dimension is the batch, so ``mc_hint`` and
``mc_strength`` already reach each window sliced (the hint holds the keyframe latent, its mask and each frame's
true offset, so every window sees the keyframe's appearance and where its frames sit in the whole video). What it
cannot know is that ``mc_num_frames`` (a CONDConstant) is the frame count of a video: we resize it per window
through the handler's own hook, a RESIZE_COND_ITEM callback (newer ComfyUI), registered at sampling time by a
PREPARE_SAMPLING wrapper that MicroCinema Apply Module / the checkpoint loader installs. The callback also slices
``mc_hint``/``mc_strength`` itself so that they follow the latent frame by frame when the handler puts retained
latent frames in a window (``latent_retain_index_list``; ``cond_retain_index_list`` would give a window position
another frame's offset than the latent there).

Refused up front, each with a message naming the stock node:
- a ComfyUI whose handler has no RESIZE_COND_ITEM hook (0.3.75): its windows cannot resize our conds (and its
  step lookup fails for a batch of frames) -> use MicroCinema Context Windows;
- ``dim`` other than 0 (our frames are batch entries);
- several videos in one batch: the stock windows run over the whole videos x frames axis and would put frames of
  two videos in one window;
- both the stock node and MicroCinema Context Windows on one MODEL.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Optional

import comfy.patcher_extension
import torch

from .conditioning import TEXT_FRAMES
from .memory_estimate import frames_in_conds
from .video_unet import CONTEXT_OPTION

log = logging.getLogger(__name__)

STOCK_NODE = "Context Windows (Manual)"
OUR_NODE = "MicroCinema Context Windows"
WRAPPER_KEY = "MicroCinema_stock_context"
CALLBACK_KEY = "MicroCinema_resize_cond"
PER_FRAME_CONDS = ("mc_hint", "mc_strength")


class StockContextError(ValueError):
    """Stock context windows that cannot run the MicroCinema model as set up; the message says what to change."""


def resize_hook() -> Optional[str]:
    """The running ComfyUI's RESIZE_COND_ITEM callback name, or None when its context windows have no such hook."""
    try:
        import comfy.context_windows as stock
    except ImportError:  # a ComfyUI without stock context windows
        return None
    return getattr(getattr(stock, "IndexListCallbacks", None), "RESIZE_COND_ITEM", None)


def _videos_in_conds(conds: dict, frames: int) -> int:
    """How many videos the conds were made for (their per-frame strength holds videos x frames entries)."""
    for entries in conds.values():
        for entry in entries or ():
            strength = (entry.get("model_conds") or {}).get("mc_strength")
            if strength is not None and torch.is_tensor(strength.cond):
                return max(1, strength.cond.shape[0] // frames)
    return 1


def _several_videos(videos: int, frames: int) -> StockContextError:
    return StockContextError(
        f"{STOCK_NODE} cannot window a batch of {videos} MicroCinema videos: it windows the whole batch of "
        f"{videos} x {frames} frames as one sequence, so a window would hold frames of two videos. Sample one "
        f"video at a time with it, or use '{OUR_NODE}' (it windows each video of a batch on its own).")


def check(handler: Any, transformer_options: dict, frames: Optional[int], batch: int, videos: int) -> None:
    """StockContextError when ``handler`` (model_options["context_handler"]) cannot window this run of our model."""
    if transformer_options.get(CONTEXT_OPTION) is not None:
        raise StockContextError(
            f"Both '{OUR_NODE}' and ComfyUI's '{STOCK_NODE}' are set on this MicroCinema MODEL; windows inside "
            "windows only cost time. Keep one of them.")
    if frames is None:
        return  # not a MicroCinema run (no Image To Video conds): the model itself reports what is missing
    dim = getattr(handler, "dim", None)
    if dim != 0:
        raise StockContextError(
            f"{STOCK_NODE}: input 'dim' must be 0 for the MicroCinema model (its frames are entries of the batch), "
            f"got {dim!r}; other video nodes' context windows (Wan, LTXV: dim 2) do not fit it.")
    length = getattr(handler, "context_length", None)
    if not isinstance(length, int) or batch <= length:
        return  # the handler will not window this run (ComfyUI checks the same before it windows)
    if resize_hook() is None or not isinstance(getattr(handler, "callbacks", None), dict):
        raise StockContextError(
            f"{STOCK_NODE} of this ComfyUI cannot window the MicroCinema model: it has no hook to resize a model's "
            f"per-video conditioning for each window (added in later ComfyUI releases). Use '{OUR_NODE}' instead "
            "(same schedules and fuse methods, on every ComfyUI version), or update ComfyUI.")
    if videos > 1:
        raise _several_videos(videos, frames)


def register(handler: Any) -> None:
    """Put our RESIZE_COND_ITEM callback on the handler (once; replacing an earlier registration of ours)."""
    hook = resize_hook()
    callbacks = handler.callbacks.setdefault("callbacks", {}).setdefault(hook, {})
    callbacks.pop(CALLBACK_KEY, None)
    comfy.patcher_extension.add_callback_with_key(hook, CALLBACK_KEY, functools.partial(resize_cond_item, handler),
                                                  handler.callbacks)


def resize_cond_item(handler: Any, cond_key: str, cond_value: Any, window: Any, x_in: torch.Tensor, device,
                     cond_dict: dict) -> Any:
    """Our conds for one window (the handler's RESIZE_COND_ITEM callback); None leaves an item to ComfyUI."""
    if cond_key not in ("mc_num_frames", TEXT_FRAMES) and cond_key not in PER_FRAME_CONDS:
        return None
    total = x_in.shape[handler.dim]
    if cond_key == TEXT_FRAMES:
        # Text contexts per video: ComfyUI slices a per-frame context (Prompt Travel's) like the latent and repeats
        # a one-row one, so either way the window holds as many as it holds frames.
        return cond_value._copy_with(int(window.get_tensor(torch.arange(total)).shape[0]))
    if cond_key == "mc_num_frames":
        frames = int(cond_value.cond)
        if total != frames:  # the up-front check saw the conds; this is what the handler really windows
            raise _several_videos(max(1, total // max(frames, 1)), frames)
        # The frames the window hands the model: its index list, plus any frame the handler adds (newer ComfyUI's
        # causal_window_fix prepends the frame before the window), counted the way the handler slices the latent.
        held = window.get_tensor(torch.arange(total))
        return cond_value._copy_with(int(held.shape[0]))
    tensor = getattr(cond_value, "cond", None)
    if not torch.is_tensor(tensor) or tensor.ndim == 0 or tensor.shape[0] != total:
        return None
    retain = list(getattr(handler, "latent_retain_index_list", None) or [])
    # The same frames as the latent, position by position (retained latent frames included).
    # (older hooked releases' get_tensor has no retain_index_list; it is only passed when there is one)
    sliced = window.get_tensor(tensor, device, retain_index_list=retain) if retain else \
        window.get_tensor(tensor, device)
    return cond_value._copy_with(sliced)


def _prepare_sampling(executor, model, noise_shape, conds, *args, **kwargs):
    model_options = kwargs.get("model_options") or {}
    handler = model_options.get("context_handler")
    if handler is not None:
        frames = frames_in_conds(conds)
        videos = _videos_in_conds(conds, frames) if frames else 1
        # Not noise_shape: other PREPARE_SAMPLING wrappers rescale it for memory estimates (the stock one cuts it to
        # one window, ours scales it by the memory factor); the conds know the whole batch.
        batch = videos * (frames or 0)
        check(handler, model_options.get("transformer_options", {}), frames, batch, videos)
        if frames is not None and resize_hook() is not None and isinstance(getattr(handler, "callbacks", None), dict):
            register(handler)
    return executor(model, noise_shape, conds, *args, **kwargs)


def install(model_patcher) -> None:
    """Let stock context windows (where the running ComfyUI supports them) run this MicroCinema MODEL."""
    model_patcher.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREPARE_SAMPLING, WRAPPER_KEY,
                                       _prepare_sampling)


def frames_held(model_patcher, length: int) -> Optional[int]:
    """Frames the UNet holds at once under the stock handler on this MODEL (a window, plus the frame newer
    ComfyUI's causal_window_fix adds), or None when there is none."""
    handler = (getattr(model_patcher, "model_options", None) or {}).get("context_handler")
    window = getattr(handler, "context_length", None)
    if handler is None or getattr(handler, "dim", None) != 0 or not isinstance(window, int):
        return None
    return min(length, window + int(bool(getattr(handler, "causal_window_fix", False))))
