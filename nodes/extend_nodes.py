"""Extending a clip round by round: MicroCinema Last Frame (the next round's keyframe) and MicroCinema Extend
Video (the join without the repeated frame). Sampling in each round is an ordinary Image To Video + KSampler run
over one clip, so sampling memory stays that of one clip; only the joined IMAGE grows."""
from __future__ import annotations

from comfy_api.latest import io

from ..microcinema_core import extend
from .inputs import Int, Widgets

MAX_VIDEOS = 4096
VIDEOS_TOOLTIP = ("How many videos the IMAGE batches hold, one after another (one per keyframe given to Image To "
                  "Video).")
VIDEOS = Int("videos", 1, 1, MAX_VIDEOS, VIDEOS_TOOLTIP)
LAST_WIDGETS = Widgets(extend.LAST_FRAME, VIDEOS)
EXTEND_WIDGETS = Widgets(extend.EXTEND, VIDEOS)


class MicroCinemaLastFrame(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroCinemaLastFrame",
            display_name=extend.LAST_FRAME,
            category="MicroCinema/video",
            description="The last frame of each video, as the keyframe of the next round when extending a clip "
            "(Image To Video with keyframe_position 'first').",
            inputs=[
                io.Image.Input("images", tooltip="The frames of the clip (VAE Decode output)."),
                LAST_WIDGETS.input("videos"),
            ],
            outputs=[io.Image.Output(display_name="last_frame")],
        )

    validate_inputs = LAST_WIDGETS.validator()

    @classmethod
    def execute(cls, images, videos) -> io.NodeOutput:
        LAST_WIDGETS.check({"videos": videos})  # a value that came through a link was not validated
        return io.NodeOutput(extend.last_frames(images, videos, extend.LAST_FRAME))


class MicroCinemaExtendVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroCinemaExtendVideo",
            display_name=extend.EXTEND,
            category="MicroCinema/video",
            description="Appends a new clip to the video so far, dropping the clip's first frame: the new clip "
            "starts from the video's last frame (its keyframe, from MicroCinema Last Frame, at keyframe_position "
            "'first'), so the joined video has no repeated frame.",
            inputs=[
                io.Image.Input("video", tooltip="The video so far (the first clip, or a previous Extend Video)."),
                io.Image.Input("clip", tooltip="The new clip, sampled with the video's last frame as its first-frame "
                               "keyframe; its first frame is dropped."),
                EXTEND_WIDGETS.input("videos"),
            ],
            outputs=[io.Image.Output(display_name="video")],
        )

    validate_inputs = EXTEND_WIDGETS.validator()

    @classmethod
    def execute(cls, video, clip, videos) -> io.NodeOutput:
        EXTEND_WIDGETS.check({"videos": videos})  # a value that came through a link was not validated
        return io.NodeOutput(extend.join_clips(video, clip, videos, extend.EXTEND))
