"""A compact, fork-friendly table of clips: one row per clip, columns in numpy arrays and byte buffers.

A list of millions of small Python objects would cost ~100+ bytes of object headers per field, and every DataLoader
worker would slowly copy it (reference counting writes to the pages that fork shared). Here strings live in one
``bytes`` buffer with an offsets array, numbers in numpy arrays: a few objects in all, whatever the row count.

Columns: ``path`` (relative paths resolve against ``root``; for a tar row, the member's name), ``caption`` (inline
text, "" = none), ``caption_file`` (where to read the caption when the sample is drawn: none, the ``.txt`` beside the
video, or ``caption.txt`` inside a frame folder), ``fps`` and ``frames`` (0 = unknown: read from the clip's header),
``shard`` / ``offset`` / ``size`` (tar rows: the shard's number in ``shards`` and the member's data bytes).
"""
from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field

import numpy as np

CAPTION_INLINE, CAPTION_BESIDE, CAPTION_INSIDE = 0, 1, 2


class DataError(ValueError):
    """The training data source cannot be used; the message names the source (folder, manifest or shard)."""


class StringTable:
    """Append-only strings stored as UTF-8 in one buffer; ``table[i]`` decodes the i-th."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._ends = array("q")
        self._frozen: tuple[bytes, np.ndarray] | None = None

    def append(self, text: str) -> None:
        self._buffer += text.encode("utf-8", "surrogateescape")
        self._ends.append(len(self._buffer))

    def freeze(self) -> "StringTable":
        """Make the table read-only in its final form (a bytes object and an int64 array)."""
        if self._frozen is None:
            self._frozen = (bytes(self._buffer), np.frombuffer(self._ends, dtype=np.int64).copy())
            self._buffer, self._ends = bytearray(), array("q")
        return self

    def __len__(self) -> int:
        return len(self._frozen[1]) if self._frozen is not None else len(self._ends)

    def __getitem__(self, i: int) -> str:
        data, ends = self._frozen if self._frozen is not None else (self._buffer, self._ends)
        start = int(ends[i - 1]) if i > 0 else 0
        return bytes(data[start:int(ends[i])]).decode("utf-8", "surrogateescape")


@dataclass
class ClipIndex:
    source: str                 # what the user named (for messages)
    root: str                   # base of relative paths
    shards: list[str] = field(default_factory=list)
    flat_fallback: bool = False  # WebVid: <root>/<videoid>.mp4 when <root>/<page_dir>/<videoid>.mp4 is missing
    path: StringTable = field(default_factory=StringTable)
    caption: StringTable = field(default_factory=StringTable)
    caption_file: np.ndarray | array = field(default_factory=lambda: array("B"))
    fps: np.ndarray | array = field(default_factory=lambda: array("f"))
    frames: np.ndarray | array = field(default_factory=lambda: array("i"))
    shard: np.ndarray | array = field(default_factory=lambda: array("i"))
    offset: np.ndarray | array = field(default_factory=lambda: array("q"))
    size: np.ndarray | array = field(default_factory=lambda: array("q"))

    def add(self, path: str, caption: str = "", caption_file: int = CAPTION_INLINE, fps: float = 0.0,
            frames: int = 0, shard: int = -1, offset: int = 0, size: int = 0) -> None:
        self.path.append(path)
        self.caption.append(caption)
        self.caption_file.append(caption_file)
        self.fps.append(fps)
        self.frames.append(frames)
        self.shard.append(shard)
        self.offset.append(offset)
        self.size.append(size)

    def freeze(self) -> "ClipIndex":
        """Turn the growing arrays into numpy arrays (call once, after the last ``add``)."""
        self.path.freeze()
        self.caption.freeze()
        for name, dtype in (("caption_file", np.uint8), ("fps", np.float32), ("frames", np.int32),
                            ("shard", np.int32), ("offset", np.int64), ("size", np.int64)):
            setattr(self, name, np.asarray(getattr(self, name), dtype=dtype))
        return self

    def __len__(self) -> int:
        return len(self.path)

    def is_member(self, i: int) -> bool:
        return int(self.shard[i]) >= 0

    def location(self, i: int) -> str:
        """The clip's file (or, for a tar member, its shard), as opened."""
        if self.is_member(i):
            return self.shards[int(self.shard[i])]
        path = os.path.join(self.root, self.path[i])
        if self.flat_fallback and not os.path.exists(path):
            flat = os.path.join(self.root, os.path.basename(path))
            if os.path.exists(flat):
                return flat
        return path

    def name(self, i: int) -> str:
        """How messages name the clip: its path as listed, or shard:member."""
        if self.is_member(i):
            return f"{self.shards[int(self.shard[i])]}:{self.path[i]}"
        return os.path.join(self.root, self.path[i])

    def read_caption(self, i: int) -> str:
        """The caption, reading its text file only now (scans never open one file per clip)."""
        kind = int(self.caption_file[i])
        if kind != CAPTION_INLINE:
            base = self.location(i)
            if kind == CAPTION_BESIDE:
                text_path = os.path.splitext(base)[0] + ".txt"
            else:
                text_path = os.path.join(base, "caption.txt")
            try:
                with open(text_path, encoding="utf-8", errors="replace") as f:
                    text = f.read().strip()
                if text:
                    return text
            except (FileNotFoundError, NotADirectoryError):
                pass
        return self.caption[i].strip()
