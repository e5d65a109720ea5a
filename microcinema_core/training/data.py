"""Training clips for the DataLoader: ``ClipDataset(source, frames=..., size=...)[n]`` is the n-th sample of the run.

Sources (see ``clip_sources``): a folder of captioned clips (``clip.mp4`` + ``clip.txt``, frame folders with
``caption.txt``, ``captions.json``), a ``.csv``/``.parquet`` manifest (ours, from ``python -m
microcinema_core.prepare``, or WebVid's columns), or webdataset-style ``.tar`` shards, read by random access (the
shards must be on local or mounted storage).

Memory stays bounded: the index is a few numpy arrays and byte buffers, nothing decoded is cached, and a sample
decodes only the frames of its window (``video_decode``), scaled at decode time.

Everything about sample ``n`` depends only on (seed, n): the clip (``seeding.epoch_order`` of epoch ``n // len``),
its keyframe and caption dropout (``seeding.sample_choices``, as every dataset of the pack draws them), its window
start (``seeding.python_rng(seed, n, "window")``) and the clips passed over when one is unusable (the next ones of
the same epoch order). So any rank, worker or resumed run draws the same
sample for the same ordinal. A bad clip (unreadable, truncated, not a video, too short, no caption) is logged once
per process, listed in the sample's ``skipped`` and replaced by the next candidate; only ``max_skips`` bad
candidates in a row (or a whole index of bad clips) end the run, with a DataError naming the source.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from . import seeding
from .batching import collate  # noqa: F401  (the DataLoader collate_fn for these samples)
from .clip_index import ClipIndex, DataError
from .clip_sources import load_index
from .video_decode import BadClip, clip_errors, describe, open_clip, read_member

__all__ = ["ClipDataset", "DataError", "FrameWindow", "IndexOrder", "collate"]

log = logging.getLogger("microcinema.data")
WINDOW_MODES = ("random", "first")


@dataclass(frozen=True)
class FrameWindow:
    """Which source frames make a sample: every ``stride``-th frame, or, with ``fps`` > 0, frames at that rate
    (time-based: sample i at start + i / fps, the nearest source frame). Positions are in source frames; clips
    without a known rate (frame folders without a manifest ``fps``) use ``stride``."""

    frames: int
    stride: int = 1
    fps: float = 0.0

    def step(self, clip_fps: float) -> float:
        return clip_fps / self.fps if self.fps > 0 and clip_fps > 0 else float(self.stride)

    def needed(self, clip_fps: float) -> int:
        """Source frames the window spans."""
        return math.ceil((self.frames - 1) * self.step(clip_fps) - 1e-6) + 1

    def last_start(self, count: int, clip_fps: float) -> int:
        """The last valid start frame in a clip of ``count`` frames; -1 when the clip is too short."""
        return math.floor(count - 1 - (self.frames - 1) * self.step(clip_fps) + 1e-6)

    def positions(self, start: int, clip_fps: float) -> list[float]:
        step = self.step(clip_fps)
        return [start + i * step for i in range(self.frames)]


class ClipDataset(Dataset):
    """Map-style dataset over sample ordinals: any ``n >= 0`` (epochs repeat the index in a new order).

    ``__getitem__(n)`` returns {"frames": uint8 [frames, size, size, 3], "caption", "key_index", "ordinal": n,
    "name": the clip's path (shard:member for tar shards), "skipped": ["name: reason", ...]}.
    Nothing is opened at construction beyond the index: workers open clips lazily, per sample."""

    def __init__(self, source: str, *, frames: int, size: int, stride: int = 1, fps: float = 0.0,
                 video_root: str | None = None, keyframe: str = "center", text_dropout: float = 0.0,
                 window: str = "random", seed: int = 0, max_skips: int = 32, holdout: int = 0):
        if frames < 1 or size < 1 or stride < 1 or fps < 0 or max_skips < 1:
            raise ValueError(f"ClipDataset: frames, size, stride, max_skips must be >= 1 and fps >= 0 "
                             f"(got frames={frames}, size={size}, stride={stride}, fps={fps}, max_skips={max_skips})")
        if keyframe not in seeding.KEYFRAME_MODES:
            raise ValueError(f"keyframe mode {keyframe!r}: expected one of {', '.join(seeding.KEYFRAME_MODES)}")
        if window not in WINDOW_MODES:
            raise ValueError(f"window {window!r}: expected one of {', '.join(WINDOW_MODES)}")
        if not 0.0 <= text_dropout <= 1.0:
            raise ValueError(f"text_dropout {text_dropout} is not a probability")
        self.source = str(source)
        self.index: ClipIndex = load_index(self.source, video_root)
        self.window = FrameWindow(frames, stride, fps)
        self.size, self.keyframe, self.text_dropout = size, keyframe, text_dropout
        self.window_mode, self.seed, self.max_skips = window, seed, max_skips
        if not 0 <= holdout < len(self.index):
            raise DataError(f"{self.source}: cannot hold out {holdout} of its {len(self.index)} clips for validation "
                            "(at least one must remain to train on)")
        self.holdout = holdout
        self._epoch, self._order = -1, np.empty(0, np.int64)
        self._warned: set[int] = set()

    def __getstate__(self) -> dict:
        # A worker started by pickling (spawn) recomputes its epoch order rather than receiving one.
        state = dict(self.__dict__)
        state["_epoch"], state["_order"], state["_warned"] = -1, np.empty(0, np.int64), set()
        return state

    def __len__(self) -> int:
        return len(self.index) - self.holdout

    def held_out(self) -> range:
        """Clip numbers of the index that training never draws (``holdout``: the last ones), for validation."""
        return range(len(self), len(self.index))

    def order(self, epoch: int) -> np.ndarray:
        """The clip order of ``epoch`` (only the current epoch's permutation is kept)."""
        if epoch != self._epoch:
            self._order = seeding.epoch_order(self.seed, epoch, len(self)).numpy()
            self._epoch = epoch
        return self._order

    def __getitem__(self, n: int) -> dict:
        n = int(n)
        if n < 0:
            raise IndexError(f"sample ordinal {n} < 0")
        count = len(self)
        epoch, position = divmod(n, count)
        order = self.order(epoch)
        key_index, dropped = seeding.sample_choices(self.seed, n, self.window.frames, self.keyframe, self.text_dropout)
        errors = clip_errors()
        skipped: list[str] = []
        tries = min(self.max_skips, count)
        for k in range(tries):
            clip = int(order[(position + k) % count])
            try:
                frames, caption = self._load(clip, n, dropped)
            except errors as exc:
                skipped.append(f"{self.index.name(clip)}: {self._note_bad(clip, exc)}")
                continue
            return {"frames": frames, "caption": caption, "key_index": key_index, "ordinal": n,
                    "name": self.index.name(clip), "skipped": skipped}
        raise DataError(f"{self.source}: no usable clip among {tries} tried for sample {n} ({count} in the index, "
                        f"max_skips={self.max_skips}), e.g. {'; '.join(skipped[:3])}")

    def clip_sample(self, clip: int, n: int) -> dict:
        """Clip ``clip`` itself with the random choices of ordinal ``n`` and no substitute: "frames" is None and
        "reason" says why when the clip is unusable."""
        key_index, dropped = seeding.sample_choices(self.seed, n, self.window.frames, self.keyframe, self.text_dropout)
        sample = {"frames": None, "caption": "", "key_index": key_index, "ordinal": n, "name": self.index.name(clip),
                  "skipped": [], "reason": ""}
        try:
            sample["frames"], sample["caption"] = self._load(clip, n, dropped)
        except clip_errors() as exc:
            sample["reason"] = self._note_bad(clip, exc)
        return sample

    def _note_bad(self, clip: int, exc: BaseException) -> str:
        reason = describe(exc)
        if clip not in self._warned:  # once per clip and process: a bad clip is met again every epoch
            self._warned.add(clip)
            log.warning("skipping clip %s: %s", self.index.name(clip), reason)
        return reason

    def _load(self, clip: int, n: int, dropped: bool) -> tuple[torch.Tensor, str]:
        index = self.index
        caption = "" if dropped else index.read_caption(clip)
        if not caption and not dropped:
            raise BadClip("no caption")
        location = index.location(clip)
        known_fps, known_frames = float(index.fps[clip]), int(index.frames[clip])
        if index.is_member(clip):
            data = read_member(location, int(index.offset[clip]), int(index.size[clip]))
            reader = open_clip(index.path[clip], data, known_fps)
        else:
            reader = open_clip(location, None, known_fps)
        with reader:
            # a manifest's figures win over the header's (prepare measured them; webm headers only estimate)
            fps = known_fps or reader.info.fps
            count = known_frames or reader.info.frames
            if count <= 0:
                raise BadClip("frame count unknown (no frames or duration in the header)")
            last = self.window.last_start(count, fps)
            if last < 0:
                rate = f" at {fps:g} fps" if fps else ""
                raise BadClip(f"too short: {count} frames{rate}, the window needs {self.window.needed(fps)}")
            start = 0 if self.window_mode == "first" else seeding.python_rng(self.seed, n, "window").randint(0, last)
            frames = reader.read(self.window.positions(start, fps), self.size, fps)
        return torch.from_numpy(frames), caption


class IndexOrder(Dataset):
    """Every clip of a ClipDataset once, in index order, with no substitutes (precompute caches each clip once and
    lists the bad ones): item i is clip i with the choices of ordinal i, "frames" None and a "reason" when unusable.
    ``collate`` does not take such samples; use a list collate_fn and filter."""

    def __init__(self, clips: ClipDataset):
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= int(i) < len(self.clips):
            raise IndexError(f"clip {i} of {len(self.clips)}")
        return self.clips.clip_sample(int(i), int(i))


