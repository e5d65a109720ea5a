"""What the image-to-video node attaches to CONDITIONING, as ComfyUI model conds.

A CONDITIONING entry's ``model_conds`` dict reaches the diffusion model's forward as keyword arguments (after
ComfyUI batches cond/uncond and resizes per batch), so the video settings travel with the prompt, not with
the model: the same MODEL serves any length, keyframe and strength. Keys (see video_unet.py):
  mc_num_frames  CONDConstant(T)              frames per video (batches only with equal T)
  mc_hint        CONDNoiseShape[B*T, C+2, h, w] keyframe latent (model space), keyframe-position mask and
                                              signed frame offset (see appearance_hint); noise-shaped so area
                                              conditioning crops it like the latent
  mc_strength    CONDRegular[B*T]             AppearNet strength per frame
"""
from __future__ import annotations

import comfy.conds
import comfy.latent_formats
import torch
from einops import repeat

from .noise_prior import repeat_keyframes


# How many text contexts per video an entry holds (video_unet refuses a count other than the video's frames).
TEXT_FRAMES = "mc_text_frames"

HINT_EXTRA_CHANNELS = 2  # after the keyframe latent's C channels: keyframe-position mask, signed frame offset


def appearance_hint(keyframes_model: torch.Tensor, num_frames: int, key_index: int) -> torch.Tensor:
    """[B*T, C+2, h, w]: every frame gets its video's keyframe latent, a mask that is 1 on the keyframe frame and
    its signed offset from the keyframe, (t - key) / T, constant over the frame. The offset travels in the hint
    (not recomputed from the mask inside the model) so that context windows, which sample frames that need not be
    contiguous nor contain the keyframe, still see each frame's true place in the whole video."""
    b, _, h, w = keyframes_model.shape
    mask = torch.zeros(num_frames, 1, h, w, dtype=keyframes_model.dtype)
    mask[key_index] = 1.0
    offset = (torch.arange(num_frames, dtype=keyframes_model.dtype) - key_index) / num_frames
    offset = repeat(offset, "t -> t 1 h w", h=h, w=w)
    return torch.cat([repeat_keyframes(keyframes_model, num_frames),
                      repeat(mask, "t c h w -> (b t) c h w", b=b),
                      repeat(offset, "t c h w -> (b t) c h w", b=b)], dim=1)


def hint_keyframe(hint: torch.Tensor) -> torch.Tensor:
    return hint[:, :-HINT_EXTRA_CHANNELS]


def hint_mask(hint: torch.Tensor) -> torch.Tensor:
    return hint[:, -2:-1]


def hint_offset(hint: torch.Tensor) -> torch.Tensor:
    return hint[:, -1:]


def appearance_model_conds(keyframes_raw: torch.Tensor, num_frames: int, key_index: int, strength: float) -> dict:
    keyframes = comfy.latent_formats.SD15().process_in(keyframes_raw.float())
    frames = keyframes.shape[0] * num_frames
    return {
        "mc_num_frames": comfy.conds.CONDConstant(int(num_frames)),
        "mc_hint": comfy.conds.CONDNoiseShape(appearance_hint(keyframes, num_frames, key_index)),
        "mc_strength": comfy.conds.CONDRegular(torch.full((frames,), float(strength))),
    }


def attach(conditioning: list, model_conds: dict) -> list:
    """A copy of ``conditioning`` whose every entry carries ``model_conds`` (merged with any it already has).

    Each entry also says how many text contexts per video it holds (TEXT_FRAMES): Prompt Travel's entries hold one
    per frame and set it themselves; a one-row prompt gets the video's frame count. So a travel positive and a plain
    negative carry equal model conds and ComfyUI still runs both CFG halves in one batched call (entries whose
    model conds differ are never batched together)."""
    out = []
    frames = model_conds.get("mc_num_frames")
    for tensor, options in conditioning:
        options = options.copy()
        merged = dict(options.get("model_conds", {}))
        merged.update(model_conds)
        if frames is not None and (TEXT_FRAMES not in merged or tensor is None or tensor.shape[0] == 1):
            merged[TEXT_FRAMES] = comfy.conds.CONDConstant(int(frames.cond))
        options["model_conds"] = merged
        out.append([tensor, options])
    return out


def check_text_frames(conditioning: list, length: int, node: str, input_name: str) -> None:
    """Refuse, naming ``node`` and its input, a per-frame text context (Prompt Travel's) made for another length:
    ComfyUI would repeat or cut its rows to the batch without a word, giving frames other frames' prompts."""
    for tensor, options in conditioning:
        frames = options.get("model_conds", {}).get(TEXT_FRAMES)
        if frames is None or tensor is None or tensor.shape[0] == 1:
            continue  # one prompt for every frame
        if int(frames.cond) != int(length):
            raise ValueError(f"{node}, input '{input_name}': it holds one text context per frame for "
                             f"{int(frames.cond)} frames (MicroCinema Prompt Travel's 'length'), but 'length' here is "
                             f"{int(length)}; set the same length on both nodes")

