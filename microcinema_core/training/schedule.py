"""The learning-rate schedule: a linear warm-up, then constant or a cosine decay to ``min_ratio`` x the base rate.

A pure function of the step (no scheduler state), so a resumed run, on any number of ranks, continues on exactly
the curve an uninterrupted run follows.
"""
from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, warmup: int, total: int, schedule: str = "constant", min_ratio: float = 0.0) -> float:
    """Multiplier of each group's base rate for optimisation step ``step`` (0-based: the step being taken)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"--lr-schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if schedule == "constant" or total <= warmup:
        return warm
    progress = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    return warm * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))
