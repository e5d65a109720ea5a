"""From a data source string to a ``ClipIndex``, touching as little as possible at start-up.

Sources:
* a folder of clips: ``clip.mp4`` (.webm .mov .mkv .avi .gif) with ``clip.txt`` beside it, frame folders
  (``clip/000.png ...`` + ``clip/caption.txt``), optional ``captions.json`` {name: caption} at the root. The folder is
  listed once; no caption file is opened and no sub-folder is listed until its clip is drawn.
* a manifest ``.csv`` (read streaming with the csv module) or ``.parquet`` (needs pyarrow): columns ``path``,
  ``caption``, optional ``fps``, ``frames``; tar members also ``member``, ``member_offset``, ``member_size`` (what
  ``python -m microcinema_core.prepare`` writes). WebVid's own columns (``videoid, contentUrl, duration, page_dir,
  name``) are taken as they are: ``<video_root>/<page_dir>/<videoid>.mp4`` (or ``<video_root>/<videoid>.mp4``),
  caption ``name``. Relative paths resolve against ``video_root``, else the manifest's folder.
* webdataset-style tar shards: ``data.tar``, a folder of ``*.tar``, a glob or a brace list
  (``shards/{000..009}.tar``). Members sharing a key (name up to the first dot) form a sample: one video member and
  a caption from ``.txt`` or ``.json`` ("caption" or "text"). Each shard's headers are read once to note where every
  video's bytes are; samples are then read by random access (seek + read), so shards must sit on local or mounted
  storage (uncompressed .tar; streaming from URLs is not supported).
"""
from __future__ import annotations

import csv
import glob
import json
import logging
import os
import posixpath
import re
import tarfile
from typing import Any, Iterable, Sequence

from .clip_index import CAPTION_BESIDE, CAPTION_INLINE, CAPTION_INSIDE, ClipIndex, DataError
from .video_decode import GIF_SUFFIX, VIDEO_SUFFIXES

log = logging.getLogger("microcinema.data")

CLIP_SUFFIXES = VIDEO_SUFFIXES + (GIF_SUFFIX,)
WEBVID_COLUMNS = ("videoid", "page_dir", "name")
MAX_JSON_CAPTION_BYTES = 1 << 20


def load_index(source: str, video_root: str | None = None) -> ClipIndex:
    """The index of ``source`` (frozen); DataError naming the source when it is missing, empty or unsupported."""
    source = os.fspath(source)
    lower = source.lower()
    if lower.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar.zst")):
        raise DataError(f"{source}: compressed tar shards cannot be read by random access; store them as plain .tar")
    if lower.endswith((".csv", ".parquet")):
        if not os.path.isfile(source):
            raise DataError(f"{source}: manifest not found")
        index = read_parquet(source, video_root) if lower.endswith(".parquet") else read_csv(source, video_root)
    elif os.path.isdir(source):
        index = scan_folder(source)
    elif lower.endswith(".tar") or any(c in source for c in "*?[{"):
        index = scan_shards(expand_shards(source), source)
    elif os.path.exists(source):
        raise DataError(f"{source}: not a folder, .csv/.parquet manifest or .tar shard")
    else:
        raise DataError(f"{source}: no such file or folder")
    index.freeze()
    if not len(index):
        raise DataError(f"{source}: no clips found (expected videos/GIFs/frame folders with captions, a manifest with "
                        "rows, or tar shards with video members)")
    return index


# -- folders ------------------------------------------------------------------------------------------------------

def scan_folder(folder: str) -> ClipIndex:
    with os.scandir(folder) as it:
        entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    files = {e.name for e in entries if e.is_file()}
    clips = [e for e in entries if e.is_dir() or os.path.splitext(e.name)[1].lower() in CLIP_SUFFIXES]
    if not clips and any(name.lower().endswith(".tar") for name in files):
        return scan_shards(sorted(os.path.join(folder, n) for n in files if n.lower().endswith(".tar")), folder)
    table = _captions_json(folder) if "captions.json" in files else {}
    index = ClipIndex(source=folder, root=folder)
    for entry in clips:
        stem = os.path.splitext(entry.name)[0]
        inline = table.get(entry.name, table.get(stem, ""))
        if entry.is_dir():
            # caption.txt inside is looked for when the clip is drawn (listing every sub-folder now is what the
            # old loader did, and what makes a start over 100k clips slow)
            index.add(entry.name, inline, CAPTION_INSIDE)
        else:
            index.add(entry.name, inline, CAPTION_BESIDE if stem + ".txt" in files else CAPTION_INLINE)
    return index


def _captions_json(folder: str) -> dict[str, str]:
    path = os.path.join(folder, "captions.json")
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable captions.json: {exc}") from exc
    if not isinstance(table, dict):
        raise DataError(f"{path}: captions.json must be an object {{name: caption}}")
    return {str(k): str(v) for k, v in table.items()}


# -- manifests ----------------------------------------------------------------------------------------------------

def read_csv(path: str, video_root: str | None = None) -> ClipIndex:
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty manifest (no header row)")
        return _ingest(path, header, reader, video_root)


def read_parquet(path: str, video_root: str | None = None) -> ClipIndex:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError(f"{path}: reading a .parquet manifest needs pyarrow (pip install pyarrow), "
                        "or convert it to .csv") from exc
    try:
        table = pq.ParquetFile(path)
        header = list(table.schema_arrow.names)

        def rows() -> Iterable[Sequence[Any]]:
            for batch in table.iter_batches(batch_size=65536):
                yield from zip(*(column.to_pylist() for column in batch.columns))

        return _ingest(path, header, rows(), video_root)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable parquet manifest: {exc}") from exc


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _number(value: Any, kind: type) -> Any:
    text = _text(value)
    try:
        return kind(float(text)) if text else kind(0)
    except ValueError:
        return kind(0)


def _ingest(manifest: str, header: Sequence[str], rows: Iterable[Sequence[Any]], video_root: str | None) -> ClipIndex:
    columns = {str(name).strip().lower(): i for i, name in enumerate(header)}
    root = video_root or os.path.dirname(os.path.abspath(manifest))
    webvid = "path" not in columns and all(c in columns for c in WEBVID_COLUMNS)
    if "path" not in columns and not webvid:
        raise DataError(f"{manifest}: no 'path' column; expected path,caption[,fps,frames] or WebVid's "
                        f"videoid,page_dir,name (found: {', '.join(columns) or 'nothing'})")
    index = ClipIndex(source=manifest, root=root, flat_fallback=webvid)

    def cell(row: Sequence[Any], name: str) -> Any:
        i = columns.get(name)
        return row[i] if i is not None and i < len(row) else None

    shard_ids: dict[str, int] = {}
    blank = 0
    for row in rows:
        if webvid:
            videoid = _text(cell(row, "videoid"))
            if not videoid:
                blank += 1
                continue
            index.add(posixpath.join(_text(cell(row, "page_dir")), videoid + ".mp4"), _text(cell(row, "name")))
            continue
        path = _text(cell(row, "path"))
        if not path:
            blank += 1
            continue
        caption = _text(cell(row, "caption"))
        fps, frames = _number(cell(row, "fps"), float), _number(cell(row, "frames"), int)
        member = _text(cell(row, "member"))
        if member:
            shard = os.path.join(root, path)
            if shard not in shard_ids:
                shard_ids[shard] = len(index.shards)
                index.shards.append(shard)
            index.add(member, caption, fps=fps, frames=frames, shard=shard_ids[shard],
                      offset=_number(cell(row, "member_offset"), int), size=_number(cell(row, "member_size"), int))
        else:
            index.add(path, caption, fps=fps, frames=frames)
    if blank:
        log.warning("%s: %d rows without a path ignored", manifest, blank)
    return index


# -- tar shards ---------------------------------------------------------------------------------------------------

def expand_braces(pattern: str) -> list[str]:
    """``a{000..002}b`` -> a000b a001b a002b (zero padding kept); ``{x,y}`` -> x y; several groups multiply."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, tail, body = pattern[:match.start()], pattern[match.end():], match.group(1)
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        first, last = numeric.groups()
        width = len(first) if first.startswith("0") or len(first) == len(last) else 0
        step = 1 if int(last) >= int(first) else -1
        choices = [str(k).zfill(width) for k in range(int(first), int(last) + step, step)]
    else:
        choices = body.split(",")
    return [expanded for choice in choices for expanded in expand_braces(head + choice + tail)]


def expand_shards(source: str) -> list[str]:
    """Existing shard files named by ``source`` (a .tar, a glob, a brace list), in the given/sorted order."""
    found, missing = [], []
    for pattern in expand_braces(source):
        if any(c in pattern for c in "*?["):
            found.extend(sorted(glob.glob(pattern)))
        elif os.path.isfile(pattern):
            found.append(pattern)
        else:
            missing.append(pattern)
    if missing:
        log.warning("%s: %d shard(s) not found, e.g. %s", source, len(missing), missing[0])
    if not found:
        raise DataError(f"{source}: no tar shard found")
    return found


def scan_shards(shards: list[str], source: str) -> ClipIndex:
    index = ClipIndex(source=source, root="")
    for shard in shards:
        index.shards.append(shard)
        _scan_shard(index, shard, len(index.shards) - 1)
    return index


def _split_key(name: str) -> tuple[str, str]:
    """webdataset's convention: the key is the path up to the first dot of the file name, the rest its extension."""
    folder, base = posixpath.split(name)
    stem, _, extension = base.partition(".")
    return posixpath.join(folder, stem), extension.lower()


def _caption_from_json(raw: bytes) -> str:
    try:
        value = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return ""
    if isinstance(value, dict):
        for key in ("caption", "text"):
            if isinstance(value.get(key), str):
                return value[key].strip()
    return ""


def _scan_shard(index: ClipIndex, shard: str, shard_id: int) -> None:
    """Add the shard's samples (one row per key with a video member). Caption members are small and read now;
    videos are only located (offset and size of their data)."""
    videos: dict[str, tuple[str, int, int]] = {}
    texts: dict[str, str] = {}
    jsons: dict[str, str] = {}
    try:
        with open(shard, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
            while (member := tar.next()) is not None:
                if not member.isfile():
                    continue
                key, extension = _split_key(member.name)
                last = "." + extension.rsplit(".", 1)[-1]
                if last in CLIP_SUFFIXES:
                    videos.setdefault(key, (member.name, member.offset_data, member.size))
                elif extension == "txt":
                    texts[key] = tar.extractfile(member).read().decode("utf-8", "replace").strip()
                elif extension == "json" and member.size <= MAX_JSON_CAPTION_BYTES:
                    jsons[key] = _caption_from_json(tar.extractfile(member).read())
                tar.members.clear()  # tarfile keeps every header it met; the index is all we need
    except (OSError, tarfile.TarError) as exc:
        # a damaged shard still gives the samples before the damage
        log.warning("%s: shard unreadable after %d videos: %s", shard, len(videos), exc)
    for key, (name, offset, size) in videos.items():
        index.add(name, texts.get(key) or jsons.get(key, ""), shard=shard_id, offset=offset, size=size)
