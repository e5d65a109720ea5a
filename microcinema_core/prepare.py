"""Check a training data source once and write a manifest of its usable clips.

    python -m microcinema_core.prepare videos/ --out data/manifest.csv
    python -m microcinema_core.prepare results_10M_train.csv --video-root webvid/videos --out webvid.csv --workers 16
    python -m microcinema_core.prepare "shards/{000..099}.tar" --out shards.csv --min-frames 16

SOURCE is anything the trainer's --data takes: a folder of captioned clips, a .csv/.parquet manifest (WebVid's
columns included) or tar shards. Each clip's header is opened (and its first frame decoded) in parallel threads;
nothing is fully decoded. The manifest (path, caption, fps, frames; member, member_offset, member_size for tar
members) lists the usable clips only; unreadable, caption-less and too-short clips are logged and listed with
their reason in <manifest>.report.json. Exit code 0 when at least one clip is usable, 2 otherwise.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .training.clip_index import ClipIndex, DataError
from .training.clip_sources import load_index
from .training.video_decode import MemberFile, clip_errors, describe, open_clip

log = logging.getLogger("microcinema.prepare")

MANIFEST_COLUMNS = ("path", "caption", "fps", "frames", "member", "member_offset", "member_size")
PROBLEMS = ("unreadable", "no_caption", "too_short")
BLOCK = 4096          # rows probed per batch of futures (bounds memory over millions of rows)
LOGGED_PER_KIND = 20  # bad clips logged one by one per kind; the report lists them all


@dataclass
class Probe:
    name: str
    problem: str = ""   # "" or one of PROBLEMS
    reason: str = ""
    fps: float = 0.0
    frames: int = 0
    caption: str = ""


def probe(index: ClipIndex, i: int, min_frames: int) -> Probe:
    """Header facts of clip ``i`` (and whether its first frame decodes); never raises for a bad clip."""
    name = index.name(i)
    caption = index.read_caption(i)
    if not caption:
        return Probe(name, "no_caption", "no caption")
    try:
        location = index.location(i)
        if index.is_member(i):
            if int(index.size[i]) == 0:
                return Probe(name, "unreadable", "empty file (0 bytes)")
            with MemberFile(location, int(index.offset[i]), int(index.size[i])) as member, \
                    open_clip(index.path[i], member) as reader:
                info = reader.info
                reader.read([0], 16, info.fps or 1.0)
        else:
            with open_clip(location, None, float(index.fps[i])) as reader:
                info = reader.info
                reader.read([0], 16, info.fps or 1.0)
    except clip_errors() as exc:
        return Probe(name, "unreadable", describe(exc))
    fps = float(index.fps[i]) or info.fps
    frames = int(index.frames[i]) or info.frames
    if frames <= 0:
        return Probe(name, "unreadable", "frame count unknown (no frames or duration in the header)")
    if frames < min_frames:
        return Probe(name, "too_short", f"too short: {frames} frames < --min-frames {min_frames}", fps, frames)
    return Probe(name, fps=fps, frames=frames, caption=caption)


def _manifest_path(path: str, manifest_dir: str) -> str:
    """Relative to the manifest's folder when the file lies under it (the pair can move together), else absolute."""
    full = os.path.abspath(path)
    relative = os.path.relpath(full, manifest_dir)
    return full if relative.startswith(os.pardir) else relative


def prepare(source: str, out: str, video_root: str | None = None, min_frames: int = 1, workers: int = 8) -> dict:
    """Write the manifest and its report; returns the report (DataError when the source cannot be read)."""
    index = load_index(source, video_root)
    manifest_dir = os.path.dirname(os.path.abspath(out)) or "."
    os.makedirs(manifest_dir, exist_ok=True)
    bad: dict[str, list[dict]] = {kind: [] for kind in PROBLEMS}
    usable = 0
    partial = out + ".partial"
    with open(partial, "w", newline="", encoding="utf-8") as f, ThreadPoolExecutor(max(1, workers)) as pool:
        writer = csv.writer(f)
        writer.writerow(MANIFEST_COLUMNS)
        for first in range(0, len(index), BLOCK):
            rows = range(first, min(first + BLOCK, len(index)))
            for i, result in zip(rows, pool.map(lambda i: probe(index, i, min_frames), rows)):
                if result.problem:
                    listed = bad[result.problem]
                    if len(listed) < LOGGED_PER_KIND:
                        log.warning("%s: %s", result.name, result.reason)
                    listed.append({"name": result.name, "reason": result.reason})
                    continue
                usable += 1
                location = _manifest_path(index.location(i), manifest_dir)
                if index.is_member(i):
                    member = (index.path[i], int(index.offset[i]), int(index.size[i]))
                else:
                    member = ("", "", "")
                writer.writerow((location, result.caption, f"{result.fps:.6g}", result.frames, *member))
    os.replace(partial, out)
    report = {"source": source, "manifest": out, "clips": len(index), "usable": usable,
              "counts": {kind: len(items) for kind, items in bad.items()}, **bad}
    report_path = os.path.splitext(out)[0] + ".report.json"
    with open(report_path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    log.info("%s: %d of %d clips usable (%s); manifest %s, report %s", source, usable, len(index),
             ", ".join(f"{len(items)} {kind.replace('_', ' ')}" for kind, items in bad.items()), out, report_path)
    return report


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(prog="python -m microcinema_core.prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="folder, .csv/.parquet manifest (ours or WebVid's), .tar shard(s)")
    parser.add_argument("--out", required=True, help="manifest .csv to write (report: <out>.report.json)")
    parser.add_argument("--video-root", default=None, help="base folder of a manifest's relative paths "
                                                           "(default: the manifest's folder)")
    parser.add_argument("--min-frames", type=int, default=1, help="clips with fewer frames are reported too short")
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1),
                        help="parallel header probes (threads)")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    try:
        report = prepare(args.source, args.out, args.video_root, args.min_frames, args.workers)
    except DataError as exc:
        log.error("%s", exc)
        return 2
    if not report["usable"]:
        counts = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in report["counts"].items())
        log.error("%s: no usable clip among %d (%s); see %s", args.source, report["clips"], counts,
                  os.path.splitext(args.out)[0] + ".report.json")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
