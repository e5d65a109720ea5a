"""MicroCinema Noise Prior: the Appearance Noise Prior as a NOISE for SamplerCustomAdvanced."""
from __future__ import annotations

import comfy.latent_formats
import comfy.sample
import torch
from comfy_api.latest import io

from ..microcinema_core import noise_prior
from .inputs import Float, Int, Widgets


NODE = "MicroCinema Noise Prior"
WIDGETS = Widgets(
    NODE,
    Int("noise_seed", 0, 0, 0xFFFFFFFFFFFFFFFF, "Seed of the Gaussian noise; the same seed as RandomNoise gives the "
        "same noise.", seed=True),
    Float("gamma", 0.02, 0.0, 1.0, 0.001, "Noise-prior strength. 0.02 suits a model trained with lambda 0.03; "
          "values from 0.04 up hurt (paper's ablation)."),
)


class KeyframeNoisePrior:
    """A NOISE object: the sampler's usual Gaussian noise for ``seed`` plus gamma * the keyframe latent.

    The Gaussian part is exactly what stock RandomNoise gives for the same seed, so the two routes (this NOISE
    with an empty latent, or RandomNoise/KSampler with the prior in latent_image) start from the same tensor.
    """

    def __init__(self, seed: int, keyframes_raw: torch.Tensor, gamma: float):
        self.seed = seed
        self.gamma = gamma
        # SD1.x/SD2.x latent space; the prior is mixed into noise, which lives in model space.
        self.keyframes = comfy.latent_formats.SD15().process_in(keyframes_raw.float())

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        samples = input_latent["samples"]
        if self.gamma > 0 and input_latent.get("microcinema", {}).get("noise_prior_gamma", 0) > 0:
            raise ValueError(
                "MicroCinema Noise Prior: the latent already holds the noise prior (noise_prior_gamma > 0 on "
                "'MicroCinema Image To Video' or 'MicroCinema Video To Video'); set that to 0 when you use this "
                "NOISE, or the prior is added twice")
        base = comfy.sample.prepare_noise(samples, self.seed, input_latent.get("batch_index"))
        if samples.ndim != 4 or samples.shape[1:] != self.keyframes.shape[1:]:
            raise ValueError(
                f"MicroCinema Noise Prior: the keyframe latent {tuple(self.keyframes.shape)} does not match the "
                f"sampled latent {tuple(samples.shape)} (channels and size must agree)"
            )
        return noise_prior.noise_with_prior(base, self.keyframes, self.gamma).to(base.dtype)


class MicroCinemaNoisePrior(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroCinemaNoisePrior",
            display_name="MicroCinema Noise Prior",
            category="MicroCinema/sampling",
            description="Appearance Noise Prior (MicroCinema): the starting noise plus gamma times the keyframe "
            "latent, for SamplerCustomAdvanced. Use it with an empty (zero) video latent.",
            inputs=[
                WIDGETS.input("noise_seed"),
                io.Latent.Input("keyframe", tooltip="The keyframe latent (VAE Encode of the keyframe image), one "
                                "per video; every frame of video k gets keyframe k."),
                WIDGETS.input("gamma"),
            ],
            outputs=[io.Noise.Output()],
        )

    validate_inputs = WIDGETS.validator()

    @classmethod
    def execute(cls, noise_seed: int, keyframe: dict, gamma: float) -> io.NodeOutput:
        # values that came through links were not validated before the run
        WIDGETS.check({"noise_seed": noise_seed, "gamma": gamma})
        return io.NodeOutput(KeyframeNoisePrior(noise_seed, keyframe["samples"], gamma))
