"""Sliding context windows over the frame axis, inside the video model (long videos, bounded memory).

ComfyUI 0.3.75's own context windows crash for frames-in-batch models and never slice ControlNet hints; newer
versions need a per-model hook. We window inside ``VideoUNet`` instead: every model call over T frames becomes
calls over windows of ``length`` frames, each with its own slice of every per-frame input (latent, timestep,
text context, appearance hint and strength, ControlNet residuals), and the outputs are fused per frame with
the chosen weights. So it works with every sampler and ComfyUI version, the appearance and the noise prior
reach every window, and activation memory depends on the window length, not on T.

Schedules (frame indices per window), modelled on what AnimateDiff users know:
  static_standard   windows at a fixed step (length - overlap), the last one aligned to the end
  uniform_standard  AnimateDiff's uniform schedule: the static windows at dilations 1, 2, ..., 2^(stride-1)
  uniform_looped    the same, wrapping around the end (for looping clips)
  batched           non-overlapping chunks
``closed_loop`` adds windows that wrap from the end to the start. ``keep_keyframe`` puts the keyframe frame in
every window (it anchors appearance, as ADE's reference frame does); its output is fused like any frame.
Fuse methods: flat, pyramid, relative (pyramid normalised per window), gaussian, overlap-linear.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SCHEDULES = ("static_standard", "uniform_standard", "uniform_looped", "batched")
FUSE_METHODS = ("pyramid", "flat", "relative", "gaussian", "overlap-linear")


@dataclass(frozen=True)
class ContextSettings:
    length: int = 16
    overlap: int = 4
    schedule: str = "static_standard"
    stride: int = 1
    closed_loop: bool = False
    fuse_method: str = "pyramid"
    keep_keyframe: bool = True

    def validate(self) -> None:
        if self.length < 2:
            raise ValueError("context length must be at least 2 frames")
        if not 0 <= self.overlap < self.length:
            raise ValueError(f"context overlap must be between 0 and length-1 ({self.length - 1})")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown context schedule {self.schedule!r}; one of {SCHEDULES}")
        if self.fuse_method not in FUSE_METHODS:
            raise ValueError(f"unknown fuse method {self.fuse_method!r}; one of {FUSE_METHODS}")
        if self.stride < 1:
            raise ValueError("context stride must be >= 1")


def _static(num_frames: int, length: int, overlap: int, dilation: int = 1) -> list[list[int]]:
    span = (length - 1) * dilation + 1
    if span >= num_frames:
        return [list(range(0, num_frames, dilation))] if dilation > 1 else [list(range(num_frames))]
    step = max(1, (length - overlap) * dilation)
    starts = list(range(0, num_frames - span + 1, step))
    if starts[-1] != num_frames - span:
        starts.append(num_frames - span)
    return [[s + i * dilation for i in range(length)] for s in starts]


def _looped(num_frames: int, length: int, overlap: int, dilation: int = 1) -> list[list[int]]:
    step = max(1, (length - overlap) * dilation)
    windows = []
    for start in range(0, num_frames, step):
        windows.append([(start + i * dilation) % num_frames for i in range(length)])
    return windows


def window_indices(num_frames: int, s: ContextSettings) -> list[list[int]]:
    """Frame indices of every window; every frame is covered at least once."""
    s.validate()
    if num_frames <= s.length:
        return [list(range(num_frames))]
    if s.schedule == "batched":
        windows = [list(range(a, min(a + s.length, num_frames))) for a in range(0, num_frames, s.length)]
    elif s.schedule == "static_standard":
        windows = _static(num_frames, s.length, s.overlap)
    else:
        make = _looped if s.schedule == "uniform_looped" else _static
        windows = []
        for level in range(s.stride):
            dilation = 2 ** level
            if (s.length - 1) * dilation + 1 > num_frames and level > 0:
                break
            windows += make(num_frames, s.length, s.overlap, dilation)
    if s.closed_loop and s.schedule != "uniform_looped":
        half = s.length // 2
        windows.append([(num_frames - half + i) % num_frames for i in range(s.length)])
    unique = []
    for w in windows:
        if w not in unique:
            unique.append(w)
    return unique


def with_keyframe(window: list[int], keyframe: int) -> list[int]:
    """The window with the keyframe frame in it (in time order), if it is not there yet."""
    return window if keyframe in window else sorted(window + [keyframe])


def fuse_weights(window_length: int, method: str, overlap: int = 0) -> torch.Tensor:
    """Per-position weights of one window's output ([window_length], all > 0)."""
    n = window_length
    if method == "flat":
        w = torch.ones(n)
    elif method in ("pyramid", "relative"):
        w = torch.tensor([min(i + 1, n - i) for i in range(n)], dtype=torch.float32)
        if method == "relative":
            w = w / w.sum()
    elif method == "gaussian":
        centre, sigma = (n - 1) / 2, max(n / 4, 1e-3)
        w = torch.tensor([math.exp(-0.5 * ((i - centre) / sigma) ** 2) for i in range(n)])
    elif method == "overlap-linear":
        w = torch.ones(n)
        ramp = max(1, min(overlap, n // 2))
        for i in range(ramp):
            w[i] = w[n - 1 - i] = (i + 1) / (ramp + 1)
    else:
        raise ValueError(f"unknown fuse method {method!r}")
    return w.clamp_min(1e-6)
