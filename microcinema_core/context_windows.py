"""Sliding context windows over the frame axis, inside the video model (long videos, bounded memory).

Every model call over T frames becomes calls over windows of ``length`` frames, each with its own slice of every
per-frame input (latent, timestep, text context, appearance hint and strength, ControlNet residuals), and the
outputs are fused per frame. It works with every sampler and ComfyUI version (0.3.75's stock windows cannot run
our model; newer stock windows can, see stock_context.py), the appearance and the noise prior reach every window,
and activation memory depends on the window length, not on T.

Schedules: the names and semantics of ComfyUI's (and AnimateDiff-Evolved's) context schedules, so the same
settings mean the same windows on our node and on the stock "Context Windows (Manual)":
  standard_static   windows every (length - overlap) frames, the last one aligned to the end; the same every step
  standard_uniform  AnimateDiff's uniform schedule: the window grid is shifted every sampling step by a fraction of
                    the video that follows the base-2 van der Corput sequence of the step index (0, 1/2, 1/4, 3/4,
                    1/8, ...), so window seams move between steps; windows that would run past the end are moved
                    back to end there; with stride > 1, also windows whose frames are 2, 4, ... frames apart
  looped_uniform    the same shifting grid with windows wrapping from the end to the start (looping clips);
                    closed_loop adds the window that closes the loop
  batched           non-overlapping chunks
Older releases called the first three static_standard, uniform_standard and uniform_looped, and their
"uniform" schedules never shifted between steps. Those names stay accepted (saved workflows) as deprecated
aliases of the new ones and now get the new semantics.
Fuse methods (per-frame weights of a window's outputs): flat, pyramid, relative and overlap-linear as ComfyUI
defines them, plus gaussian (ours). ``keep_keyframe`` puts the keyframe frame in every window (it anchors the
appearance, as ADE's reference frame does); its output there is fused with the window's smallest weight.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

SCHEDULES = ("standard_static", "standard_uniform", "looped_uniform", "batched")
# Our names before they followed ComfyUI's; workflows saved then still carry them.
DEPRECATED_SCHEDULES = {"static_standard": "standard_static", "uniform_standard": "standard_uniform",
                        "uniform_looped": "looped_uniform"}
SCHEDULE_OPTIONS = SCHEDULES + tuple(DEPRECATED_SCHEDULES)  # what the node's combo lists (and accepts)
FUSE_METHODS = ("pyramid", "flat", "relative", "gaussian", "overlap-linear")
# The smallest weight a fuse method gives (ComfyUI's overlap-linear ramps start at ~0); keeps every sum positive.
MIN_WEIGHT = 1e-6


def canonical_schedule(name: str) -> str:
    """The schedule a (possibly deprecated) name stands for."""
    return DEPRECATED_SCHEDULES.get(name, name)


@dataclass(frozen=True)
class ContextSettings:
    length: int = 16
    overlap: int = 4
    schedule: str = "standard_static"
    stride: int = 1
    closed_loop: bool = False
    fuse_method: str = "pyramid"
    keep_keyframe: bool = True

    def __post_init__(self) -> None:
        # Deprecated names become the schedule they stand for, so everything downstream sees one spelling.
        object.__setattr__(self, "schedule", canonical_schedule(self.schedule))

    def validate(self) -> None:
        if self.length < 2:
            raise ValueError("context length must be at least 2 frames")
        if not 0 <= self.overlap < self.length:
            raise ValueError(f"context overlap must be between 0 and length-1 ({self.length - 1})")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown context schedule {self.schedule!r}; one of {SCHEDULE_OPTIONS}")
        if self.fuse_method not in FUSE_METHODS:
            raise ValueError(f"unknown fuse method {self.fuse_method!r}; one of {FUSE_METHODS}")
        if self.stride < 1:
            raise ValueError("context stride must be >= 1")


# -- the step index ------------------------------------------------------------------------------------------
def van_der_corput(step: int, bits: int = 64) -> float:
    """The step's binary digits mirrored behind the binary point: 0, 1/2, 1/4, 3/4, 1/8, 5/8, ... ("ordered
    halving" in AnimateDiff). Consecutive steps land far apart, and any 2^k steps tile [0, 1) evenly."""
    mirrored = 0
    for bit in range(bits):
        if (step >> bit) & 1:
            mirrored |= 1 << (bits - 1 - bit)
    return mirrored / (1 << bits)  # exact integer ratio, correctly rounded


def sampling_step(transformer_options: dict) -> int:
    """Index of the sampling step a model call belongs to, from the sigmas ComfyUI puts in transformer_options
    (``sample_sigmas``: the whole schedule; ``sigmas``: this call's). A sigma between two scheduled ones (a
    multi-stage sampler's intermediate call) belongs to the step it started from, as in ComfyUI's handler. 0 when
    called outside a sampler."""
    schedule, current = transformer_options.get("sample_sigmas"), transformer_options.get("sigmas")
    if not torch.is_tensor(schedule) or not torch.is_tensor(current) or schedule.numel() == 0 or current.numel() == 0:
        return 0
    schedule = schedule.detach().float().cpu().flatten()
    sigma = current.detach().float().cpu().flatten()[0]
    same = torch.nonzero(torch.isclose(schedule, sigma, rtol=1e-4)).flatten()
    if same.numel():
        return int(same[0])
    started = torch.nonzero(schedule >= sigma).flatten()
    return int(started[-1]) if started.numel() else 0


# -- schedules -------------------------------------------------------------------------------------------------
def _static(num_frames: int, length: int, overlap: int) -> list[list[int]]:
    starts = list(range(0, num_frames - length + 1, length - overlap))
    if starts[-1] != num_frames - length:
        starts.append(num_frames - length)  # the last window ends on the last frame
    return [list(range(s, s + length)) for s in starts]


def _batched(num_frames: int, length: int) -> list[list[int]]:
    return [list(range(a, min(a + length, num_frames))) for a in range(0, num_frames, length)]


def _shifted_grid(num_frames: int, s: ContextSettings, step: int, looped: bool) -> list[list[int]]:
    """The uniform schedule's windows at this step, modulo num_frames (they may wrap past the end)."""
    shift = van_der_corput(step)
    levels = min(s.stride, math.ceil(math.log2(num_frames / s.length)) + 1)
    windows = []
    for level in range(levels):
        dilation = 2 ** level
        if _too_sparse(num_frames, s.length, dilation, looped):
            break  # ComfyUI makes invalid windows here (out of range, or a frame twice); sparser ones would be too
        offset = round(num_frames * shift)
        first = int(shift * dilation) + offset
        # a looped grid without closed_loop stops one overlap short of closing the circle
        stop = num_frames + offset - (0 if looped and s.closed_loop else s.overlap)
        for start in range(first, stop, s.length * dilation - s.overlap):
            windows.append([(start + i * dilation) % num_frames for i in range(s.length)])
    return windows


def _too_sparse(num_frames: int, length: int, dilation: int, looped: bool) -> bool:
    """Whether windows of this dilation cannot be valid: a looped one would come round to a frame it already holds;
    a standard one (moved back inside the video when it runs past the end) would not fit in the video."""
    if looped:
        return any(i * dilation % num_frames == 0 for i in range(1, length))
    return (length - 1) * dilation + 1 > num_frames


def _wrap_position(window: list[int]) -> int:
    """Index of the first frame of a window that comes after a wrap past the end (0 if it does not wrap)."""
    return next((i for i in range(1, len(window)) if window[i] < window[i - 1]), 0)


def _unwrapped(windows: list[list[int]], num_frames: int, length: int) -> list[list[int]]:
    """standard_uniform: a window that wraps past the end is moved back to end on the last frame; the frames it
    held after the wrap get a window of their own unless the next window holds them. Repeated windows go."""
    i = 0
    while i < len(windows):
        window = windows[i]
        wrap = _wrap_position(window)
        if wrap:
            after_wrap = window[wrap]
            dilation = (window[1] - window[0]) % num_frames
            windows[i] = [num_frames - 1 - (length - 1 - p) * dilation for p in range(length)]
            if after_wrap not in windows[(i + 1) % len(windows)]:
                windows.insert(i + 1, list(range(after_wrap, after_wrap + length)))
        i += 1
    return _unique(windows)


def _unique(windows: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for w in windows:
        if w not in out:
            out.append(w)
    return out


def window_indices(num_frames: int, s: ContextSettings, step: int = 0) -> list[list[int]]:
    """Frame indices of every window at sampling step ``step`` (only the uniform schedules depend on it); every
    frame is covered at least once."""
    s.validate()
    if num_frames <= s.length:
        return [list(range(num_frames))]
    if s.schedule == "batched":
        return _batched(num_frames, s.length)
    if s.schedule == "standard_static":
        return _static(num_frames, s.length, s.overlap)
    looped = s.schedule == "looped_uniform"
    windows = _shifted_grid(num_frames, s, step, looped)
    return _unique(windows) if looped else _unwrapped(windows, num_frames, s.length)


def with_keyframe(window: list[int], keyframe: int) -> list[int]:
    """The window with the keyframe frame in it, in time order, if it is not there yet. A window that wraps past
    the end gets it on the side of the gap (between its last and its first frame) it is nearer to."""
    if keyframe in window:
        return window
    wrap = _wrap_position(window)
    if not wrap:
        return sorted(window + [keyframe])
    # the gap runs from window[-1] (after the wrap) to window[0] (before it)
    return window + [keyframe] if keyframe - window[-1] <= window[0] - keyframe else [keyframe] + window


# -- fusing ------------------------------------------------------------------------------------------------------
def fuse_weights(window: list[int], num_frames: int, method: str, overlap: int = 0) -> torch.Tensor:
    """Weight of each of a window's outputs (``window``: its frame indices, in the order it holds them), as ComfyUI
    defines the methods of the same name (gaussian is ours); all >= MIN_WEIGHT."""
    n = len(window)
    position = torch.arange(n, dtype=torch.float64)
    if method == "flat":
        w = torch.ones(n, dtype=torch.float64)
    elif method == "pyramid":  # 1, 2, ..., up to the middle and back down, by position in the window
        w = torch.minimum(position + 1, n - position)
    elif method == "relative":
        # by frame index: 1 at the centre between the window's first and last frame, falling linearly to 0 at
        # them (floored at 0.01); ComfyUI's running weighted average with these weights is their weighted mean
        first, last = window[0], window[-1]
        centre, half = (first + last) / 2, (last - first + 1e-2) / 2
        w = torch.tensor([max(1e-2, 1 - abs(f - centre) / half) for f in window], dtype=torch.float64)
    elif method == "overlap-linear":
        # ramps over the `overlap` frames shared with the neighbour on each side; the video's ends are not ramped
        w = torch.ones(n, dtype=torch.float64)
        ramp = min(overlap, n)
        if ramp > 0:
            rise = torch.linspace(0.0, 1.0, ramp, dtype=torch.float64)  # one frame: [0] rising, [1] falling
            if min(window) > 0:
                w[:ramp] = rise
            if max(window) < num_frames - 1:
                w[n - ramp:] = 1.0 - rise
    elif method == "gaussian":
        centre, sigma = (n - 1) / 2, max(n / 4, 1e-3)
        w = torch.exp(-0.5 * ((position - centre) / sigma) ** 2)
    else:
        raise ValueError(f"unknown fuse method {method!r}")
    return w.clamp_min(MIN_WEIGHT).float()


def window_weights(window: list[int], frames: list[int], num_frames: int, method: str, overlap: int,
                   keyframe: Optional[int] = None) -> torch.Tensor:
    """Weights for ``frames`` (the window, plus the keyframe when keep_keyframe added it): the window's own fuse
    weights, and the window's smallest weight for an added keyframe (it is a guest there; its own windows
    decide it)."""
    own = fuse_weights(window, num_frames, method, overlap)
    by_frame = dict(zip(window, own.tolist()))
    return torch.tensor([by_frame.get(f, float(own.min())) for f in frames], dtype=torch.float32)
