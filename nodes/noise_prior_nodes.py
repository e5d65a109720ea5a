"""MicroCinema Noise Prior: the Appearance Noise Prior as a NOISE for SamplerCustomAdvanced."""
from __future__ import annotations

import comfy.latent_formats
import comfy.sample
import torch
from comfy_api.latest import io

from ..microcinema_core import noise_prior


def _check_gamma(gamma) -> str | None:
    if gamma is None:  # fed by a link
        return None
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
        return f"MicroCinema Noise Prior: input 'gamma' must be a number between 0 and 1, got {gamma!r}"
    return None


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
                "'MicroCinema Image To Video'); set that to 0 when you use this NOISE, or the prior is added twice")
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
                io.Int.Input("noise_seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the Gaussian noise; the same seed as RandomNoise gives the same noise."),
                io.Latent.Input("keyframe", tooltip="The keyframe latent (VAE Encode of the keyframe image), one "
                                "per video; every frame of video k gets keyframe k."),
                io.Float.Input("gamma", default=0.02, min=0.0, max=1.0, step=0.001,
                               tooltip="Noise-prior strength. 0.02 suits a model trained with lambda 0.03; "
                               "values from 0.04 up hurt (paper's ablation)."),
            ],
            outputs=[io.Noise.Output()],
        )

    @classmethod
    def validate_inputs(cls, gamma=None):
        # gamma loses ComfyUI's min/max check by being named here; checked by hand because NaN passes any min/max.
        return _check_gamma(gamma) or True

    @classmethod
    def execute(cls, noise_seed: int, keyframe: dict, gamma: float) -> io.NodeOutput:
        problem = _check_gamma(gamma)
        if problem:  # a value that came through a link was not validated before the run
            raise ValueError(problem)
        return io.NodeOutput(KeyframeNoisePrior(noise_seed, keyframe["samples"], gamma))
