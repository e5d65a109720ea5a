"""The demo model's VAE: an exact 8x8 average-pool encoder / nearest-upsample decoder in TAESD format.

ComfyUI builds a TAESD autoencoder when a checkpoint's VAE keys are ``taesd_encoder.*`` / ``taesd_decoder.*``
(with ``vae_scale`` / ``vae_shift``), in 0.3.75 and in the newest releases. Its layers can express pooling and
upsampling exactly, so the demo needs no trained autoencoder: every residual Block has a zero conv path (it is
then a ReLU of its input, and inputs stay non-negative), the stride-2 convs average 2x2 cells and the
upsampling convs copy. Latent channels 0-2 hold ``RAW_SCALE * (pooled RGB - CENTRE)`` and channel 3 is zero.

In the UNet's (model) space, after SD1.5's 0.18215 factor, a latent is ``LATENT_GAIN * (pooled RGB - CENTRE)``:
``model_space_latents`` computes that directly, which is what training uses instead of running the VAE.
CENTRE is about the mean colour of the synthetic data (dark backgrounds), so latents are centred on zero as
diffusion expects (an eps-predicting model's clean-image estimate at high noise is pulled toward zero);
RAW_SCALE keeps the decoder's soft clamp (tanh(x/3)*3) in its linear range.
"""
from __future__ import annotations

import torch
from einops import reduce

LATENT_GAIN = 4.0          # model-space latent per unit of pooled colour (unit-ish variance on the demo data)
CENTRE = 0.3               # pooled colour that maps to latent 0
RAW_SCALE = 0.5            # raw (VAE-internal) latent per unit of pooled colour
SD15_SCALE = 0.18215       # ComfyUI's SD15 latent_format.scale_factor
DOWNSCALE = 8

# Indices in ComfyUI's TAESD Encoder/Decoder Sequentials.
_ENCODER_STRIDE_CONVS = (2, 6, 10)
_DECODER_UPSAMPLE_CONVS = (7, 12, 17)


def _identity_taps(weight: torch.Tensor, channels: int = 3) -> None:
    for c in range(channels):
        weight[c, c, 1, 1] = 1.0


def taesd_state_dict(prefix: str = "first_stage_model.") -> dict[str, torch.Tensor]:
    import comfy.taesd.taesd

    vae = comfy.taesd.taesd.TAESD(latent_channels=4)
    sd = {k: torch.zeros_like(v) for k, v in vae.state_dict().items()}
    _identity_taps(sd["taesd_encoder.0.weight"])
    for i in _ENCODER_STRIDE_CONVS:
        for c in range(3):
            sd[f"taesd_encoder.{i}.weight"][c, c, 1:3, 1:3] = 0.25  # the 2x2 cell starting at the output pixel
    for c in range(3):
        sd["taesd_encoder.14.weight"][c, c, 1, 1] = RAW_SCALE
        sd["taesd_decoder.1.weight"][c, c, 1, 1] = 1.0 / RAW_SCALE
    sd["taesd_encoder.14.bias"][:3] = -RAW_SCALE * CENTRE
    sd["taesd_decoder.1.bias"][:3] = CENTRE
    for i in _DECODER_UPSAMPLE_CONVS:
        _identity_taps(sd[f"taesd_decoder.{i}.weight"])
    _identity_taps(sd["taesd_decoder.19.weight"])
    # encode() returns raw / vae_scale + vae_shift; ComfyUI then multiplies by 0.18215 for the UNet.
    sd["vae_scale"] = torch.tensor(SD15_SCALE * RAW_SCALE / LATENT_GAIN)
    sd["vae_shift"] = torch.tensor(0.0)
    return {prefix + k: v.contiguous() for k, v in sd.items()}


def model_space_latents(frames: torch.Tensor) -> torch.Tensor:
    """frames [N, H, W, 3] in [0, 1] (ComfyUI IMAGE layout) -> [N, 4, H/8, W/8] as the UNet sees them."""
    pooled = reduce(frames.float(), "n (h a) (w b) c -> n c h w", "mean", a=DOWNSCALE, b=DOWNSCALE)
    latent = LATENT_GAIN * (pooled - CENTRE)
    return torch.cat([latent, torch.zeros_like(latent[:, :1])], dim=1)
