"""The demo's training data: synthetic shape clips rendered on the fly, as a map-style Dataset over sample
ordinals (an unlimited stream: sample n is rendered from (seed, n), so there is nothing to overfit and no file to
read). Samples have the same keys as data.ClipDataset's, so the one loop and collate function take either."""
from __future__ import annotations

import torch

from . import seeding, synthetic


class SyntheticClips(torch.utils.data.Dataset):
    """``frames_per_sample`` 1 gives single frames (the demo's image phase) drawn from a clip of ``clip_frames``."""

    def __init__(self, clip_frames: int, size: int, seed: int, keyframe: str = "mixed", text_dropout: float = 0.1,
                 frames_per_sample: int | None = None):
        self.clip_frames, self.size, self.seed = clip_frames, size, seed
        self.keyframe, self.text_dropout = keyframe, text_dropout
        self.frames_per_sample = frames_per_sample or clip_frames

    def __len__(self) -> int:
        return 1 << 62  # any ordinal is a sample

    def __getitem__(self, n: int) -> dict:
        rng = seeding.python_rng(self.seed, n, "synthetic-clip")
        spec = synthetic.random_spec(rng, self.clip_frames)
        clip = torch.from_numpy(synthetic.render_clip(spec, self.clip_frames, self.size))
        if self.frames_per_sample == 1:
            clip = clip[rng.randrange(self.clip_frames)][None]
        key, drop = seeding.sample_choices(self.seed, n, clip.shape[0], self.keyframe, self.text_dropout)
        return {"frames": clip, "caption": "" if drop else spec.caption, "key_index": key, "ordinal": n,
                "name": f"synthetic/{n}", "skipped": []}
