"""MicroCinema Video To Video: an existing clip's latents, re-sampled at denoise < 1 with a keyframe's appearance
and the Appearance Noise Prior defined for the sampler's first sigma (microcinema_core/video_to_video.py)."""
from __future__ import annotations

import comfy.samplers
from comfy_api.latest import io

from ..microcinema_core import noise_prior, video_to_video
from .image_to_video_nodes import CROP_MODES, MAX_FRAMES, RESIZE_METHODS, VIDEO, keyframe_in_clip
from .inputs import Combo, Float, Int, Widgets

NODE = video_to_video.VIDEO_TO_VIDEO

WIDGETS = Widgets(
    NODE,
    Int("length", 0, 0, MAX_FRAMES, "Frames per video; 0 uses all source frames (split evenly among the "
        "keyframes). The source must hold a whole number of videos."),
    Combo("keyframe_position", list(noise_prior.KEYFRAME_POSITIONS), "first", "Which frame of each video the "
          "keyframe shows: center, first, last, or the frame given by keyframe_index."),
    VIDEO["keyframe_index"],
    VIDEO["appearance_strength"],
    Float("noise_prior_gamma", 0.02, 0.0, 1.0, 0.001, "Appearance Noise Prior strength, scaled here for the "
          "KSampler's first sigma. Set 0 when you use 'MicroCinema Noise Prior' with SamplerCustomAdvanced (that "
          "route needs no sigma)."),
    Int("steps", 20, 1, 10000, "The KSampler's steps (must match: steps and denoise set its first sigma)."),
    Float("denoise", 0.6, 0.0, 1.0, 0.01, "The KSampler's denoise (must match). 1 re-draws the clip from noise (Image "
          "To Video's start plus the source), lower keeps more of the source; 0 returns the source unchanged."),
    # Read when used: other packs may add samplers/schedulers after this module is imported.
    Combo("sampler_name", lambda: list(comfy.samplers.KSampler.SAMPLERS), "euler", "The KSampler's sampler (must "
          "match: a few samplers shorten the schedule).", options_text="one of ComfyUI's samplers"),
    Combo("scheduler", lambda: list(comfy.samplers.KSampler.SCHEDULERS), "normal", "The KSampler's scheduler (must "
          "match).", options_text="one of ComfyUI's schedulers"),
    Combo("crop", CROP_MODES, "center", "Keyframe fitting: center keeps the aspect ratio and crops the overflow; "
          "disabled stretches it to the clip's size."),
    Combo("resize_method", RESIZE_METHODS, "bilinear", "Interpolation used to resize the keyframe to the clip's "
          "size."),
    rules=[keyframe_in_clip(NODE)],
)


class MicroCinemaVideoToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroCinemaVideoToVideo",
            display_name=NODE,
            category="MicroCinema/conditioning",
            description="Video-to-video: re-samples an existing clip (IMAGE frames, e.g. from Load Video -> Get Video "
            "Components, or a LATENT) at denoise < 1 with a keyframe's appearance. Outputs the conditioning and the "
            "clip's latent with the Appearance Noise Prior for the stock KSampler: set steps, denoise, "
            "sampler_name and scheduler here exactly as on that KSampler (the prior depends on its first sigma).",
            inputs=[
                io.Conditioning.Input("positive", tooltip="Text conditioning of the prompt (CLIP Text Encode)."),
                io.Conditioning.Input("negative", tooltip="Negative text conditioning; it gets the appearance too, "
                                      "so both CFG halves see the keyframe."),
                io.Model.Input("model", tooltip="The MicroCinema video MODEL the KSampler samples with: its noise "
                               "schedule gives the KSampler's first sigma (nothing is loaded here)."),
                io.Vae.Input("vae", tooltip="The SD1.x/SD2.x VAE that encodes the source frames and the keyframe."),
                io.Image.Input("video", optional=True, tooltip="Source clip as IMAGE frames (one video, or several "
                               "videos of 'length' frames one after another). Width and height must be multiples "
                               "of 8. Connect this or 'video_latent', not both."),
                io.Latent.Input("video_latent", optional=True, tooltip="Source clip as a LATENT [frames, 4, h, w] "
                                "(e.g. a previous sampler's output), instead of 'video'."),
                io.Image.Input("keyframe", optional=True, tooltip="Appearance keyframe(s), one per video, any size "
                               "(resized and cropped to the clip). Leave empty to use each source video's own frame "
                               "at the keyframe position."),
                *WIDGETS.inputs(),
            ],
            outputs=[io.Conditioning.Output(display_name="positive"), io.Conditioning.Output(display_name="negative"),
                     io.Latent.Output(display_name="latent")],
        )

    validate_inputs = WIDGETS.validator()

    @classmethod
    def execute(cls, positive, negative, model, vae, length, keyframe_position, keyframe_index, appearance_strength,
                noise_prior_gamma, steps, denoise, sampler_name, scheduler, crop, resize_method, video=None,
                video_latent=None, keyframe=None) -> io.NodeOutput:
        # values that came through links were not validated before the run
        WIDGETS.check(dict(length=length, keyframe_position=keyframe_position, keyframe_index=keyframe_index,
                           appearance_strength=appearance_strength, noise_prior_gamma=noise_prior_gamma, steps=steps,
                           denoise=denoise, sampler_name=sampler_name, scheduler=scheduler, crop=crop,
                           resize_method=resize_method))
        pos, neg, latent = video_to_video.video_to_video_inputs(
            positive, negative, vae, model, video=video, video_latent=video_latent, keyframe=keyframe,
            length=length, keyframe_position=keyframe_position, keyframe_index=keyframe_index,
            appearance_strength=appearance_strength, noise_prior_gamma=noise_prior_gamma, steps=steps,
            denoise=denoise, sampler_name=sampler_name, scheduler=scheduler, crop=crop, resize_method=resize_method,
            node=NODE)
        return io.NodeOutput(pos, neg, latent)
