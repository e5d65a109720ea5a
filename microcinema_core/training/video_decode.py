"""Reading the few frames a training sample needs from one clip: a video file (PyAV), a GIF or a frame folder (Pillow).

A reader is opened per sample and closed right after (``with open_clip(...) as reader``), so nothing holds a file or
a decoder between samples: DataLoader workers can fork at any time. ``reader.info`` comes from the header only;
``reader.read(positions, size)`` returns the frames at the given source-frame positions, shorter side resized to
``size`` and centre-cropped, as uint8 [T, size, size, 3]:

* video files: seek (backward, to the keyframe before the first needed frame), decode forward, drop the frames
  before the window, pick for each target time the decoded frame nearest to it, stop at the last one; frames are
  converted to RGB at the output size by swscale, so full-size RGB frames never exist;
* GIFs: Pillow seeks to each needed frame; frame folders: only the needed image files are opened.

``read_all`` is the old behaviour (every frame of the file, full size), kept for the benchmark's comparison.
``decoded_frames()`` counts frames the video decoder produced in this process (tests, benchmark).
``write_video`` encodes an array of frames (tests and benchmarks generate their clips with it).
"""
from __future__ import annotations

import io
import math
import os
import tarfile
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Sequence

import numpy as np
from PIL import Image

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi")
GIF_SUFFIX = ".gif"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# Float slack when comparing timestamps: pts * time_base and k / fps differ in the last bits.
_EPS = 1e-6

_decoded = 0


def decoded_frames() -> int:
    """Frames the PyAV decoder has output in this process so far (a counter, for tests and the benchmark)."""
    return _decoded


class BadClip(Exception):
    """This clip cannot give the sample (too short, truncated, no frames...); the message is the reason."""


def clip_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean 'this clip is unusable' rather than 'our code is wrong'."""
    import av.error

    return (BadClip, OSError, ValueError, EOFError, tarfile.TarError, av.error.FFmpegError,
            Image.DecompressionBombError)


def describe(exc: BaseException) -> str:
    """A bad clip's reason, one line, for logs and reports."""
    text = str(exc) if isinstance(exc, BadClip) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass(frozen=True)
class ClipInfo:
    frames: int   # frame count; 0 = unknown
    fps: float    # frames per second; 0 = unknown (frame folders, GIFs without frame durations)
    width: int
    height: int


def output_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(w, h) with the shorter side equal to ``size``, aspect kept: what a frame is scaled to before the crop."""
    scale = size / min(width, height)
    return max(size, round(width * scale)), max(size, round(height * scale))


def _crop(rgb: np.ndarray, size: int) -> np.ndarray:
    top = (rgb.shape[0] - size) // 2
    left = (rgb.shape[1] - size) // 2
    return rgb[top:top + size, left:left + size]


def nearest_index(position: float) -> int:
    """Round half up: the convention shared by all readers (the video reader breaks time ties towards the later
    frame, which is the same thing)."""
    return math.floor(position + 0.5)


class VideoReader:
    """One PyAV container. ``source``: a path or a binary file object (a tar member read into BytesIO)."""

    def __init__(self, source: str | BinaryIO):
        import av

        self._container = av.open(source, mode="r")
        try:
            if not self._container.streams.video:
                raise BadClip("no video stream")
            self._stream = self._container.streams.video[0]
            # Frame and slice threads: decoding is most of a sample's cost.
            self._stream.thread_type = "AUTO"
            self.info = self._probe()
        except BaseException:
            self._container.close()
            raise

    def _probe(self) -> ClipInfo:
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        frames = int(stream.frames or 0)
        if frames <= 0 and fps > 0:
            # webm/mkv headers carry no frame count: estimate it from the duration (floor, so that a window
            # placed at the very end does not ask for a frame past the last one).
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif self._container.duration is not None:
                seconds = self._container.duration / 1_000_000
            else:
                seconds = 0.0
            frames = int(seconds * fps + _EPS)
        ctx = stream.codec_context
        return ClipInfo(frames=frames, fps=fps, width=int(ctx.width or 0), height=int(ctx.height or 0))

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def _origin(self) -> float:
        stream = self._stream
        return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0

    def _frames(self):
        global _decoded
        for frame in self._container.decode(self._stream):
            _decoded += 1
            yield frame

    def _rgb(self, frame, size: int | None) -> np.ndarray:
        if size is None:
            return frame.to_ndarray(format="rgb24")
        width, height = output_size(frame.width, frame.height, size)
        # swscale does scale + colour conversion in one pass; AREA averages when shrinking (no aliasing).
        small = frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA")
        return np.ascontiguousarray(_crop(small.to_ndarray(), size))

    def read(self, positions: Sequence[float], size: int | None, fps: float | None = None) -> np.ndarray:
        """Frames nearest to the times ``position / fps`` (positions ascending; ``fps`` defaults to the stream's)."""
        fps = fps or self.info.fps
        if fps <= 0:
            raise BadClip("the stream has no frame rate")
        targets = [p / fps for p in positions]
        half = 0.5 / fps
        origin = self._origin()
        seek = targets[0] - half > _EPS
        if seek:
            stream = self._stream
            self._container.seek(int((origin + targets[0] - half) / stream.time_base), stream=stream,
                                 backward=True, any_frame=False)
        picked = self._scan(targets, half, origin, size, after_seek=seek)
        if picked is None:
            # The seek landed past the window (a demuxer with a coarse index): decode from the start instead.
            self._container.seek(0, backward=True, any_frame=False)
            picked = self._scan(targets, half, origin, size, after_seek=False)
        return np.stack(picked)

    def _scan(self, targets: list[float], half: float, origin: float, size: int | None,
              after_seek: bool) -> list[np.ndarray] | None:
        out: list[np.ndarray] = []
        prev = None  # [time, frame, rgb or None]: the last decoded frame before the current one
        first = True
        for frame in self._frames():
            if frame.time is None:
                raise BadClip("a frame without timestamp")
            now = [frame.time - origin, frame, None]
            if first and after_seek and now[0] > targets[0] + half + _EPS:
                return None
            first = False
            while len(out) < len(targets) and now[0] >= targets[len(out)] - _EPS:
                target = targets[len(out)]
                # nearest of the previous and this frame; an exact tie goes to this (later) frame
                take = prev if prev is not None and target - prev[0] < now[0] - target - _EPS else now
                if take[2] is None:
                    take[2] = self._rgb(take[1], size)
                out.append(take[2])
            if len(out) == len(targets):
                return out
            prev = now
        # End of stream: the last frame still counts for targets within half a frame after it.
        while len(out) < len(targets) and prev is not None and targets[len(out)] - prev[0] <= half + _EPS:
            if prev[2] is None:
                prev[2] = self._rgb(prev[1], size)
            out.append(prev[2])
        if len(out) < len(targets):
            raise BadClip(f"truncated: the stream ends at {prev[0] if prev else 0:.3f}s, the window needs "
                          f"{targets[-1]:.3f}s")
        return out

    def read_all(self, size: int | None = None) -> np.ndarray:
        """Every frame of the file (the old loader's behaviour), full size unless ``size`` is given."""
        return np.stack([self._rgb(frame, size) for frame in self._frames()])


def _pil_rgb(image: Image.Image, size: int | None) -> np.ndarray:
    image = image.convert("RGB")
    if size is not None:
        width, height = output_size(image.width, image.height, size)
        image = image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.ascontiguousarray(_crop(np.asarray(image), size))
    return np.asarray(image)


class GifReader:
    def __init__(self, source: str | BinaryIO):
        self._image = Image.open(source)
        try:
            if getattr(self._image, "format", None) != "GIF":
                raise BadClip(f"not a GIF ({self._image.format})")
            frames = int(getattr(self._image, "n_frames", 1))
            duration = self._image.info.get("duration") or 0
            self.info = ClipInfo(frames=frames, fps=1000.0 / duration if duration else 0.0,
                                 width=self._image.width, height=self._image.height)
        except BaseException:
            self._image.close()
            raise

    def __enter__(self) -> "GifReader":
        return self

    def __exit__(self, *exc) -> None:
        self._image.close()

    def read(self, positions: Sequence[float], size: int | None, fps: float | None = None) -> np.ndarray:
        out = []
        for index in (nearest_index(p) for p in positions):
            self._image.seek(index)
            out.append(_pil_rgb(self._image, size))
        return np.stack(out)

    def read_all(self, size: int | None = None) -> np.ndarray:
        return self.read(range(self.info.frames), size)


class FolderReader:
    """A folder of image files, one per frame, in name order (000.png, 001.png...)."""

    def __init__(self, folder: str, fps: float = 0.0):
        with os.scandir(folder) as entries:
            self._files = sorted(e.path for e in entries
                                 if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise BadClip("a folder without image frames")
        self.info = ClipInfo(frames=len(self._files), fps=fps, width=0, height=0)

    def __enter__(self) -> "FolderReader":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def read(self, positions: Sequence[float], size: int | None, fps: float | None = None) -> np.ndarray:
        out = []
        for index in (nearest_index(p) for p in positions):
            with Image.open(self._files[index]) as image:
                out.append(_pil_rgb(image, size))
        return np.stack(out)

    def read_all(self, size: int | None = None) -> np.ndarray:
        return self.read(range(self.info.frames), size)


Reader = VideoReader | GifReader | FolderReader


def open_clip(path: str, data: bytes | BinaryIO | None = None, fps: float = 0.0) -> Reader:
    """The reader for a clip: ``path`` names it (its suffix picks the reader); ``data``, when given, is the file's
    content or a file object over it (a tar member) and ``path`` only names it. ``fps``: the frame folders' rate
    (their files carry none)."""
    suffix = os.path.splitext(path)[1].lower()
    if data is not None:
        if isinstance(data, (bytes, bytearray)):
            if not data:
                raise BadClip("empty file (0 bytes)")
            data = io.BytesIO(data)
        return GifReader(data) if suffix == GIF_SUFFIX else VideoReader(data)
    if os.path.isdir(path):
        return FolderReader(path, fps)
    if os.path.getsize(path) == 0:  # also raises FileNotFoundError for a missing file
        raise BadClip("empty file (0 bytes)")
    return GifReader(path) if suffix == GIF_SUFFIX else VideoReader(path)


def read_member(shard: str, offset: int, size: int) -> bytes:
    """A tar member's bytes by random access (one seek and one read; no scan of the shard)."""
    with open(shard, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise BadClip(f"truncated shard: member needs {size} bytes at {offset}, got {len(data)}")
    return data


class MemberFile(io.RawIOBase):
    """A read-only file over bytes [offset, offset + size) of a shard, so that PyAV reads a member's header in place
    (prepare probes members without reading their whole data)."""

    def __init__(self, shard: str, offset: int, size: int):
        super().__init__()
        self._file = open(shard, "rb")
        self._start, self._size, self._pos = offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self._size - self._pos)
        if count <= 0:
            return 0
        self._file.seek(self._start + self._pos)
        data = self._file.read(count)
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


def image_to_uint8(frames) -> np.ndarray:
    """A ComfyUI IMAGE tensor (floats in [0, 1], any leading shape) as uint8 numpy, rounded: what gets written."""
    import torch

    return (frames.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def write_video(path: str, frames: Iterable[np.ndarray], fps: float, codec: str = "libx264", gop: int | None = None,
                quality: int = 23) -> None:
    """Encode uint8 [H, W, 3] frames (even H and W) into ``path`` (mp4/mkv/webm by suffix). ``gop``: frames between
    keyframes (real videos have one every 1-5 s; the encoders' defaults differ, so tests and benchmarks set it)."""
    import av
    from fractions import Fraction

    rate = Fraction(fps).limit_denominator(1001)
    with av.open(path, mode="w") as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=rate)
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
                if gop:
                    stream.codec_context.gop_size = gop
                if codec == "libx264":
                    stream.options = {"preset": "ultrafast", "crf": str(quality)}
                else:
                    # no constant-quality knob shared by the other encoders: a generous bit rate instead
                    stream.bit_rate = int(frame.shape[0] * frame.shape[1] * fps * 0.5)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
