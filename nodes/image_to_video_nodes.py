"""MicroCinema Image To Video: the keyframe becomes appearance conditioning and the noise-prior video latent."""
from __future__ import annotations

from comfy_api.latest import io

from ..microcinema_core import noise_prior, sampling
from .inputs import Combo, Float, Int, Widgets

NODE = "MicroCinema Image To Video"
RESIZE_METHODS = ["bilinear", "bicubic", "area", "lanczos", "nearest-exact"]
CROP_MODES = ["center", "disabled"]
MAX_FRAMES = 4096
MIN_SIDE, MAX_SIDE = 16, 8192

# The video widgets, declared once; MicroCinema Sampler takes most of them too.
VIDEO = {w.name: w for w in (
    Int("width", 512, MIN_SIDE, MAX_SIDE, "Video width in pixels (multiple of 8).", step=8, multiple_of=8,
        why="(the VAE works on 8x8 pixel cells)"),
    Int("height", 512, MIN_SIDE, MAX_SIDE, "Video height in pixels (multiple of 8).", step=8, multiple_of=8,
        why="(the VAE works on 8x8 pixel cells)"),
    Int("length", 16, 1, MAX_FRAMES, "Frames per video. The models are trained on 16-frame clips."),
    Combo("keyframe_position", list(noise_prior.KEYFRAME_POSITIONS), "center", "Where the keyframe sits in the "
          "clip: center (as in training), first, last, or the frame given by keyframe_index."),
    Int("keyframe_index", 0, -MAX_FRAMES, MAX_FRAMES, "Frame of the keyframe when keyframe_position is 'index' "
        "(negative counts from the end)."),
    Float("appearance_strength", 1.0, 0.0, 10.0, 0.01, "AppearNet strength: 1 is the trained behaviour, 0 switches "
          "appearance injection off."),
    Float("noise_prior_gamma", 0.02, 0.0, 1.0, 0.001, "Appearance Noise Prior strength put into the LATENT "
          "(KSampler route, denoise 1). 0.02 is the paper's best; set 0 when you use 'MicroCinema Noise Prior' with "
          "SamplerCustomAdvanced."),
    Combo("crop", CROP_MODES, "center", "center: keep the aspect ratio and crop the overflow; disabled: stretch to "
          "width x height."),
    Float("frame_rate", 8.0, 1.0, 120.0, 0.5, "Playback frame rate of the clip; passed on at the frame_rate output "
          "for CreateVideo / Save Animated WEBP (the demo model is trained at 8 fps)."),
    Combo("resize_method", RESIZE_METHODS, "bilinear", "Interpolation used to resize the keyframe."),
)}


def keyframe_in_clip(node: str):
    """The rule across inputs: with keyframe_position 'index', keyframe_index must be a frame of the clip. A length
    of 0 (Video To Video: all source frames) is known only from the source, and checked there."""
    def rule(values: dict) -> str | None:
        length, index = values.get("length"), values.get("keyframe_index")
        if values.get("keyframe_position") == "index" and length and index is not None \
                and not -length <= index < length:
            return (f"{node}: input 'keyframe_index' {index} is outside a clip of {length} frames "
                    f"(allowed {-length}..{length - 1})")
        return None
    return rule


WIDGETS = Widgets(NODE, *VIDEO.values(), rules=[keyframe_in_clip(NODE)])


class MicroCinemaImageToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroCinemaImageToVideo",
            display_name=NODE,
            category="MicroCinema/conditioning",
            description="Stage 2 of MicroCinema: attaches the keyframe (from any text-to-image node or Load Image) "
            "as appearance conditioning to positive and negative, and makes the video latent with the Appearance "
            "Noise Prior for the stock KSampler (denoise 1).",
            inputs=[
                io.Conditioning.Input("positive", tooltip="Text conditioning of the motion prompt (CLIP Text Encode)."),
                io.Conditioning.Input("negative", tooltip="Negative text conditioning; it gets the appearance too, "
                                      "so both CFG halves see the keyframe."),
                io.Vae.Input("vae", tooltip="The SD1.x/SD2.x VAE that encodes the keyframe."),
                io.Image.Input("image", tooltip="Keyframe image(s): one video per image. Any size: it is resized "
                               "and cropped to width x height. RGBA and greyscale are converted to RGB."),
                *WIDGETS.inputs(),
            ],
            outputs=[io.Conditioning.Output(display_name="positive"), io.Conditioning.Output(display_name="negative"),
                     io.Latent.Output(display_name="latent"), io.Float.Output(display_name="frame_rate")],
        )

    validate_inputs = WIDGETS.validator()

    @classmethod
    def execute(cls, positive, negative, vae, image, **widgets) -> io.NodeOutput:
        values = WIDGETS.check(widgets)  # values that came through links were not validated before the run
        pos, neg, latent = sampling.video_inputs(positive=positive, negative=negative, vae=vae, image=image,
                                                 **values, node=NODE)
        return io.NodeOutput(pos, neg, latent, float(values["frame_rate"]))
