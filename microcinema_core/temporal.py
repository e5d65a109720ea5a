"""Temporal layers that inflate an SD UNet to video (method.md section 2).

Frames travel in the batch dimension: every tensor is [(b t), c, h, w] with the t frames of one video
consecutive; ``num_frames`` tells the layers how to regroup them.

- ``TemporalConv``: the pseudo-3D layer placed after each spatial stage of a ResBlock. GroupNorm over
  (T, H, W) -> SiLU -> conv with kernel 3 over time and 1x1 over space, residual. Its last conv is zero-
  initialised, so an untrained layer is the identity. The conv is a Conv2d with kernel (3, 1) over a
  [b, c, t, h*w] view instead of a Conv3d: same maths, and it runs where Conv3d does not (Apple MPS).
  An optional SPADE modulation ``(1 + gamma) * GN(h) + beta`` is how AppearNet reaches ResBlocks.
- ``TemporalTransformer``: temporal self-attention over the frame axis in the AnimateDiff motion-module
  layout (same sub-module names and tensor shapes), so AnimateDiff v1/v2/v3 motion modules can initialise
  it. Its output projection is zero-initialised, so an untrained module is the identity too.
"""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Callable, Optional

import torch
import torch.nn.functional as F
from comfy.ldm.modules.attention import optimized_attention_for_device
from einops import rearrange
from torch import nn

if TYPE_CHECKING:
    from .motion_amount import FrameScale

log = logging.getLogger(__name__)

# Temporal attention runs over [(b h w), t, c]. On CPU ComfyUI's small-input choice is ``attention_basic`` (SDPA is
# off there unless --use-pytorch-cross-attention), which materialises fp32 scores [(b h w) * heads, t, t] and their
# softmax at once: memory grows with t^2 (4096 frames: gigabytes). Above this many bytes of scores, the call is split
# into chunks of rows (spatial positions) and, when one row alone is too big, of query frames, so memory grows with
# t only. Every chunk still goes through ComfyUI's chosen function, and below the budget nothing changes.
ATTENTION_CHUNK_BYTES = 256 * 2**20
# Copies of the [rows * heads, queries, t] scores alive at once in the materialising paths: the fp32 scores and
# their softmax (attention_basic; SDPA's math kernel likewise).
_SCORE_COPIES = 2


def sinusoidal_positions(num_frames: int, channels: int, device=None, dtype=None) -> torch.Tensor:
    """[1, T, C] sinusoidal frame positions, identical to AnimateDiff's PositionalEncoding table (sin on even
    channels, cos on odd ones, frequencies 10000^(-2i/C)); computed for any T instead of a stored table."""
    position = torch.arange(num_frames, dtype=torch.float32, device=device)[:, None]
    div_term = torch.exp(torch.arange(0, channels, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / channels))
    pe = torch.zeros(1, num_frames, channels, dtype=torch.float32, device=device)
    pe[0, :, 0::2] = torch.sin(position * div_term)
    pe[0, :, 1::2] = torch.cos(position * div_term)
    return pe.to(dtype) if dtype is not None else pe


def attention_chunks(rows: int, frames: int, heads: int, budget: int = 0) -> tuple[int, int]:
    """(rows per call, query frames per call) that keep one call's scores within ``budget`` bytes
    (0: ``ATTENTION_CHUNK_BYTES``). (rows, frames) when the whole call fits: no chunking."""
    budget = budget or ATTENTION_CHUNK_BYTES
    per_row = heads * frames * frames * 4 * _SCORE_COPIES
    if rows * per_row <= budget:
        return rows, frames
    if per_row <= budget:
        return max(1, budget // per_row), frames
    return 1, max(1, budget // (heads * frames * 4 * _SCORE_COPIES))


def chunked_attention(attention: Callable, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                      budget: int = 0) -> torch.Tensor:
    """``attention(q, k, v, heads)`` for [rows, t, c] inputs, in chunks whose scores fit ``budget`` bytes.
    Rows are independent sequences and every query frame's output depends only on its own scores row, so the
    chunks give the same result as one call (up to float summation order)."""
    rows, frames, _ = q.shape
    row_chunk, frame_chunk = attention_chunks(rows, frames, heads, budget)
    if row_chunk >= rows and frame_chunk >= frames:
        return attention(q, k, v, heads)  # exactly today's call: small clips are bitwise unchanged
    log.debug("temporal attention over %d frames x %d positions in chunks of %d positions x %d frames",
              frames, rows, row_chunk, frame_chunk)
    out: torch.Tensor | None = None
    for r0 in range(0, rows, row_chunk):
        r1 = min(rows, r0 + row_chunk)
        keys, values = k[r0:r1], v[r0:r1]
        for f0 in range(0, frames, frame_chunk):
            f1 = min(frames, f0 + frame_chunk)
            # attention_pytorch views its inputs as [b, t, heads, d]: a slice of query frames must be contiguous
            part = attention(q[r0:r1, f0:f1].contiguous(), keys, values, heads)
            if out is None:
                out = torch.empty(rows, frames, part.shape[-1], dtype=part.dtype, device=part.device)
            out[r0:r1, f0:f1] = part
    return out


class TemporalConv(nn.Module):
    """h + Conv_t(SiLU(Norm(h))), Norm = GroupNorm over (T, H, W), optionally SPADE-modulated."""

    zero_init = ("conv",)

    def __init__(self, channels: int, operations, dtype=None, device=None):
        super().__init__()
        self.norm = operations.GroupNorm(32, channels, dtype=dtype, device=device)
        self.conv = operations.Conv2d(channels, channels, kernel_size=(3, 1), padding=(1, 0), dtype=dtype, device=device)

    def forward(self, h: torch.Tensor, num_frames: int, gamma: Optional[torch.Tensor] = None,
                beta: Optional[torch.Tensor] = None, scale: Optional[FrameScale] = None) -> torch.Tensor:
        """``scale``: the motion amount per frame (motion_amount.py), applied to the residual only."""
        height = h.shape[-2]
        x = rearrange(h, "(b t) c h w -> b c t h w", t=num_frames)
        x = self.norm(x)
        if gamma is not None:
            x = x * (1 + rearrange(gamma, "(b t) c h w -> b c t h w", t=num_frames)) \
                + rearrange(beta, "(b t) c h w -> b c t h w", t=num_frames)
        x = F.silu(x)
        x = self.conv(rearrange(x, "b c t h w -> b c t (h w)"))
        residual = rearrange(x, "b c t (h w) -> (b t) c h w", h=height)
        return h + (residual if scale is None else scale.apply(residual))


class ResBlockTemporal(nn.Module):
    """The two temporal layers of one pseudo-3D ResBlock (after in_layers and after out_layers)."""

    def __init__(self, channels_after_in: int, operations, dtype=None, device=None):
        super().__init__()
        self.t1 = TemporalConv(channels_after_in, operations, dtype, device)
        self.t2 = TemporalConv(channels_after_in, operations, dtype, device)


class TemporalAttention(nn.Module):
    """AnimateDiff's "VersatileAttention" in temporal self-attention mode: positions added, then attention
    across frames for every spatial location (ComfyUI's attention functions do the maths)."""

    def __init__(self, channels: int, heads: int, operations, dtype=None, device=None):
        super().__init__()
        self.heads = heads
        self.to_q = operations.Linear(channels, channels, bias=False, dtype=dtype, device=device)
        self.to_k = operations.Linear(channels, channels, bias=False, dtype=dtype, device=device)
        self.to_v = operations.Linear(channels, channels, bias=False, dtype=dtype, device=device)
        self.to_out = nn.ModuleList([operations.Linear(channels, channels, dtype=dtype, device=device), nn.Dropout(0.0)])
        # A narrow training twin (see narrow.py) adds the wide model's positions at the channels it keeps:
        # (wide channel count, indices of the kept channels). None: positions for this layer's own width.
        self.position_channels: tuple[int, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [(b h w), t, c]
        if self.position_channels is None:
            x = x + sinusoidal_positions(x.shape[1], x.shape[2], device=x.device, dtype=x.dtype)
        else:
            width, kept = self.position_channels
            x = x + sinusoidal_positions(x.shape[1], width, device=x.device, dtype=x.dtype)[..., kept.to(x.device)]
        # Sequences are usually only T frames long: ComfyUI's small-input choice (SDPA, or the basic kernel where
        # SDPA is off) beats the chunked kernels it picks for long image sequences (sub-quadratic on CPU). Long
        # clips are split so the scores never exceed ATTENTION_CHUNK_BYTES (see chunked_attention).
        attention = optimized_attention_for_device(x.device, small_input=True)
        out = chunked_attention(attention, self.to_q(x), self.to_k(x), self.to_v(x), self.heads)
        return self.to_out[0](out)


class GEGLUFeedForward(nn.Module):
    """Feed-forward with a GEGLU input projection, AnimateDiff/diffusers key names (net.0.proj, net.2)."""

    def __init__(self, channels: int, mult: int, operations, dtype=None, device=None):
        super().__init__()
        inner = channels * mult
        proj = nn.Module()
        proj.proj = operations.Linear(channels, inner * 2, dtype=dtype, device=device)
        self.net = nn.ModuleList([proj, nn.Dropout(0.0), operations.Linear(inner, channels, dtype=dtype, device=device)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, gate = self.net[0].proj(x).chunk(2, dim=-1)
        return self.net[2](hidden * F.gelu(gate))


class TemporalTransformerBlock(nn.Module):
    def __init__(self, channels: int, heads: int, attention_blocks: int, ff_mult: int, operations,
                 dtype=None, device=None):
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            [TemporalAttention(channels, heads, operations, dtype, device) for _ in range(attention_blocks)])
        self.norms = nn.ModuleList(
            [operations.LayerNorm(channels, dtype=dtype, device=device) for _ in range(attention_blocks)])
        self.ff = GEGLUFeedForward(channels, ff_mult, operations, dtype, device)
        self.ff_norm = operations.LayerNorm(channels, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = attention(norm(x)) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer(nn.Module):
    """AnimateDiff "TemporalTransformer3DModel": per-frame GroupNorm -> proj_in -> temporal blocks -> proj_out,
    residual. Sub-module names match the public motion-module files."""

    zero_init = ("proj_out",)

    def __init__(self, channels: int, heads: int = 8, attention_blocks: int = 2, ff_mult: int = 4,
                 layers: int = 1, operations=None, dtype=None, device=None):
        super().__init__()
        self.norm = operations.GroupNorm(32, channels, eps=1e-6, dtype=dtype, device=device)
        self.proj_in = operations.Linear(channels, channels, dtype=dtype, device=device)
        self.transformer_blocks = nn.ModuleList([
            TemporalTransformerBlock(channels, heads, attention_blocks, ff_mult, operations, dtype, device)
            for _ in range(layers)])
        self.proj_out = operations.Linear(channels, channels, dtype=dtype, device=device)

    def forward(self, h: torch.Tensor, num_frames: int, scale: Optional[FrameScale] = None) -> torch.Tensor:
        """``scale``: the motion amount per frame (motion_amount.py), applied to the residual only."""
        height, width = h.shape[-2:]
        x = self.norm(h)
        x = rearrange(x, "(b t) c h w -> (b h w) t c", t=num_frames)
        x = self.proj_in(x)
        for block in self.transformer_blocks:
            x = block(x)
        x = self.proj_out(x)
        residual = rearrange(x, "(b h w) t c -> (b t) c h w", h=height, w=width)
        return h + (residual if scale is None else scale.apply(residual))
