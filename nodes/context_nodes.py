"""MicroCinema Context Windows: long videos with bounded memory, on any ComfyUI version."""
from __future__ import annotations

from comfy_api.latest import io

from ..microcinema_core.context_windows import FUSE_METHODS, SCHEDULES, ContextSettings
from ..microcinema_core.video_unet import CONTEXT_OPTION

NODE = "MicroCinema Context Windows"


class MicroCinemaContextWindows(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroCinemaContextWindows",
            display_name=NODE,
            category="MicroCinema/long video",
            description="Samples videos longer than the model's clip length through overlapping windows of frames "
            "inside the MicroCinema model (works with every sampler; the keyframe appearance, the noise prior and "
            "per-frame ControlNet hints reach every window). Memory follows the window length, not the video length.",
            inputs=[
                io.Model.Input("model", tooltip="The MicroCinema video MODEL (from Apply Module or the loader)."),
                io.Int.Input("context_length", default=16, min=2, max=256, tooltip="Frames per window: the clip "
                             "length the model was trained on (16 for the paper's models)."),
                io.Int.Input("context_overlap", default=4, min=0, max=255, tooltip="Frames shared by neighbouring "
                             "windows; more overlap gives smoother seams and costs more steps."),
                io.Combo.Input("context_schedule", options=list(SCHEDULES), default="static_standard",
                               tooltip="How windows are laid out: fixed steps, AnimateDiff's uniform schedule (with "
                               "dilated windows when stride > 1), looped (wraps around), or non-overlapping batches."),
                io.Int.Input("context_stride", default=1, min=1, max=8, tooltip="Uniform schedules: also use windows "
                             "whose frames are 2, 4, ... frames apart (more global coherence)."),
                io.Boolean.Input("closed_loop", default=False, tooltip="Add a window across the end and the start, "
                                 "for looping clips."),
                io.Combo.Input("fuse_method", options=list(FUSE_METHODS), default="pyramid",
                               tooltip="How overlapping windows are averaged per frame."),
                io.Boolean.Input("keep_keyframe", default=True, tooltip="Put the keyframe frame in every window so "
                                 "each window sees the keyframe in place."),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def validate_inputs(cls, context_length: int, context_overlap: int):
        if not 2 <= context_length <= 256:
            return f"{NODE}: input 'context_length' must be between 2 and 256, got {context_length}"
        if not 0 <= context_overlap < context_length:
            return (f"{NODE}: input 'context_overlap' must be between 0 and context_length - 1 "
                    f"({context_length - 1}), got {context_overlap}")
        return True

    @classmethod
    def execute(cls, model, context_length, context_overlap, context_schedule, context_stride, closed_loop,
                fuse_method, keep_keyframe) -> io.NodeOutput:
        settings = ContextSettings(context_length, context_overlap, context_schedule, context_stride, closed_loop,
                                   fuse_method, keep_keyframe)
        settings.validate()
        patched = model.clone()
        options = patched.model_options.setdefault("transformer_options", {})
        options[CONTEXT_OPTION] = settings
        return io.NodeOutput(patched)
