"""MicroCinema Sampler: all of stage 2 in one node (conditioning + stock KSampler + VAE decode).

It calls microcinema_core.sampling.animate: the same video_inputs as MicroCinema Image To Video, then ComfyUI's own
common_ksampler and VAE decode, so it gives exactly what the separate graph gives for the same inputs.
"""
from __future__ import annotations

import comfy.samplers
from comfy_api.latest import io

from ..microcinema_core import noise_prior, sampling
from .image_to_video_nodes import MAX_FRAMES, MIN_SIDE, MAX_SIDE, check_widgets

NODE = "MicroCinema Sampler"


def check_inputs(cfg=None, sampler_name=None, scheduler=None, **video) -> str | None:
    """The first problem among these widget values as a message naming the node and the input, or None."""
    problem = check_widgets(NODE, **video)
    if problem:
        return problem
    if cfg is not None and (isinstance(cfg, bool) or not isinstance(cfg, (int, float)) or not 0.0 <= cfg <= 100.0):
        return f"{NODE}: input 'cfg' must be a number between 0 and 100, got {cfg!r}"
    for name, value, options in (("sampler_name", sampler_name, comfy.samplers.KSampler.SAMPLERS),
                                 ("scheduler", scheduler, comfy.samplers.KSampler.SCHEDULERS)):
        if value is not None and value not in options:
            return f"{NODE}: input '{name}' must be one of ComfyUI's {name.split('_')[0]}s, got {value!r}"
    return None


class MicroCinemaSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroCinemaSampler",
            display_name="MicroCinema Sampler (all of stage 2)",
            category="MicroCinema/sampling",
            description="Keyframe + prompt -> video frames in one node: appearance conditioning, noise prior, the "
            "stock KSampler and VAE decode, with the paper's defaults. Same result as the separate nodes.",
            inputs=[
                io.Model.Input("model", tooltip="The MicroCinema video MODEL (Apply Module / Checkpoint Loader)."),
                io.Conditioning.Input("positive", tooltip="Motion prompt (CLIP Text Encode)."),
                io.Conditioning.Input("negative", tooltip="Negative prompt."),
                io.Vae.Input("vae", tooltip="SD1.x/SD2.x VAE: encodes the keyframe and decodes the frames."),
                io.Image.Input("image", tooltip="Keyframe image(s), any size; one video per image."),
                io.Int.Input("width", default=512, min=MIN_SIDE, max=MAX_SIDE, step=8, tooltip="Video width "
                             "(multiple of 8)."),
                io.Int.Input("height", default=512, min=MIN_SIDE, max=MAX_SIDE, step=8, tooltip="Video height "
                             "(multiple of 8)."),
                io.Int.Input("length", default=16, min=1, max=MAX_FRAMES, tooltip="Frames per video."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Noise seed."),
                io.Int.Input("steps", default=25, min=1, max=10000, tooltip="Sampling steps."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, tooltip="Classifier-free "
                               "guidance scale."),
                io.Combo.Input("sampler_name", options=list(comfy.samplers.KSampler.SAMPLERS), default="euler",
                               tooltip="ComfyUI sampler."),
                io.Combo.Input("scheduler", options=list(comfy.samplers.KSampler.SCHEDULERS), default="normal",
                               tooltip="ComfyUI scheduler."),
                io.Combo.Input("keyframe_position", options=list(noise_prior.KEYFRAME_POSITIONS), default="center",
                               tooltip="Where the keyframe sits in the clip."),
                io.Int.Input("keyframe_index", default=0, min=-MAX_FRAMES, max=MAX_FRAMES, tooltip="Keyframe frame "
                             "when keyframe_position is 'index'."),
                io.Float.Input("appearance_strength", default=1.0, min=0.0, max=10.0, step=0.01,
                               tooltip="AppearNet strength (1 trained behaviour, 0 off)."),
                io.Float.Input("noise_prior_gamma", default=0.02, min=0.0, max=1.0, step=0.001,
                               tooltip="Appearance Noise Prior strength (0.02 is the paper's best)."),
                io.Float.Input("frame_rate", default=8.0, min=1.0, max=120.0, step=0.5, tooltip="Playback frame "
                               "rate, passed on for video savers."),
            ],
            outputs=[io.Image.Output(display_name="frames"), io.Latent.Output(display_name="latent"),
                     io.Float.Output(display_name="frame_rate")],
        )

    @classmethod
    def validate_inputs(cls, width=None, height=None, length=None, keyframe_position=None, keyframe_index=None,
                        appearance_strength=None, noise_prior_gamma=None, frame_rate=None, cfg=None,
                        sampler_name=None, scheduler=None):
        # Named inputs lose ComfyUI's min/max check, NaN passes any min/max and 0.3.x skips V3 combo options:
        # check_inputs does all of it. None: fed by a link, checked in execute.
        return check_inputs(width=width, height=height, length=length, keyframe_position=keyframe_position,
                            keyframe_index=keyframe_index, appearance_strength=appearance_strength,
                            noise_prior_gamma=noise_prior_gamma, frame_rate=frame_rate, cfg=cfg,
                            sampler_name=sampler_name, scheduler=scheduler) or True

    @classmethod
    def execute(cls, model, positive, negative, vae, image, width, height, length, seed, steps, cfg, sampler_name,
                scheduler, keyframe_position, keyframe_index, appearance_strength, noise_prior_gamma,
                frame_rate) -> io.NodeOutput:
        problem = check_inputs(width=width, height=height, length=length, keyframe_position=keyframe_position,
                               keyframe_index=keyframe_index, appearance_strength=appearance_strength,
                               noise_prior_gamma=noise_prior_gamma, frame_rate=frame_rate, cfg=cfg,
                               sampler_name=sampler_name, scheduler=scheduler)
        if problem:  # values that came through links were not validated before the run
            raise ValueError(problem)
        frames, samples = sampling.animate(
            model, positive, negative, vae, image, width=width, height=height, length=length, seed=seed,
            steps=steps, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler,
            keyframe_position=keyframe_position, keyframe_index=keyframe_index,
            appearance_strength=appearance_strength, noise_prior_gamma=noise_prior_gamma, crop="center",
            resize_method="bilinear", frame_rate=frame_rate, node=NODE)
        return io.NodeOutput(frames, samples, float(frame_rate))
