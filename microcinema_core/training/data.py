"""Captioned video clips from a folder.

Accepted items (captions from a same-named ``.txt`` beside a video file, ``caption.txt`` inside a frame
folder, or a ``captions.json`` {name: caption} at the root; missing captions are empty strings):
    clip.mp4 / clip.webm / clip.mov / clip.mkv (PyAV) / clip.gif (Pillow) + clip.txt
    clip_folder/000.png, 001.png ... + clip_folder/caption.txt
A clip of ``frames`` frames, every ``stride``-th frame, is cut at a random start; the keyframe is its centre.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageSequence

VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".avi"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


@dataclass
class VideoItem:
    path: Path
    caption: str


def _read_frames(path: Path) -> list[np.ndarray]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return [np.asarray(Image.open(p).convert("RGB")) for p in files]
    if path.suffix.lower() == ".gif":
        with Image.open(path) as gif:
            return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def scan(root: Path) -> list[VideoItem]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"training data folder {root} does not exist")
    table = {}
    if (root / "captions.json").is_file():
        table = json.loads((root / "captions.json").read_text())
    items = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in entry.iterdir()):
            text = entry / "caption.txt"
        elif entry.suffix.lower() in VIDEO_SUFFIXES | {".gif"}:
            text = entry.with_suffix(".txt")
        else:
            continue
        caption = text.read_text().strip() if text.is_file() else table.get(entry.name, table.get(entry.stem, ""))
        items.append(VideoItem(entry, caption))
    if not items:
        raise ValueError(f"no videos (mp4/webm/gif/...) or frame folders found in {root}")
    return items


def resize_center_crop(frames: np.ndarray, size: int) -> torch.Tensor:
    """[T, H, W, 3] uint8 -> [T, size, size, 3] float in [0, 1] (shorter side to ``size``, centre crop)."""
    x = torch.from_numpy(frames).float().div(255).movedim(-1, 1)
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    x = torch.nn.functional.interpolate(x, size=(max(size, round(h * scale)), max(size, round(w * scale))),
                                        mode="bilinear", align_corners=False, antialias=True)
    top = (x.shape[-2] - size) // 2
    left = (x.shape[-1] - size) // 2
    return x[..., top:top + size, left:left + size].movedim(1, -1).clamp(0, 1)


class VideoFolderDataset:
    def __init__(self, root: Path, frames: int = 16, stride: int = 1, size: int = 256, seed: int = 0):
        self.items = scan(root)
        self.frames, self.stride, self.size = frames, stride, size
        self.rng = random.Random(seed)
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.items)

    def clip(self, index: int) -> tuple[torch.Tensor, str]:
        """[frames, size, size, 3] in [0, 1] and the caption."""
        item = self.items[index]
        if index not in self._cache:
            self._cache[index] = np.stack(_read_frames(item.path))
        video = self._cache[index]
        span = (self.frames - 1) * self.stride + 1
        if len(video) < span:
            raise ValueError(f"{item.path.name}: {len(video)} frames, a clip needs {span} "
                             f"({self.frames} frames at stride {self.stride})")
        start = self.rng.randint(0, len(video) - span)
        return resize_center_crop(video[start:start + span:self.stride], self.size), item.caption
