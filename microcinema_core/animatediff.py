"""AnimateDiff v1/v2/v3 motion-module files as MicroCinema temporal transformers (method.md section 2).

Public motion-module files name their temporal transformers
    down_blocks.<level>.motion_modules.<j>.temporal_transformer.<rest>
    mid_block.motion_modules.0.temporal_transformer.<rest>        (v2 only)
    up_blocks.<level>.motion_modules.<j>.temporal_transformer.<rest>
with <rest> in the same layout as ``temporal.TemporalTransformer``. Down block <level> j-th motion module sits after
the j-th animated SD input block of that resolution level; up block <level> counts levels from the deepest.
``pos_encoder.pe`` tables are not loaded: our sinusoidal positions are computed with the same formula.
"""
from __future__ import annotations

import re

import torch

from .layout import UNetLayout
from .temporal import sinusoidal_positions

_AD_KEY = re.compile(r"^(?:.*?\.)?(down_blocks|up_blocks|mid_block)\.(?:(\d+)\.)?motion_modules\.(\d+)\."
                     r"temporal_transformer\.(.+)$")


def is_animatediff(sd: dict) -> bool:
    return any(_AD_KEY.match(k) for k in sd)


def _targets(layout: UNetLayout) -> dict[tuple[str, int, int], str]:
    out: dict[tuple[str, int, int], str] = {}
    down: dict[int, list[int]] = {}
    for info in layout.input:
        if info.animated:
            down.setdefault(info.level, []).append(info.index)
    for level, indices in down.items():
        for j, i in enumerate(indices):
            out[("down_blocks", level, j)] = f"temporal.input.{i}.motion."
    deepest = layout.middle.level
    up: dict[int, list[int]] = {}
    for info in layout.output:
        up.setdefault(deepest - info.level, []).append(info.index)
    for up_level, indices in up.items():
        for j, i in enumerate(indices):
            out[("up_blocks", up_level, j)] = f"temporal.output.{i}.motion."
    out[("mid_block", 0, 0)] = "temporal.middle.motion."
    return out


def convert_animatediff(sd: dict[str, torch.Tensor], layout: UNetLayout) -> tuple[dict[str, torch.Tensor], bool]:
    """Module-format keys for the temporal transformers of an AnimateDiff file, and whether it has a mid block."""
    targets = _targets(layout)
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in sd.items():
        m = _AD_KEY.match(key)
        if not m:
            unknown.append(key)
            continue
        part, level, j, rest = m.group(1), int(m.group(2) or 0), int(m.group(3)), m.group(4)
        target = targets.get((part, level, j))
        if target is None:
            raise ValueError(f"AnimateDiff key {key} has no matching block in this UNet (other SD family?)")
        if rest.endswith("pos_encoder.pe"):
            _check_positions(key, tensor)
            continue
        out[target + rest.replace(".pos_encoder.", ".")] = tensor
    if unknown and not out:
        raise ValueError("not an AnimateDiff motion module: no motion_modules keys found")
    has_mid = any(k.startswith("temporal.middle.motion.") for k in out)
    return out, has_mid


def _check_positions(key: str, pe: torch.Tensor) -> None:
    """The stored table must be the sinusoid we compute (else the module was trained with other positions)."""
    if pe.ndim != 3:
        raise ValueError(f"{key}: unexpected positional table shape {tuple(pe.shape)}")
    ours = sinusoidal_positions(pe.shape[1], pe.shape[2])
    if pe.abs().max() > 0 and not torch.allclose(pe.float(), ours, atol=1e-3):
        raise ValueError(f"{key}: positional encoding differs from AnimateDiff's sinusoid; unsupported variant")
