"""MicroCinema Sampler: all of stage 2 in one node (conditioning + stock KSampler + VAE decode).

It calls microcinema_core.sampling.animate: the same video_inputs as MicroCinema Image To Video, then ComfyUI's own
common_ksampler and VAE decode, so it gives exactly what the separate graph gives for the same inputs. Its video
widgets are Image To Video's declarations (one place for their ranges, options and tooltips).
"""
from __future__ import annotations

import comfy.samplers
from comfy_api.latest import io

from ..microcinema_core import sampling
from .image_to_video_nodes import VIDEO, keyframe_in_clip
from .inputs import Combo, Float, Int, Widgets

NODE = "MicroCinema Sampler"

WIDGETS = Widgets(
    NODE,
    VIDEO["width"], VIDEO["height"], VIDEO["length"],
    Int("seed", 0, 0, 0xFFFFFFFFFFFFFFFF, "Noise seed.", seed=True),
    Int("steps", 25, 1, 10000, "Sampling steps."),
    Float("cfg", 7.5, 0.0, 100.0, 0.1, "Classifier-free guidance scale."),
    Combo("sampler_name", lambda: list(comfy.samplers.KSampler.SAMPLERS), "euler", "ComfyUI sampler.",
          options_text="one of ComfyUI's samplers"),
    Combo("scheduler", lambda: list(comfy.samplers.KSampler.SCHEDULERS), "normal", "ComfyUI scheduler.",
          options_text="one of ComfyUI's schedulers"),
    VIDEO["keyframe_position"], VIDEO["keyframe_index"], VIDEO["appearance_strength"], VIDEO["noise_prior_gamma"],
    VIDEO["frame_rate"],
    rules=[keyframe_in_clip(NODE)],
)


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
                *WIDGETS.inputs(),
            ],
            outputs=[io.Image.Output(display_name="frames"), io.Latent.Output(display_name="latent"),
                     io.Float.Output(display_name="frame_rate")],
        )

    validate_inputs = WIDGETS.validator()

    @classmethod
    def execute(cls, model, positive, negative, vae, image, **widgets) -> io.NodeOutput:
        values = WIDGETS.check(widgets)  # values that came through links were not validated before the run
        # crop and resize_method keep animate's defaults (center, bilinear): this node has no widgets for them
        frames, samples = sampling.animate(model=model, positive=positive, negative=negative, vae=vae, image=image,
                                           **values, node=NODE)
        return io.NodeOutput(frames, samples, float(values["frame_rate"]))
