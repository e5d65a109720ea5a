"""MicroCinema Context Windows: long videos with bounded memory, on any ComfyUI version."""
from __future__ import annotations

import logging

from comfy_api.latest import io

from ..microcinema_core.context_windows import (DEPRECATED_SCHEDULES, FUSE_METHODS, SCHEDULE_OPTIONS, SCHEDULES,
                                                ContextSettings)
from ..microcinema_core.video_unet import CONTEXT_OPTION
from .inputs import Combo, Int, Widgets

NODE = "MicroCinema Context Windows"

log = logging.getLogger(__name__)


def _overlap_below_length(values: dict) -> str | None:
    length, overlap = values.get("context_length"), values.get("context_overlap")
    if length is not None and overlap is not None and overlap >= length:
        return (f"{NODE}: input 'context_overlap' must be between 0 and context_length - 1 ({length - 1}), "
                f"got {overlap}")
    return None


WIDGETS = Widgets(
    NODE,
    Int("context_length", 16, 2, 256, "Frames per window: the clip length the model was trained on (16 for the "
        "paper's models)."),
    Int("context_overlap", 4, 0, 255, "Frames shared by neighbouring windows; more overlap gives smoother seams "
        "and costs more steps."),
    Combo("context_schedule", list(SCHEDULE_OPTIONS), "standard_static",
          "How windows are laid out, as ComfyUI's 'Context Windows (Manual)' names them: standard_static (fixed "
          "windows every length - overlap frames), standard_uniform (AnimateDiff's uniform schedule: the windows "
          "shift every sampling step so seams move; dilated windows when stride > 1), looped_uniform (the same, "
          "wrapping from the end to the start, for looping clips), batched (non-overlapping chunks). Deprecated "
          "names, kept for saved workflows: " + ", ".join(
              f"{old} = {new}" for old, new in DEPRECATED_SCHEDULES.items()) + ".",
          options_text="one of " + ", ".join(SCHEDULES)),
    Int("context_stride", 1, 1, 8, "Uniform schedules: also use windows whose frames are 2, 4, ... frames apart "
        "(more global coherence)."),
    Combo("fuse_method", list(FUSE_METHODS), "pyramid", "How overlapping windows are averaged per frame: pyramid, "
          "flat, relative and overlap-linear as in ComfyUI's context windows, gaussian (ours)."),
    rules=[_overlap_below_length],
)


class MicroCinemaContextWindows(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroCinemaContextWindows",
            display_name=NODE,
            category="MicroCinema/long video",
            description="Samples videos longer than the model's clip length through overlapping windows of frames "
            "inside the MicroCinema model (works with every sampler; the keyframe appearance, the noise prior and "
            "per-frame ControlNet hints reach every window). Memory follows the window length, not the video length. "
            "Schedules and fuse methods carry the names and meaning of ComfyUI's 'Context Windows (Manual)'.",
            inputs=[
                io.Model.Input("model", tooltip="The MicroCinema video MODEL (from Apply Module or the loader)."),
                WIDGETS.input("context_length"),
                WIDGETS.input("context_overlap"),
                WIDGETS.input("context_schedule"),
                WIDGETS.input("context_stride"),
                io.Boolean.Input("closed_loop", default=False, tooltip="looped_uniform only: also the window that "
                                 "closes the loop from the end back to the start (as in ComfyUI)."),
                WIDGETS.input("fuse_method"),
                io.Boolean.Input("keep_keyframe", default=True, tooltip="Put the keyframe frame in every window so "
                                 "each window sees the keyframe in place."),
            ],
            outputs=[io.Model.Output()],
        )

    validate_inputs = WIDGETS.validator()

    @classmethod
    def execute(cls, model, context_length, context_overlap, context_schedule, context_stride, closed_loop,
                fuse_method, keep_keyframe) -> io.NodeOutput:
        # values that came through links were not validated before the run
        WIDGETS.check({"context_length": context_length, "context_overlap": context_overlap,
                       "context_schedule": context_schedule, "context_stride": context_stride,
                       "fuse_method": fuse_method})
        settings = ContextSettings(context_length, context_overlap, context_schedule, context_stride, closed_loop,
                                   fuse_method, keep_keyframe)
        settings.validate()
        if context_schedule in DEPRECATED_SCHEDULES:
            log.warning("%s: context_schedule %r is a deprecated name of %r (its windows now shift every step as "
                        "ComfyUI's do when it is a uniform schedule)", NODE, context_schedule, settings.schedule)
        if closed_loop and settings.schedule != "looped_uniform":
            log.warning("%s: closed_loop only applies to looped_uniform; ignored for %s", NODE, settings.schedule)
        patched = model.clone()
        options = patched.model_options.setdefault("transformer_options", {})
        options[CONTEXT_OPTION] = settings
        return io.NodeOutput(patched)
