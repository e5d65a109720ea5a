"""Collating samples into a micro-batch: tensors (frames, cached latents, contexts) are stacked, everything else
(ordinals, captions, keyframe indices, names, skipped clips) stays a list in sample order."""
from __future__ import annotations

import torch


def collate(samples: list[dict]) -> dict:
    batch = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        batch[key] = torch.stack(values) if torch.is_tensor(values[0]) else values
    return batch
