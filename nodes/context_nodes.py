"""MicroCinema Context Windows: long videos with bounded memory, on any ComfyUI version."""
from __future__ import annotations

from comfy_api.latest import io

from ..microcinema_core.context_windows import FUSE_METHODS, SCHEDULES, ContextSettings
from ..microcinema_core.video_unet import CONTEXT_OPTION

NODE = "MicroCinema Context Windows"


def check_widgets(context_length=None, context_overlap=None, context_schedule=None, fuse_method=None) -> str | None:
    """The first problem among these values as a message naming the node and the input, or None (None values:
    fed by links, unknown before the run)."""
    for name, value in (("context_length", context_length), ("context_overlap", context_overlap)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            return f"{NODE}: input '{name}' must be a whole number, got {value!r}"
    if context_length is not None and not 2 <= context_length <= 256:
        return f"{NODE}: input 'context_length' must be between 2 and 256, got {context_length}"
    if context_overlap is not None:
        top = context_length - 1 if context_length is not None else 255
        if not 0 <= context_overlap <= top:
            return (f"{NODE}: input 'context_overlap' must be between 0 and context_length - 1 ({top}), "
                    f"got {context_overlap}")
    if context_schedule is not None and context_schedule not in SCHEDULES:
        return f"{NODE}: input 'context_schedule' must be one of {', '.join(SCHEDULES)}, got {context_schedule!r}"
    if fuse_method is not None and fuse_method not in FUSE_METHODS:
        return f"{NODE}: input 'fuse_method' must be one of {', '.join(FUSE_METHODS)}, got {fuse_method!r}"
    return None


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
    def validate_inputs(cls, context_length=None, context_overlap=None, context_schedule=None, fuse_method=None):
        # The inputs named here lose ComfyUI's built-in checks (and 0.3.x does not check V3 combo options), so they
        # are checked here; None means fed by a link, checked in execute.
        return check_widgets(context_length, context_overlap, context_schedule, fuse_method) or True

    @classmethod
    def execute(cls, model, context_length, context_overlap, context_schedule, context_stride, closed_loop,
                fuse_method, keep_keyframe) -> io.NodeOutput:
        problem = check_widgets(context_length, context_overlap, context_schedule, fuse_method)
        if problem or context_stride < 1:
            raise ValueError(problem or f"{NODE}: input 'context_stride' must be at least 1, got {context_stride}")
        settings = ContextSettings(context_length, context_overlap, context_schedule, context_stride, closed_loop,
                                   fuse_method, keep_keyframe)
        settings.validate()
        patched = model.clone()
        options = patched.model_options.setdefault("transformer_options", {})
        options[CONTEXT_OPTION] = settings
        return io.NodeOutput(patched)
