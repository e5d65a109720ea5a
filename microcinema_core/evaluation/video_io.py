"""Reading videos for scoring, and picking the frames FVD looks at.

Files are decoded with PyAV (mp4, webm, mov, mkv, avi... anything FFmpeg reads); animated GIF and WebP (what
ComfyUI's animated-image savers write) are read with Pillow. Frames come back full size as uint8 [T, H, W, 3];
each metric resizes them its own way (fvd.i3d_input, clipsim.clip_preprocess).

The FVD clip is ``frames`` frames (16) of a video:

* ``sampling="first"`` (default): the first ``frames`` frames, consecutive, as the common FVD code takes them (a
  generated clip of 16 frames is used whole);
* ``sampling="even"``: ``frames`` frames evenly spaced over the whole video, first and last included (indices
  ``round(linspace(0, T - 1, frames))``), for long videos whose motion should be seen end to end.

A video shorter than ``frames``: ``short="error"`` (default) refuses it, naming the file and its length, because
padding changes the motion statistics FVD measures; ``short="loop"`` repeats it from its first frame
(0, 1, ..., T-1, 0, 1, ...) up to ``frames``.

This module does not reuse training.video_decode's readers: those resize and crop at decode time for training,
while scoring needs full-size frames (CLIP and I3D preprocess differently) and the first frames without seeking.
"""
from __future__ import annotations

import os
from typing import Literal

import numpy as np
from PIL import Image, ImageSequence

from . import InputError

Sampling = Literal["first", "even"]
ShortPolicy = Literal["error", "loop"]
FVD_FRAMES = 16
PILLOW_SUFFIXES = (".gif", ".webp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v") + PILLOW_SUFFIXES


def is_video(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_SUFFIXES


def as_uint8(frames: np.ndarray) -> np.ndarray:
    """Frames [T, H, W, 3] as uint8: uint8 passes through; floats are taken as [0, 1] (ComfyUI's IMAGE layout)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames [T, H, W, 3], got shape {frames.shape}")
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames.astype(np.float64), 0.0, 1.0) * 255.0).round().astype(np.uint8)


def clip_indices(total: int, frames: int = FVD_FRAMES, sampling: Sampling = "first",
                 short: ShortPolicy = "error", name: str = "video") -> list[int]:
    """Which of a video's ``total`` frames make its FVD clip (see the module docstring)."""
    if total <= 0:
        raise InputError(f"{name}: no video frames")
    if total < frames:
        if short == "loop":
            return [i % total for i in range(frames)]
        raise InputError(f"{name}: {total} frames, FVD needs {frames} (pass --short loop to repeat short videos)")
    if sampling == "first" or frames == 1:
        return list(range(frames))
    if sampling == "even":
        return [int(i) for i in np.linspace(0, total - 1, frames).round()]
    raise ValueError(f"unknown sampling {sampling!r} (first or even)")


def fvd_clip(video: np.ndarray, frames: int = FVD_FRAMES, sampling: Sampling = "first",
             short: ShortPolicy = "error", name: str = "video") -> np.ndarray:
    """The FVD clip [frames, H, W, 3] of decoded frames [T, H, W, 3]."""
    return video[clip_indices(len(video), frames, sampling, short, name)]


def _decode_errors() -> tuple[type[BaseException], ...]:
    import av.error

    return (av.error.FFmpegError, OSError, ValueError, EOFError, Image.DecompressionBombError)


def _pillow_frames(path: str, keep, stop: int | None) -> tuple[list[np.ndarray], int]:
    out, count = [], 0
    with Image.open(path) as image:
        for frame in ImageSequence.Iterator(image):
            if keep(count):
                out.append(np.asarray(frame.convert("RGB")))
            count += 1
            if stop is not None and count >= stop:
                break
    return out, count


def _pyav_count(path: str) -> int:
    """Frames in the file, counted from its packets (no decoding)."""
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise InputError(f"{path}: no video stream")
        return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)


def _pyav_frames(path: str, keep, stop: int | None) -> tuple[list[np.ndarray], int]:
    import av

    out, count = [], 0
    with av.open(path) as container:
        if not container.streams.video:
            raise InputError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if keep(count):
                out.append(frame.to_ndarray(format="rgb24"))
            count += 1
            if stop is not None and count >= stop:
                break
    return out, count


def _decode(path: str, keep=lambda i: True, stop: int | None = None) -> tuple[list[np.ndarray], int]:
    """The frames ``keep(index)`` accepts, and how many frames were decoded (all, unless ``stop`` ended early)."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    try:
        if os.path.splitext(path)[1].lower() in PILLOW_SUFFIXES:
            return _pillow_frames(path, keep, stop)
        return _pyav_frames(path, keep, stop)
    except _decode_errors() as exc:
        raise InputError(f"{path}: unreadable video ({type(exc).__name__}: {' '.join(str(exc).split())})") from None


def read_video(path: str) -> np.ndarray:
    """Every frame of a video, uint8 [T, H, W, 3] (generated clips: CLIPSIM scores all of them)."""
    frames, _ = _decode(path)
    if not frames:
        raise InputError(f"{path}: no video frames")
    return np.stack(frames)


def read_fvd_clip(path: str, frames: int = FVD_FRAMES, sampling: Sampling = "first",
                  short: ShortPolicy = "error") -> np.ndarray:
    """A file's FVD clip [frames, H, W, 3] without keeping the rest of a long video in memory: ``first`` stops
    decoding after ``frames`` frames; ``even`` counts the packets first, then keeps only the chosen frames."""
    if sampling == "first":
        decoded, _ = _decode(path, stop=frames)
        return fvd_clip(np.stack(decoded) if decoded else np.zeros((0, 1, 1, 3), np.uint8), frames, sampling,
                        short, path)
    total = 0
    if os.path.splitext(path)[1].lower() not in PILLOW_SUFFIXES and os.path.isfile(path):
        try:
            total = _pyav_count(path)
        except _decode_errors():
            total = 0  # the decode below reports the problem
    if total >= frames:
        wanted = clip_indices(total, frames, sampling, short, path)
        chosen = set(wanted)
        decoded, seen = _decode(path, keep=lambda i: i in chosen)
        if seen == total:  # packets and frames agreed: map the kept frames back to the wanted order
            by_index = dict(zip(sorted(chosen), decoded))
            return np.stack([by_index[i] for i in wanted])
    video = read_video(path)  # length unknown or miscounted: decode all and choose from what is there
    return fvd_clip(video, frames, sampling, short, path)
