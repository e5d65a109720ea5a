"""MicroCinema Motion Amount: scales what the temporal layers add, per clip or per frame (motion_amount.py)."""
from __future__ import annotations

from comfy_api.latest import io

from ..microcinema_core.motion_amount import MAX_AMOUNT, MOTION_OPTION, MotionSettings, ScheduleError, parse_schedule
from ..microcinema_core.video_unet import VideoUNet
from .inputs import Float, Widgets

NODE = "MicroCinema Motion Amount"

WIDGETS = Widgets(
    NODE,
    Float("motion_amount", 1.0, 0.0, MAX_AMOUNT, 0.05, "Factor on every temporal layer's contribution (and on the "
          "text sign's motion cue). 1: as trained; 0: no motion signal (frame by frame with the keyframe's "
          "appearance); above 1 exaggerates the motion (the image degrades; see docs/benchmarks.md). Multiplies the "
          "schedule when one is given."),
)


def schedule_problem(schedule) -> str | None:
    """What is wrong with a schedule string, as a message naming the node and the input, or None."""
    try:
        parse_schedule(schedule)
    except ScheduleError as exc:
        return f"{NODE}: input 'schedule': {exc}"
    return None


class MicroCinemaMotionAmount(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroCinemaMotionAmount",
            display_name=NODE,
            category="MicroCinema",
            description="Scales how much the temporal layers (temporal convolutions and motion modules, in the video "
            "UNet and in AppearNet) add, and the text sign's motion cue: 1 is the trained model, 0 makes every "
            "frame the image model with AppearNet's appearance, frame by frame. An optional schedule sets the "
            "amount per frame.",
            inputs=[
                io.Model.Input("model", tooltip="The MicroCinema video MODEL (from Apply Module or the checkpoint "
                               "loader; LoRAs and context windows may come before or after this node)."),
                WIDGETS.input("motion_amount"),
                io.String.Input("schedule", default="", multiline=False, tooltip="Optional per-frame amounts as "
                                "frame:value pairs, e.g. '0:1.0, 8:0.2' (frames counted from 0 in the whole video, "
                                "also with context windows; linear in between, held before the first and after the "
                                f"last point; values 0 to {MAX_AMOUNT:g}; the same for every video of a batch). "
                                "Empty: motion_amount for every frame."),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def validate_inputs(cls, schedule=None):
        # Only the schedule is named here (ComfyUI reports the message once per named input and range-checks
        # motion_amount itself, NaN included: inputs.Limit). None: fed by a link, checked in execute.
        return (schedule_problem(schedule) if schedule is not None else None) or True

    @classmethod
    def execute(cls, model, motion_amount: float, schedule: str = "") -> io.NodeOutput:
        # values fed by links arrive here unchecked
        problems = WIDGETS.problems({"motion_amount": motion_amount}) + [p for p in [schedule_problem(schedule)] if p]
        if problems:
            raise ValueError("\n".join(problems))
        if not isinstance(model.get_model_object("diffusion_model"), VideoUNet):
            raise ValueError(f"{NODE}: input 'model' is not a MicroCinema video model; connect the MODEL of "
                             "'MicroCinema Apply Module' or 'MicroCinema Checkpoint Loader'.")
        settings = MotionSettings(float(motion_amount), parse_schedule(schedule))
        patched = model.clone()
        # transformer_options are copied with the clone and reach the diffusion model on every sampler call
        patched.model_options.setdefault("transformer_options", {})[MOTION_OPTION] = settings
        return io.NodeOutput(patched)
