"""Guidance functions applied per video, not per batch (issue 17 part 3).

ComfyUI calls ``model_options["sampler_cfg_function"]`` and every ``sampler_post_cfg_function`` once per step on the
whole latent batch. For MicroCinema that batch is ``N videos x T frames``, so a function that treats the batch axis
as time (the stock VideoLinearCFGGuidance / VideoTriangleCFGGuidance ramps: ``linspace`` over ``cond.shape[0]``)
ramps across all N*T frames, and one that reduces over the batch (Mahiro's mean similarity) couples the videos.

A PREDICT_NOISE wrapper on our MODEL hands the guider, for that step only, model options whose cfg and post-cfg
functions run once per video: every tensor argument whose first axis is the batch is sliced to the video's T frames,
the results are concatenated. It reads whatever functions are set when the step runs, so functions added by nodes
downstream of ours (the usual order: Apply Module -> CFG ramp -> KSampler) are covered.
- One video (or T unknown, or a batch that is not a multiple of T): the options are passed on untouched, so the run
  is exactly ComfyUI's.
- Elementwise functions (plain CFG, rescaling by a constant) give bitwise the same result split or not.
- Functions that run the model themselves (PAG, SAG, SLG, the old PerpNeg node) must see the whole batch: the conds
  they pass (hint, strength per frame, ControlNet images) are batch-sized and ComfyUI would silently take the first
  video's rows for a one-video slice (and a ControlNet would keep the slice's hint images). CALC_COND_BATCH and
  APPLY_MODEL wrappers stop such a call before anything is computed or cached; the function is then called once on
  the whole batch (ComfyUI's behaviour) and remembered, so later steps skip the attempt.
- ``sampler_pre_cfg_function`` entries are left alone: the stock ones are per element (TCFG, FreSca) or keep a
  momentum buffer between calls (APG), which per-video calls would mix between videos.
Known limit: a cfg/post-cfg function that keeps state between calls (no stock one does) would see the videos in turn.
"""
from __future__ import annotations

import logging
import weakref
from typing import Any, Callable

import comfy.patcher_extension
import torch

from .memory_estimate import frames_in_conds

log = logging.getLogger(__name__)

WRAPPER_KEY = "MicroCinema_per_video_cfg"

CfgFunction = Callable[[dict], torch.Tensor]


class _ModelCalledInSlice(Exception):
    """Raised by the APPLY_MODEL guard: the guidance function being split runs the model itself."""


class _Guard:
    """Whether a per-video slice call is in progress. A plain object, not thread-local: ComfyUI runs one prompt at a
    time, and newer releases run a batch's model calls on worker threads (multi-GPU) that must see the flag."""
    active: bool = False
    model_called: bool = False


_guard = _Guard()
# Functions seen running the model: called on the whole batch from then on (weak: they die with their MODEL).
_whole_batch_functions: "weakref.WeakSet[Callable]" = weakref.WeakSet()


def video_slices(batch: int, frames: int | None) -> list[slice] | None:
    """The batch rows of each video, or None when there is nothing to split (one video, T unknown, odd batch)."""
    if not frames or frames <= 0 or batch % frames or batch // frames < 2:
        return None
    return [slice(start, start + frames) for start in range(0, batch, frames)]


def slice_args(args: dict, part: slice, batch: int) -> dict:
    """``args`` with every tensor whose first axis is the batch cut to ``part``; conds, model, scale kept as is."""
    return {key: value[part] if torch.is_tensor(value) and value.ndim > 0 and value.shape[0] == batch else value
            for key, value in args.items()}


def _call_guarded(fn: CfgFunction, args: dict) -> torch.Tensor | None:
    """``fn(args)``, or None when it tried to run the model (its result would be wrong for a slice)."""
    previous = (_guard.active, _guard.model_called)
    _guard.active, _guard.model_called = True, False
    try:
        out = fn(args)
    except _ModelCalledInSlice:
        out = None
    finally:
        called = _guard.model_called
        _guard.active, _guard.model_called = previous
    # also None when the function caught our exception itself and carried on
    return None if called else out


def _needs_whole_batch(fn: Callable) -> bool:
    try:
        return fn in _whole_batch_functions
    except TypeError:  # not weak-referenceable or not hashable: never remembered
        return False


def _remember_whole_batch(fn: Callable) -> None:
    try:
        _whole_batch_functions.add(fn)
    except TypeError:
        pass


def per_video(fn: CfgFunction, frames: int) -> CfgFunction:
    """``fn`` applied to each video's frames in turn (see the module docstring)."""

    def run(args: dict) -> torch.Tensor:
        batch = args["input"].shape[0]
        parts = video_slices(batch, frames)
        if parts is None or _needs_whole_batch(fn):
            return fn(args)
        outs = []
        for part in parts:
            out = _call_guarded(fn, slice_args(args, part, batch))
            if out is None:
                _remember_whole_batch(fn)
                log.info("MicroCinema: guidance function %s runs the model itself; it gets the whole batch of "
                         "videos at once (as in stock ComfyUI)", getattr(fn, "__qualname__", fn))
                return fn(args)
            outs.append(out)
        return torch.cat(outs)

    run.microcinema_per_video = fn  # what it wraps (tests, debugging)
    return run


def options_per_video(model_options: dict, frames: int | None, batch: int) -> dict:
    """Model options for one step whose cfg and post-cfg functions run per video. The same dict object when nothing
    changes (one video, no such function), so that case stays exactly ComfyUI's."""
    cfg = model_options.get("sampler_cfg_function")
    post = model_options.get("sampler_post_cfg_function") or []
    if video_slices(batch, frames) is None or (cfg is None and not post):
        return model_options
    options = dict(model_options)  # shallow: transformer_options and the rest stay the very same objects
    if cfg is not None:
        options["sampler_cfg_function"] = per_video(cfg, frames)
    if post:
        options["sampler_post_cfg_function"] = [per_video(fn, frames) for fn in post]
    return options


def _predict_noise(executor, x, timestep, model_options: dict | None = None, seed=None, *args: Any, **kwargs: Any):
    guider = executor.class_obj
    frames = frames_in_conds(getattr(guider, "conds", None) or {})
    if model_options is not None:
        model_options = options_per_video(model_options, frames, x.shape[0])
    return executor(x, timestep, model_options if model_options is not None else {}, seed, *args, **kwargs)


def _model_call_guard(executor, *args: Any, **kwargs: Any):
    # Before calc_cond_batch touches anything (ControlNets cache their hint at the batch size they are asked for)
    # and before the model runs: a per-video slice must never reach the model.
    if _guard.active:
        _guard.model_called = True
        raise _ModelCalledInSlice()
    return executor(*args, **kwargs)


def install(model_patcher) -> None:
    """Register the wrappers on a MicroCinema MODEL (patching.apply_module)."""
    kinds = comfy.patcher_extension.WrappersMP
    model_patcher.add_wrapper_with_key(kinds.PREDICT_NOISE, WRAPPER_KEY, _predict_noise)
    model_patcher.add_wrapper_with_key(kinds.CALC_COND_BATCH, WRAPPER_KEY, _model_call_guard)
    model_patcher.add_wrapper_with_key(kinds.APPLY_MODEL, WRAPPER_KEY, _model_call_guard)
