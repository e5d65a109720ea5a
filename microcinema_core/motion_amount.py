"""Motion amount: a factor on what the temporal layers add, per clip or per frame (issue 18).

Every temporal layer is residual, ``h + r(h)`` (temporal convs of the pseudo-3D ResBlocks, motion modules), in the
main UNet and in AppearNet. The motion amount ``m`` makes it ``h + m_f * r(h)`` for frame ``f``. A module with the
text sign (our addition, see AppearNet) has one more motion signal, per frame rather than across frames: AppearNet
reads "the keyframe shifted by offset x sign"; on the demo it carries nearly all of the displacement
(docs/benchmarks.md), so the amount scales it too, as a speed (``scaled_offsets``). Then:
- m = 1 is the trained model (nothing is scaled at all, so it is bitwise the model without the setting);
- m = 0 removes every motion signal: each frame is the image model plus AppearNet's appearance of the keyframe,
  frame by frame (AppearNet's own temporal layers are scaled too; its ResBlock modulation lives inside the temporal
  conv's residual, so it goes with it; its attention injection stays);
- values in between or above interpolate / extrapolate them.

The setting travels in ``model_options["transformer_options"][MOTION_OPTION]`` (it survives clones, LoRA loaders
and every sampler). ``VideoUNet.forward`` turns it into one factor per latent frame of the whole batch (the kwarg
``MOTION_KWARG``) before context windows slice frames, so a frame's factor is taken at its true index in the
video; every video of a batch gets the same schedule.

Schedule strings: ``"0:1.0, 8:0.2"`` = (frame index: value) points, linearly interpolated over frame indices,
held constant before the first and after the last point; the per-frame factor is ``amount * schedule(f)``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional

import torch
from einops import repeat

from .conditioning import hint_offset

MOTION_OPTION = "microcinema_motion"  # transformer_options key set by MicroCinema Motion Amount
MOTION_KWARG = "mc_motion"  # per-frame factors [N] handed from VideoUNet.forward to each clip (window) forward
SCALE_OPTION = "microcinema_motion_scale"  # the current clip's FrameScale, read by each block

MAX_AMOUNT = 2.0  # the demo: keyframe SSIM 0.66 at 1, 0.60 at 1.5, 0.50 at 2 (docs/benchmarks.md)
_POINT = re.compile(r"^\s*(\d+)\s*:\s*([^\s,:]+)\s*$")


class ScheduleError(ValueError):
    """A schedule string or amount that cannot be used; the message says what is wrong (the node adds its name)."""


def check_amount(value: float, what: str = "the amount") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScheduleError(f"{what} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ScheduleError(f"{what} must be a finite number, got {value!r}")
    if not 0.0 <= value <= MAX_AMOUNT:
        raise ScheduleError(f"{what} must be between 0 and {MAX_AMOUNT:g}, got {value:g}")
    return value


def parse_schedule(text: str) -> tuple[tuple[int, float], ...]:
    """``"0:1.0, 8:0.2"`` -> ((0, 1.0), (8, 0.2)), sorted by frame; "" (or only blanks) -> ()."""
    if not isinstance(text, str):
        raise ScheduleError(f"the schedule must be text like '0:1.0, 8:0.2', got {text!r}")
    if not text.strip():
        return ()
    points: dict[int, float] = {}
    for part in text.split(","):
        match = _POINT.match(part)
        if match is None:
            raise ScheduleError(f"cannot read {part.strip()!r}: write frame:value pairs separated by commas, "
                                "e.g. '0:1.0, 8:0.2' (frame = a whole number from 0)")
        frame = int(match[1])
        try:
            value = float(match[2])
        except ValueError:
            raise ScheduleError(f"cannot read the value {match[2]!r} of frame {frame} as a number") from None
        if frame in points:
            raise ScheduleError(f"frame {frame} is given twice")
        points[frame] = check_amount(value, f"the value of frame {frame}")
    return tuple(sorted(points.items()))


def interpolate(points: tuple[tuple[int, float], ...], num_frames: int) -> list[float]:
    """The schedule's value at frames 0..num_frames-1 (linear between points, constant outside them)."""
    if not points:
        return [1.0] * num_frames
    values = []
    for f in range(num_frames):
        if f <= points[0][0]:
            values.append(points[0][1])
        elif f >= points[-1][0]:
            values.append(points[-1][1])
        else:
            (f0, v0), (f1, v1) = next((a, b) for a, b in zip(points, points[1:]) if a[0] <= f <= b[0])
            values.append(v0 + (v1 - v0) * (f - f0) / (f1 - f0))
    return values


@dataclass(frozen=True)
class MotionSettings:
    amount: float = 1.0
    schedule: tuple[tuple[int, float], ...] = ()

    def frame_values(self, num_frames: int) -> list[float]:
        """The factor of each frame of one video."""
        return [self.amount * v for v in interpolate(self.schedule, num_frames)]


def frame_positions(transformer_options: dict, kwargs: dict, num_frames: int) -> tuple[list[int], int]:
    """(the index in the whole video of each of this call's ``num_frames`` frames per video, the video's length).

    Our own context windows slice frames inside the model, after the factors are taken (VideoUNet.forward), so a
    call sees the whole clip: 0..T-1. ComfyUI's own windows (newer releases, stock_context.py) call the model per
    window; they put the window in ``transformer_options["context_window"]``. Its index list (with the frame newer
    releases prepend) locates the keyframe, and the hint's offset channel, (t - key) / T, sliced with the latent,
    then gives each frame's index, retained latent frames (``latent_retain_index_list``) included."""
    window = transformer_options.get("context_window")
    total = getattr(window, "total_frames", None)
    if window is None or not isinstance(total, int) or total <= num_frames or not hasattr(window, "get_tensor"):
        return list(range(num_frames)), num_frames
    held = [int(i) for i in window.get_tensor(torch.arange(total)).tolist()]
    hint = kwargs.get("mc_hint")
    if len(held) != num_frames:
        raise ScheduleError(f"MicroCinema Motion Amount: a context window of {len(held)} frames reached the model "
                            f"as {num_frames} frames; the motion amount cannot tell which frames they are")
    if hint is None:
        return held, total
    steps = torch.round(hint_offset(hint[:num_frames])[:, 0, 0, 0].detach().float().cpu() * total).long().tolist()
    keys = [t - d for t, d in zip(held, steps)]
    key = max(set(keys), key=keys.count)  # retained frames disagree with the index list; the others agree
    return [key + d for d in steps], total


def frame_amounts(settings: MotionSettings, positions: list[int], total: int, batch: int) -> torch.Tensor:
    """[batch] factors (fp32, CPU) for a sampler batch of batch // len(positions) videos whose frames are
    ``positions`` of ``total``-frame videos (CFG halves and several videos all get the same schedule)."""
    values = settings.frame_values(total)
    per_video = torch.tensor([values[min(max(f, 0), total - 1)] for f in positions], dtype=torch.float32)
    return repeat(per_video, "t -> (v t)", v=batch // len(positions))


def motion_inputs(settings: MotionSettings, transformer_options: dict, kwargs: dict, num_frames: int,
                  batch: int) -> dict:
    """The model kwargs the motion amount adds or replaces for one model call (before our context windows):
    ``MOTION_KWARG`` (one factor per frame) and, unless every factor is 1, ``mc_hint`` with scaled offsets."""
    positions, total = frame_positions(transformer_options, kwargs, num_frames)
    amounts = frame_amounts(settings, positions, total, batch)
    out = {MOTION_KWARG: amounts}
    hint = kwargs.get("mc_hint")
    if hint is not None and not bool(torch.all(amounts == 1)):
        out["mc_hint"] = scaled_offsets(hint, settings.frame_values(total), positions)
    return out


def scaled_offsets(hint: torch.Tensor, values: list[float], positions: Optional[list[int]] = None) -> torch.Tensor:
    """``hint`` with each frame's keyframe offset (the text sign's motion cue: "the keyframe shifted by offset x
    sign", see AppearNet) times the mean motion amount on the way from the keyframe to the frame, so the amount
    acts as a speed: constant m gives m x offset, 0 gives no cue, and a schedule slows or stops the object where its
    values are small (trapezoid rule between frames, the end values held outside the clip). ``values``: the
    per-frame amounts of a whole video; ``positions``: the video frame of each batch entry of a video (default
    0..len(values)-1), batch entry i being position i % len(positions)."""
    total = len(values)
    positions = list(range(total)) if positions is None else positions

    def cumulative(j: int) -> float:  # integral of the amount from frame 0 to frame j
        if j <= 0:
            return values[0] * j
        if j >= total - 1:
            return partial[-1] + values[-1] * (j - (total - 1))
        return partial[j]

    partial = [0.0]
    for a, b in zip(values, values[1:]):
        partial.append(partial[-1] + (a + b) / 2)
    offsets = hint_offset(hint)
    steps = torch.round(offsets[:, 0, 0, 0].detach().float().cpu() * total).long().tolist()
    factors = []
    for i, d in enumerate(steps):
        f = positions[i % len(positions)]
        factors.append((cumulative(f) - cumulative(f - d)) / d if d else 0.0)
    factor = torch.tensor(factors, dtype=torch.float32, device=hint.device).reshape(-1, 1, 1, 1)
    return torch.cat([hint[:, :-1], offsets * factor.to(hint.dtype)], dim=1)


@dataclass(frozen=True)
class FrameScale:
    """The factors of one clip forward: ``zero`` when every factor is 0 (temporal layers are skipped), else
    ``factor`` [N, 1, 1, 1] multiplies each frame's temporal residual."""
    factor: Optional[torch.Tensor]
    zero: bool

    @classmethod
    def of(cls, amounts: Optional[torch.Tensor], device) -> Optional["FrameScale"]:
        """None (nothing to scale: bitwise the trained model) when there are no factors or all are 1."""
        if amounts is None:
            return None
        cpu = amounts.detach().to("cpu")
        if bool(torch.all(cpu == 1)):
            return None
        if bool(torch.all(cpu == 0)):
            return cls(None, True)
        return cls(amounts.to(device=device, dtype=torch.float32).reshape(-1, 1, 1, 1), False)

    def apply(self, residual: torch.Tensor) -> torch.Tensor:
        """The residual ([N, c, h, w], frames in the batch) times its frame's factor."""
        if self.zero:
            return residual * 0
        return residual * self.factor.to(residual.dtype)
