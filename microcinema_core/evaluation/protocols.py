"""What to generate and what to compare it with: lists of ``EvalItem`` (prompt, optional keyframe, optional real
clip, optional generated video), each numbered by its ``index``.

* UCF-101 (``ucf101_items``): prompts are the class names in words ("ApplyEyeMakeup" -> "apply eye makeup"); the
  real clips are sampled from the user's UCF-101 copy, either following the dataset's class distribution
  (``balance="dataset"``: clips drawn uniformly, as Make-A-Video's zero-shot protocol does) or the same number per
  class (``balance="classes"``). Each item pairs the prompt of a real clip's class with that clip.
* MSR-VTT (``msrvtt_items``): test-split captions are the prompts (one per video, the first or a seeded random one,
  or all of them); the real clip, when a video folder is given, is ``<real_root>/<video_id>.<mp4|...>``.
* A manifest (``manifest_items``): a CSV with ``prompt`` and optional ``keyframe``, ``video`` (the generated file)
  and ``real`` columns, one row per item, index = row number.

Generated videos found in a folder are matched to items by their file names: the stem is the item's index
(``0.mp4``, ``000123.mp4``...), see ``generated_by_index``. Sampling is deterministic given ``seed``.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import random
import re
from dataclasses import dataclass, replace
from typing import Iterable, Literal

from . import InputError
from .video_io import is_video

log = logging.getLogger(__name__)

Balance = Literal["dataset", "classes"]
Captions = Literal["first", "random", "all"]
UCF101_CLASSES = 101
_UCF_FILE = re.compile(r"^v_(?P<cls>[A-Za-z]+)_g\d+_c\d+$")


@dataclass(frozen=True)
class EvalItem:
    index: int
    prompt: str
    keyframe: str | None = None   # the keyframe image an image-to-video generator starts from (optional)
    real: str | None = None       # a real clip of the same content (the FVD reference set)
    generated: str | None = None  # the generated video file, once there is one


def list_videos(folder: str) -> list[str]:
    """Video files under ``folder`` (recursively), sorted."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files) if is_video(f)]
    return found


def ucf101_prompt(class_name: str) -> str:
    """"ApplyEyeMakeup" -> "apply eye makeup", "YoYo" -> "yo yo": split before capitals, lower case."""
    return " ".join(re.findall(r"[A-Z][a-z]*|[a-z]+|[0-9]+", class_name)).lower()


def _ucf_class(path: str, root: str) -> str | None:
    """A clip's class: its folder under the root (UCF-101/<Class>/v_<Class>_gXX_cYY.avi), else its file name."""
    parent = os.path.relpath(os.path.dirname(path), root)
    if parent not in (".", "") and os.sep not in parent:
        return parent
    match = _UCF_FILE.match(os.path.splitext(os.path.basename(path))[0])
    return match.group("cls") if match else None


def ucf101_items(real_root: str, num_videos: int = 2048, seed: int = 0, balance: Balance = "dataset") -> list[EvalItem]:
    """``num_videos`` (prompt, real clip) items from a UCF-101 folder; ordered by class, then clip."""
    if not os.path.isdir(real_root):
        raise InputError(f"{real_root}: no such folder (expected UCF-101's class folders)")
    by_class: dict[str, list[str]] = {}
    for path in list_videos(real_root):
        cls = _ucf_class(path, real_root)
        if cls is not None:
            by_class.setdefault(cls, []).append(path)
    if not by_class:
        raise InputError(f"{real_root}: no UCF-101 clips found (expected <Class>/v_<Class>_gXX_cYY.avi)")
    if len(by_class) != UCF101_CLASSES:
        log.warning("UCF-101 at %s has %d classes, not %d", real_root, len(by_class),
                                            UCF101_CLASSES)
    rng = random.Random(seed)
    classes = sorted(by_class)
    if balance == "dataset":
        pool = [(c, p) for c in classes for p in by_class[c]]
        chosen = _draw(pool, num_videos, rng)
    elif balance == "classes":
        counts = {c: num_videos // len(classes) for c in classes}
        for c in rng.sample(classes, num_videos % len(classes)):
            counts[c] += 1
        chosen = [(c, p) for c in classes for p in _draw(by_class[c], counts[c], rng)]
    else:
        raise ValueError(f"unknown balance {balance!r} (dataset or classes)")
    chosen.sort()
    return [EvalItem(index=i, prompt=ucf101_prompt(c), real=p) for i, (c, p) in enumerate(chosen)]


def _draw(pool: list, count: int, rng: random.Random) -> list:
    """``count`` elements without replacement; when asked for more than the pool holds, whole shuffled passes
    over the pool, then the rest."""
    out = []
    while count > 0:
        take = min(count, len(pool))
        out += rng.sample(pool, take)
        count -= take
    return out


def _msrvtt_rows(path: str) -> list[tuple[str, str]]:
    """(video_id, caption) pairs of the test split from MSR-VTT's JSON (``test_videodatainfo.json`` or the full
    ``MSRVTT_data.json``: ``videos`` with ``split``, ``sentences`` with ``video_id``/``caption``; or a list of
    {video_id, caption|sentence (str or list)}) or a CSV with ``video_id`` and ``sentence``/``caption``
    (e.g. the 1k-A test list MSRVTT_JSFUSION_test.csv)."""
    try:
        if path.lower().endswith(".csv"):
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            text = next((k for k in ("sentence", "caption", "prompt") if rows and k in rows[0]), None)
            if not rows or "video_id" not in rows[0] or text is None:
                raise InputError(f"{path}: expected CSV columns video_id and sentence (or caption)")
            return [(r["video_id"].strip(), r[text].strip()) for r in rows]
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: unreadable annotations ({type(exc).__name__}: {exc})") from None
    pairs: list[tuple[str, str]] = []
    if isinstance(data, dict) and isinstance(data.get("sentences"), list):
        test = None
        if isinstance(data.get("videos"), list) and any("split" in v for v in data["videos"]):
            test = {v["video_id"] for v in data["videos"] if v.get("split") == "test"}
        pairs = [(s["video_id"], s["caption"]) for s in data["sentences"]
                 if isinstance(s, dict) and "video_id" in s and "caption" in s
                 and (test is None or s["video_id"] in test)]
    elif isinstance(data, list):
        for entry in data:
            if not isinstance(entry, dict):
                continue
            vid = entry.get("video_id", entry.get("video"))
            caps = entry.get("caption", entry.get("sentence"))
            for cap in caps if isinstance(caps, list) else [caps]:
                if vid is not None and isinstance(cap, str):
                    pairs.append((str(vid), cap))
    if not pairs:
        raise InputError(f"{path}: no MSR-VTT test captions found (expected test_videodatainfo.json, "
                         f"MSRVTT_data.json or a CSV with video_id and sentence)")
    return [(str(v).strip(), c.strip()) for v, c in pairs]


def _find_video(folder: str, stem: str) -> str | None:
    for suffix in (".mp4", ".webm", ".avi", ".mkv", ".mov"):
        path = os.path.join(folder, stem + suffix)
        if os.path.isfile(path):
            return path
    return None


def msrvtt_items(annotations: str, real_root: str | None = None, num_videos: int | None = None, seed: int = 0,
                 captions: Captions = "first") -> list[EvalItem]:
    """Caption items of MSR-VTT's test split (in the file's video order). ``num_videos`` keeps a seeded random
    subset of the videos (all of each kept video's captions with ``captions="all"``)."""
    if not os.path.isfile(annotations):
        raise InputError(f"{annotations}: no such file")
    by_video: dict[str, list[str]] = {}
    for vid, cap in _msrvtt_rows(annotations):
        by_video.setdefault(vid, []).append(cap)
    rng = random.Random(seed)
    videos = list(by_video)
    if num_videos is not None and num_videos < len(videos):
        keep = set(rng.sample(videos, num_videos))
        videos = [v for v in videos if v in keep]
    if real_root is not None and not os.path.isdir(real_root):
        raise InputError(f"{real_root}: no such folder (expected MSR-VTT's videos, <video_id>.mp4)")
    items: list[EvalItem] = []
    missing = []
    for vid in videos:
        real = None
        if real_root is not None:
            real = _find_video(real_root, vid)
            if real is None:
                missing.append(vid)
        if captions == "all":
            chosen = by_video[vid]
        elif captions == "first":
            chosen = by_video[vid][:1]
        elif captions == "random":
            chosen = [rng.choice(by_video[vid])]
        else:
            raise ValueError(f"unknown captions mode {captions!r} (first, random or all)")
        items += [EvalItem(index=len(items) + k, prompt=c, real=real) for k, c in enumerate(chosen)]
    if missing:
        raise InputError(f"{real_root}: {len(missing)} MSR-VTT test videos missing (e.g. {', '.join(missing[:3])})")
    return items


def manifest_items(path: str) -> list[EvalItem]:
    """Items from a CSV with a ``prompt`` column and optional ``index`` (default: the row number), ``keyframe``,
    ``video`` and ``real`` columns; relative paths start at the CSV's folder; empty cells mean none."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: unreadable CSV ({type(exc).__name__}: {exc})") from None
    if not rows:
        raise InputError(f"{path}: no rows")
    if "prompt" not in rows[0]:
        raise InputError(f"{path}: no 'prompt' column (expected prompt[,keyframe][,video][,real])")
    base = os.path.dirname(os.path.abspath(path))

    def where(value: str | None) -> str | None:
        value = (value or "").strip()
        return os.path.join(base, value) if value else None

    items, seen = [], set()
    for row_number, r in enumerate(rows):
        try:
            index = int(r["index"]) if (r.get("index") or "").strip() else row_number
        except ValueError:
            raise InputError(f"{path}: row {row_number + 1}: index {r['index']!r} is not an integer") from None
        if index in seen:
            raise InputError(f"{path}: index {index} appears twice")
        seen.add(index)
        items.append(EvalItem(index=index, prompt=(r.get("prompt") or "").strip(), keyframe=where(r.get("keyframe")),
                              generated=where(r.get("video")), real=where(r.get("real"))))
    return items


def folder_items(folder: str) -> list[EvalItem]:
    """Items for a folder of generated videos without prompts (FVD only), in name order."""
    videos = list_videos(folder) if os.path.isdir(folder) else []
    if not videos:
        raise InputError(f"{folder}: no videos (.mp4, .webm, .gif...) found")
    return [EvalItem(index=i, prompt="", generated=p) for i, p in enumerate(videos)]


def generated_by_index(folder: str) -> dict[int, str]:
    """The videos in ``folder`` whose name (without suffix) is an integer, by that integer."""
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: no such folder")
    found: dict[int, str] = {}
    for name in sorted(os.listdir(folder)):
        stem = os.path.splitext(name)[0]
        if stem.isdigit() and is_video(name):
            index = int(stem)
            if index in found:
                raise InputError(f"{folder}: two videos for index {index} ({os.path.basename(found[index])}, {name})")
            found[index] = os.path.join(folder, name)
    return found


def attach_generated(items: Iterable[EvalItem], folder: str) -> list[EvalItem]:
    """Each item without a generated video gets ``folder``'s video named by its index; a missing one is an
    error (the message names the first few)."""
    items = list(items)
    found = generated_by_index(folder)
    if not found:
        raise InputError(f"{folder}: no videos named by index (0.mp4, 000001.mp4...) found")
    out, missing = [], []
    for item in items:
        if item.generated is None:
            path = found.get(item.index)
            if path is None:
                missing.append(item.index)
            item = replace(item, generated=path)
        out.append(item)
    if missing:
        raise InputError(f"{folder}: {len(missing)} of {len(items)} items have no video "
                         f"(e.g. index {', '.join(map(str, missing[:5]))}; expected files named <index>.mp4)")
    return out


def write_prompts(items: Iterable[EvalItem], path: str) -> None:
    """The items as a manifest CSV (index, prompt, keyframe, real), to generate from outside and score with
    ``--manifest``: each video is then expected at ``<generated>/<index>.mp4``."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "prompt", "keyframe", "real"])
        for item in items:
            writer.writerow([item.index, item.prompt, os.path.abspath(item.keyframe) if item.keyframe else "",
                             os.path.abspath(item.real) if item.real else ""])
