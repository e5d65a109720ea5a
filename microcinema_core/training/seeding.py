"""Per-sample randomness derived from (seed, sample ordinal, purpose), never from a process-wide RNG.

Every random choice about one training sample (which clip, where its window starts, where its keyframe sits,
whether its caption is dropped, its noise and timestep) comes from a generator seeded by the run's seed and the
sample's ordinal: the n-th sample of the run. Ordinals are handed out per optimisation step (``ordinals_for``),
so the same sample gets the same choices whichever rank, DataLoader worker or resumed process draws it: a run
resumes exactly at any world size, and 2 ranks x batch 1 see what 1 process x batch 2 sees.
"""
from __future__ import annotations

import hashlib
import random

import torch

KEYFRAME_MODES = ("center", "random", "mixed")


def derive_seed(seed: int, ordinal: int, purpose: str) -> int:
    """A 63-bit seed from the three parts; a hash, so nearby ordinals give unrelated streams."""
    digest = hashlib.blake2b(f"{seed}/{ordinal}/{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def python_rng(seed: int, ordinal: int, purpose: str) -> random.Random:
    return random.Random(derive_seed(seed, ordinal, purpose))


def torch_generator(seed: int, ordinal: int, purpose: str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, ordinal, purpose))


def epoch_order(seed: int, epoch: int, count: int) -> torch.Tensor:
    """The order clips are visited in during ``epoch`` (a permutation of range(count))."""
    return torch.randperm(count, generator=torch_generator(seed, epoch, "epoch-order"))


def keyframe_index(rng: random.Random, frames: int, mode: str) -> int:
    """center: the paper's centre frame; random: anywhere; mixed: centre half of the time, else anywhere (what the
    demo trains with, so that the keyframe-position input of the nodes is learnt too)."""
    if mode == "center":
        return frames // 2
    if mode == "random":
        return rng.randrange(frames)
    if mode == "mixed":
        return frames // 2 if rng.random() < 0.5 else rng.randrange(frames)
    raise ValueError(f"keyframe mode {mode!r}: expected one of {', '.join(KEYFRAME_MODES)}")


def ordinals_for(step_start: int, micro: int, rank: int, world: int, batch: int) -> list[int]:
    """The sample ordinals rank ``rank`` trains on in micro-batch ``micro`` of the optimisation step whose first
    sample is ordinal ``step_start``.

    A step consumes ``world * batch * grad_accum`` consecutive ordinals, laid out micro-batch-major, then rank, then
    item, so that (world 2, batch 1), (world 1, batch 2) and (world 1, batch 1, grad_accum 2) all cover the same
    samples in each step. The loop keeps ``step_start`` in its resume state (not the step number), so a run
    resumed with another global batch still never repeats nor skips an ordinal."""
    first = step_start + (micro * world + rank) * batch
    return list(range(first, first + batch))


def sample_choices(seed: int, ordinal: int, frames: int, keyframe: str, text_dropout: float) -> tuple[int, bool]:
    """(keyframe index, drop the caption?) of one sample: shared by every dataset so that a clip read from video
    files and the same clip read from the latent cache train identically."""
    key = keyframe_index(python_rng(seed, ordinal, "keyframe"), frames, keyframe)
    dropped = text_dropout > 0 and python_rng(seed, ordinal, "text-dropout").random() < text_dropout
    return key, dropped
