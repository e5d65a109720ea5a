"""MicroCinema Image To Video: the keyframe becomes appearance conditioning and the noise-prior video latent."""
from __future__ import annotations

from comfy_api.latest import io

from ..microcinema_core import noise_prior, sampling

NODE = "MicroCinema Image To Video"
RESIZE_METHODS = ["bilinear", "bicubic", "area", "lanczos", "nearest-exact"]
CROP_MODES = ["center", "disabled"]
MAX_FRAMES = 4096
MIN_SIDE, MAX_SIDE = 16, 8192


FLOAT_RANGES = {"appearance_strength": (0.0, 10.0), "noise_prior_gamma": (0.0, 1.0), "frame_rate": (1.0, 120.0)}
CHOICES = {"keyframe_position": noise_prior.KEYFRAME_POSITIONS, "crop": CROP_MODES, "resize_method": RESIZE_METHODS}


def check_widgets(node: str, **values) -> str | None:
    """The first problem among these widget values as a message naming ``node`` and the input, or None.
    None values (inputs fed by a link: unknown before the run) are skipped."""
    for name in ("width", "height", "length", "keyframe_index", *FLOAT_RANGES):
        value = values.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"{node}: input '{name}' must be a number, got {value!r}"
    for name in ("width", "height"):
        value = values.get(name)
        if value is not None and (not MIN_SIDE <= value <= MAX_SIDE or value % 8 != 0):
            return (f"{node}: input '{name}' must be a multiple of 8 between {MIN_SIDE} and {MAX_SIDE} "
                    f"(the VAE works on 8x8 pixel cells), got {value}")
    for name, options in CHOICES.items():
        value = values.get(name)
        if value is not None and value not in options:
            return f"{node}: input '{name}' must be one of {', '.join(options)}, got {value!r}"
    length, index = values.get("length"), values.get("keyframe_index")
    if length is not None and not 1 <= length <= MAX_FRAMES:
        return f"{node}: input 'length' must be between 1 and {MAX_FRAMES}, got {length}"
    if index is not None and not -MAX_FRAMES <= index <= MAX_FRAMES:
        return f"{node}: input 'keyframe_index' must be between {-MAX_FRAMES} and {MAX_FRAMES}, got {index}"
    if values.get("keyframe_position") == "index" and length is not None and index is not None \
            and not -length <= index < length:
        return (f"{node}: input 'keyframe_index' {index} is outside a clip of {length} frames "
                f"(allowed {-length}..{length - 1})")
    for name, (low, high) in FLOAT_RANGES.items():
        value = values.get(name)
        if value is not None and not low <= value <= high:  # NaN fails this too
            return f"{node}: input '{name}' must be a number between {low} and {high}, got {value}"
    return None



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
                io.Int.Input("width", default=512, min=MIN_SIDE, max=MAX_SIDE, step=8, tooltip="Video width in pixels "
                             "(multiple of 8)."),
                io.Int.Input("height", default=512, min=MIN_SIDE, max=MAX_SIDE, step=8, tooltip="Video height in pixels "
                             "(multiple of 8)."),
                io.Int.Input("length", default=16, min=1, max=MAX_FRAMES, tooltip="Frames per video. The models are "
                             "trained on 16-frame clips."),
                io.Combo.Input("keyframe_position", options=list(noise_prior.KEYFRAME_POSITIONS), default="center",
                               tooltip="Where the keyframe sits in the clip: center (as in training), first, last, "
                               "or the frame given by keyframe_index."),
                io.Int.Input("keyframe_index", default=0, min=-MAX_FRAMES, max=MAX_FRAMES, tooltip="Frame of the "
                             "keyframe when keyframe_position is 'index' (negative counts from the end)."),
                io.Float.Input("appearance_strength", default=1.0, min=0.0, max=10.0, step=0.01, tooltip="AppearNet "
                               "strength: 1 is the trained behaviour, 0 switches appearance injection off."),
                io.Float.Input("noise_prior_gamma", default=0.02, min=0.0, max=1.0, step=0.001, tooltip="Appearance "
                               "Noise Prior strength put into the LATENT (KSampler route, denoise 1). 0.02 is the "
                               "paper's best; set 0 when you use 'MicroCinema Noise Prior' with SamplerCustomAdvanced."),
                io.Combo.Input("crop", options=CROP_MODES, default="center", tooltip="center: keep the aspect ratio "
                               "and crop the overflow; disabled: stretch to width x height."),
                io.Float.Input("frame_rate", default=8.0, min=1.0, max=120.0, step=0.5, tooltip="Playback frame "
                               "rate of the clip; passed on at the frame_rate output for CreateVideo / Save "
                               "Animated WEBP (the demo model is trained at 8 fps)."),
                io.Combo.Input("resize_method", options=RESIZE_METHODS, default="bilinear",
                               tooltip="Interpolation used to resize the keyframe."),
            ],
            outputs=[io.Conditioning.Output(display_name="positive"), io.Conditioning.Output(display_name="negative"),
                     io.Latent.Output(display_name="latent"), io.Float.Output(display_name="frame_rate")],
        )

    @classmethod
    def validate_inputs(cls, width=None, height=None, length=None, keyframe_position=None, keyframe_index=None,
                        appearance_strength=None, noise_prior_gamma=None, frame_rate=None, crop=None,
                        resize_method=None):
        # The inputs named here lose ComfyUI's built-in min/max check (a **kwargs would switch it off for all of
        # them), so check_widgets range-checks them; it also refuses NaN (which passes any min/max comparison) and
        # combo values (ComfyUI 0.3.x does not check V3 combo options). Inputs fed by links arrive as None here and
        # are checked in execute.
        problem = check_widgets(NODE, width=width, height=height, length=length, keyframe_position=keyframe_position,
                                keyframe_index=keyframe_index, appearance_strength=appearance_strength,
                                noise_prior_gamma=noise_prior_gamma, frame_rate=frame_rate, crop=crop,
                                resize_method=resize_method)
        return problem or True

    @classmethod
    def execute(cls, positive, negative, vae, image, width, height, length, keyframe_position, keyframe_index,
                appearance_strength, noise_prior_gamma, crop, frame_rate, resize_method) -> io.NodeOutput:
        problem = check_widgets(NODE, width=width, height=height, length=length, keyframe_position=keyframe_position,
                                keyframe_index=keyframe_index, appearance_strength=appearance_strength,
                                noise_prior_gamma=noise_prior_gamma, frame_rate=frame_rate, crop=crop,
                                resize_method=resize_method)
        if problem:  # values that came through links were not validated before the run
            raise ValueError(problem)
        pos, neg, latent = sampling.video_inputs(
            positive, negative, vae, image, width=width, height=height, length=length,
            keyframe_position=keyframe_position, keyframe_index=keyframe_index,
            appearance_strength=appearance_strength, noise_prior_gamma=noise_prior_gamma, crop=crop,
            resize_method=resize_method, frame_rate=frame_rate, node=NODE)
        return io.NodeOutput(pos, neg, latent, float(frame_rate))
