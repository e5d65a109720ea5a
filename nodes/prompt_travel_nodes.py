"""MicroCinema Prompt Travel: prompts keyed at frames -> CONDITIONING with one text context per frame."""
from __future__ import annotations

from comfy_api.latest import io

from ..microcinema_core import prompt_travel
from .image_to_video_nodes import MAX_FRAMES
from .inputs import Combo, Int, Widgets

NODE = prompt_travel.NODE
SCHEDULE_HELP = (
    "One key per line, 'FRAME: prompt', e.g.\n0: a red circle moving left\n8: a red circle moving right\n"
    "FRAME is 0-based and below 'length'; the prompt is everything after the first colon (empty = the empty "
    "prompt). Blank lines and lines starting with # are ignored; keys may come in any order, each frame once. "
    "Frames before the first key hold the first prompt, frames after the last key hold the last one; between two "
    "keys the prompts' encodings are mixed as 'interpolation' says. A single prompt gives exactly CLIP Text "
    "Encode's output.")


WIDGETS = Widgets(
    NODE,
    Int("length", 16, 1, MAX_FRAMES, "Frames per video: set the same 'length' as on MicroCinema Image To Video (the "
        "model refuses another one)."),
    Combo("interpolation", list(prompt_travel.INTERPOLATIONS), "linear", "Between two keys: linear mixes the two "
          "encodings in proportion to the distance; smooth eases in and out of each key (cosine); hold keeps the "
          "earlier prompt until the next key (a cut)."),
)


def schedule_problem(schedule, length: int = MAX_FRAMES) -> str | None:
    try:
        prompt_travel.parse_schedule(schedule, length)
    except prompt_travel.ScheduleError as error:
        return str(error)
    return None


class MicroCinemaPromptTravel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroCinemaPromptTravel",
            display_name=NODE,
            category="MicroCinema/conditioning",
            description="Prompts at chosen frames become one text context per frame, mixed between the keyed "
            "prompts, so each frame of the video sees its own prompt. Connect it to 'positive' (or 'negative') of "
            "MicroCinema Image To Video with the same length; works with the stock samplers, several videos and "
            "MicroCinema Context Windows.",
            inputs=[
                io.Clip.Input("clip", tooltip="The CLIP text encoder (as for CLIP Text Encode)."),
                io.String.Input("schedule", multiline=True, default="0: a red circle moving left\n"
                                "8: a red circle moving right", tooltip=SCHEDULE_HELP),
                WIDGETS.input("length"),
                WIDGETS.input("interpolation"),
            ],
            outputs=[io.Conditioning.Output(tooltip="Text conditioning with one context per frame "
                                            "([length, tokens, dim]), for MicroCinema Image To Video.")],
        )

    @classmethod
    def validate_inputs(cls, schedule=None):
        # Names only the schedule (see nodes/inputs.py: ComfyUI reports the returned text once per named input and
        # stops range-checking those inputs). Its syntax is checked here, before the run, against the largest
        # length; frames beyond the actual length, values fed by links and (on 0.3.x) the interpolation combo are
        # checked in execute.
        return (schedule_problem(schedule) if schedule is not None else None) or True

    @classmethod
    def execute(cls, clip, schedule, length, interpolation) -> io.NodeOutput:
        if clip is None:
            raise ValueError(f"{NODE}: input 'clip' is empty (the checkpoint has no text encoder?)")
        WIDGETS.check({"length": length, "interpolation": interpolation})
        return io.NodeOutput(prompt_travel.travel_conditioning(clip, schedule, length, interpolation))
