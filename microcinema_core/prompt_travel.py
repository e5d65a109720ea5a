"""Prompt travel: prompts keyed at chosen frames -> one text context per frame.

The video model reads one text context per latent frame (the sampler's batch is videos x T frames, and ComfyUI
repeats a CONDITIONING tensor of T rows to videos x T rows, frame order kept: comfy.utils.repeat_to_batch_size).
So a CONDITIONING whose tensor is [T, tokens, dim] gives frame t its own prompt, through the stock samplers,
cond/uncond batching, several videos and our context windows (which slice the context per frame like every
other per-frame input).

Schedule syntax (one key per line): ``FRAME: prompt``. FRAME is a 0-based frame index below the clip length; the
prompt is everything after the first colon (it may hold colons, and may be empty: the empty prompt). Blank lines
and lines starting with ``#`` are ignored; keys may come in any order; a frame may be keyed once. Frames before
the first key hold the first prompt, frames after the last key hold the last one.

Between two keys a (frame k0, encoding E0) and b (k1, E1), frame t gets ``(1 - w) E0 + w E1`` with u = (t - k0) /
(k1 - k0) and w = u (linear), (1 - cos(pi u)) / 2 (smooth: eases in and out of each key) or 0 (hold: the earlier
prompt until the next key). Frames on a key get that key's encoding exactly. Pooled outputs (and any other float
tensor the text encoder returns per prompt) are mixed with the same weights, one row per frame.

Prompts that CLIP encodes to different token counts (over 77 tokens: several 77-token chunks) are brought to their
least common multiple by repeating each one's tokens, as ComfyUI does when it batches such conds: cross-attention
over a context repeated k times is the attention over the context itself (every key gets k equal copies, which
the softmax normalises away), and the token mean that AppearNet's text sign reads is unchanged.

A schedule with a single distinct prompt returns exactly what CLIP Text Encode returns for it (one row, no frame
count): it is then a plain prompt, for any length.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import comfy.conds
import torch

# model cond key: frames of the prompt-travel context; VideoUNet refuses a video of another length (a context of
# T rows repeated to a batch of videos of T' != T frames would give frames the wrong prompts, silently).
from .conditioning import TEXT_FRAMES

NODE = "MicroCinema Prompt Travel"
INPUT = "schedule"
INTERPOLATIONS = ("linear", "smooth", "hold")
_KEY = re.compile(r"^\s*([+-]?\d+)\s*:(.*)$")


class ScheduleError(ValueError):
    """A schedule the node cannot use; the message names the node, the input and the line."""


@dataclass(frozen=True)
class Key:
    frame: int
    prompt: str
    line: int  # 1-based line of the schedule text, for messages


def parse_schedule(text: str, length: int, node: str = NODE, input_name: str = INPUT) -> list[Key]:
    """The keys of ``text`` sorted by frame. Raises ScheduleError naming ``node``, ``input_name`` and the line."""
    where = f"{node}: input '{input_name}'"
    if not isinstance(text, str):
        raise ScheduleError(f"{where} must be text, got {type(text).__name__}")
    keys: dict[int, Key] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _KEY.match(line)
        if match is None:
            raise ScheduleError(f"{where}, line {number}: expected 'FRAME: prompt' (a frame number, a colon, the "
                                f"prompt), got {line!r}")
        frame, prompt = int(match[1]), match[2].strip()
        if not 0 <= frame < length:
            raise ScheduleError(f"{where}, line {number}: frame {frame} is outside a clip of {length} frames "
                                f"(frames are numbered 0 to {length - 1}; see the 'length' input)")
        if frame in keys:
            raise ScheduleError(f"{where}, line {number}: frame {frame} is keyed twice (also on line "
                                f"{keys[frame].line})")
        keys[frame] = Key(frame, prompt, number)
    if not keys:
        raise ScheduleError(f"{where} is empty: give at least one line 'FRAME: prompt', e.g. '0: a ball moving left'")
    return [keys[f] for f in sorted(keys)]


def frame_weights(keys: list[Key], length: int, interpolation: str) -> tuple[list[str], torch.Tensor]:
    """(distinct prompts in key order, weights [length, prompts] float64): frame t's context is
    sum_p weights[t, p] * encoding(prompt p). Each row sums to 1 and has at most two non-zero entries."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"{NODE}: input 'interpolation' must be one of {', '.join(INTERPOLATIONS)}, "
                         f"got {interpolation!r}")
    prompts = list(dict.fromkeys(k.prompt for k in keys))
    column = {p: i for i, p in enumerate(prompts)}
    frames = torch.arange(length, dtype=torch.float64)
    weights = torch.zeros(length, len(prompts), dtype=torch.float64)
    # before the first key and from the last key on: that key's prompt alone
    weights[frames < keys[0].frame, column[keys[0].prompt]] = 1.0
    weights[frames >= keys[-1].frame, column[keys[-1].prompt]] = 1.0
    for a, b in zip(keys, keys[1:]):
        span = (frames >= a.frame) & (frames < b.frame)
        if a.prompt == b.prompt:  # the same prompt on both sides: exactly that prompt, whatever the easing
            weights[span, column[a.prompt]] = 1.0
            continue
        w = _ease((frames[span] - a.frame) / (b.frame - a.frame), interpolation)
        weights[span, column[a.prompt]] = 1.0 - w
        weights[span, column[b.prompt]] = w
    return prompts, weights


def _ease(u: torch.Tensor, interpolation: str) -> torch.Tensor:
    if interpolation == "linear":
        return u
    if interpolation == "smooth":
        return (1.0 - torch.cos(math.pi * u)) / 2.0
    return torch.zeros_like(u)  # hold


def encode(clip, text: str) -> list:
    """What CLIP Text Encode returns for ``text`` (the same calls, so hooks and scheduling behave the same)."""
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


def pad_tokens(contexts: list[torch.Tensor]) -> list[torch.Tensor]:
    """Contexts [1, n_i, dim] brought to lcm(n_i) tokens by repeating each (see the module docstring)."""
    target = math.lcm(*(c.shape[1] for c in contexts))
    return [c.repeat(1, target // c.shape[1], 1) for c in contexts]


def blend(encodings: list[list], weights: torch.Tensor, node: str = NODE) -> list:
    """One CONDITIONING of per-frame contexts from ``encodings`` (one CLIP Text Encode output per prompt, in the
    columns' order) mixed by ``weights`` [T, P]. Entry i of the result mixes entry i of every encoding (several
    entries: CLIP hooks scheduled over the steps, which every prompt shares)."""
    counts = {len(e) for e in encodings}
    if len(counts) != 1:
        raise ValueError(f"{node}: the prompts encoded to different numbers of conditioning entries ({sorted(counts)});"
                         " scheduled CLIP hooks must be the same for every prompt")
    frames = weights.shape[0]
    out = []
    for entries in zip(*encodings):
        tensors = [e[0] for e in entries]
        if any(t.ndim != 3 or t.shape[0] != 1 or t.shape[2] != tensors[0].shape[2] for t in tensors):
            raise ValueError(f"{node}: expected one [1, tokens, dim] text context per prompt, got shapes "
                             f"{[tuple(t.shape) for t in tensors]}")
        context = _mix(torch.cat(pad_tokens(tensors)), weights)
        options = dict(entries[0][1])
        for name, value in entries[0][1].items():
            values = [e[1].get(name) for e in entries]
            if _per_prompt_tensor(values):
                options[name] = _mix(torch.cat(values), weights)
        model_conds = dict(options.get("model_conds", {}))
        model_conds[TEXT_FRAMES] = comfy.conds.CONDConstant(frames)
        options["model_conds"] = model_conds
        out.append([context, options])
    return out


def _per_prompt_tensor(values: list) -> bool:
    """Float tensors of one row each and equal shapes (pooled output and the like): mixed per frame."""
    return all(torch.is_tensor(v) and v.is_floating_point() and v.ndim >= 1 and v.shape[0] == 1 and
               v.shape == values[0].shape for v in values)


def _mix(stacked: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """[P, ...] -> [T, ...], row t = sum_p weights[t, p] * stacked[p], computed in float32 (at least)."""
    dtype = torch.promote_types(stacked.dtype, torch.float32)
    mixed = torch.einsum("tp,p...->t...", weights.to(device=stacked.device, dtype=dtype), stacked.to(dtype))
    return mixed.to(stacked.dtype).contiguous()


def travel_conditioning(clip, schedule: str, length: int, interpolation: str, node: str = NODE) -> list:
    """The node's output: CONDITIONING with one context per frame (or CLIP Text Encode's output when the schedule
    holds a single distinct prompt)."""
    keys = parse_schedule(schedule, length, node)
    prompts, weights = frame_weights(keys, length, interpolation)
    encodings = [encode(clip, p) for p in prompts]
    if len(prompts) == 1:
        return encodings[0]
    return blend(encodings, weights, node)


def frames_problem(text_frames, num_frames: int, halves=None) -> str | None:
    """Why a prompt-travel context of ``text_frames`` rows cannot serve videos of ``num_frames`` frames, or None.
    Checked by the video model before anything runs: ComfyUI would repeat or cut the rows to the batch size without
    a word, and frames would silently get other frames' prompts. ``halves``: transformer_options'
    cond_or_uncond (0 positive, 1 negative), to say which conditioning is at fault."""
    if text_frames is None or int(text_frames) == num_frames:
        return None
    halves = list(halves or [])
    which = {0: "positive", 1: "negative"}.get(halves[0]) if halves and len(set(halves)) == 1 else None
    return (f"MicroCinema video model: the {which + ' ' if which else ''}conditioning comes from '{NODE}' with "
            f"'length' {int(text_frames)}, but the videos have {num_frames} frames; set the same 'length' on "
            f"'{NODE}' and on 'MicroCinema Image To Video'.")
