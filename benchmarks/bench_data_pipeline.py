"""Training data pipeline throughput: ClipDataset through a DataLoader, windowed vs whole-file decoding, peak RSS.

    .venv/bin/python benchmarks/bench_data_pipeline.py                   # 24 clips, 10 s, 256x256, 24 fps
    .venv/bin/python benchmarks/bench_data_pipeline.py --dir /tmp/clips   # keep (and reuse) the generated clips

N clips (H.264 mp4, a keyframe every --gop frames: web video has one every 1-5 s) of a smooth texture panning
across the frame are generated once. Then:
  1. clips/s of ClipDataset (frames=16, size=256) through DataLoader with 0, 1 and 2 workers, with stride 1 and
     with --target-fps (time-based frame selection), after the first batch;
  2. one 16-frame window per clip, decoded the new way (seek, decode the window, scale at decode) and the old way
     (every frame of the file at full size, as the old loader did before cutting its window): clips/s of each
     and the ratio (goal: >= 5x);
  3. peak RSS of this process and of its largest child (the DataLoader workers).
"""
from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour field twice the frame size (low-frequency noise, scaled up): compresses like
    natural footage rather than like white noise."""
    from PIL import Image

    coarse = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((2 * size, 2 * size), Image.Resampling.BICUBIC))


def generate(vd, folder: Path, count: int, seconds: float, fps: float, size: int, gop: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    frames = round(seconds * fps)
    for k in range(count):
        path = folder / f"clip{k:03d}.mp4"
        paths.append(path)
        if not path.exists():
            field = texture(rng, size)
            dx, dy = rng.uniform(-1.5, 1.5, 2) * size / frames
            ox, oy = size // 2, size // 2

            def frame(t: int) -> np.ndarray:
                x, y = int(ox + dx * t) % size, int(oy + dy * t) % size
                return field[y:y + size, x:x + size]

            vd.write_video(str(path), (frame(t) for t in range(frames)), fps, codec="libx264", gop=gop)
        path.with_suffix(".txt").write_text(f"clip {k}")
    return paths


def peak_rss_mb() -> tuple[float, float]:
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def loader_rate(data, folder: Path, workers: int, samples: int, frames: int, size: int, fps: float,
                batch: int) -> float:
    import torch

    dataset = data.ClipDataset(str(folder), frames=frames, size=size, fps=fps, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=range(samples), num_workers=workers,
                                         collate_fn=data.collate, persistent_workers=workers > 0,
                                         prefetch_factor=2 if workers else None)
    # timed from the first batch on: worker start-up and the first prefetch are not the steady state
    batches = iter(loader)
    next(batches)
    t0 = time.perf_counter()
    seen = sum(len(b["ordinal"]) for b in batches)
    return seen / (time.perf_counter() - t0)


def decode_rates(data, vd, paths: list[Path], frames: int, size: int) -> dict:
    rng = random.Random(0)
    window = data.FrameWindow(frames)
    new_time = old_time = 0.0
    new_frames = old_frames = 0
    for path in paths:
        t0 = time.perf_counter()
        before = vd.decoded_frames()
        with vd.open_clip(str(path)) as reader:
            start = rng.randint(0, window.last_start(reader.info.frames, reader.info.fps))
            reader.read(window.positions(start, reader.info.fps), size)
        new_frames += vd.decoded_frames() - before
        t1 = time.perf_counter()
        before = vd.decoded_frames()
        with vd.open_clip(str(path)) as reader:
            whole = reader.read_all()
        whole[start:start + frames].copy()  # the old loader cut its window from the full decode
        old_frames += vd.decoded_frames() - before
        t2 = time.perf_counter()
        new_time += t1 - t0
        old_time += t2 - t1
    n = len(paths)
    return {"windowed": n / new_time, "whole": n / old_time, "ratio": old_time / new_time,
            "windowed_frames": new_frames / n, "whole_frames": old_frames / n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=24, help="clips to generate")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--source-fps", type=float, default=24.0)
    parser.add_argument("--resolution", type=int, default=256, help="generated clips are square, this size")
    parser.add_argument("--gop", type=int, default=48, help="frames between keyframes in the generated clips")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--target-fps", type=float, default=8.0, help="the --fps mode of ClipDataset")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=2, help="samples per measurement: epochs x clips")
    parser.add_argument("--dir", type=Path, default=None, help="where the clips go (default: a temp folder)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE.parent / "tests"))
    from pack_import import sub  # noqa: E402  (ComfyUI on sys.path, the pack as microcinema_core)

    data, vd = sub("training.data"), sub("training.video_decode")
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.dir or Path(scratch) / "clips"
        t0 = time.perf_counter()
        paths = generate(vd, folder, args.count, args.seconds, args.source_fps, args.resolution, args.gop)
        megabytes = sum(p.stat().st_size for p in paths) / 2**20
        print(f"{args.count} clips, {args.seconds:g} s at {args.source_fps:g} fps, {args.resolution}x"
              f"{args.resolution}, H.264 keyframe every {args.gop} frames, {megabytes:.1f} MiB "
              f"(ready in {time.perf_counter() - t0:.1f} s); samples of {args.frames} frames at "
              f"{args.size}x{args.size}")
        samples = args.epochs * args.count
        print(f"\nClipDataset + DataLoader (batch {args.batch}, {samples} samples), clips/s:")
        print(f"{'workers':>8} {'stride 1':>10} {f'fps {args.target_fps:g}':>10}")
        for workers in (int(w) for w in args.workers.split(",")):
            stride = loader_rate(data, folder, workers, samples, args.frames, args.size, 0.0, args.batch)
            timed = loader_rate(data, folder, workers, samples, args.frames, args.size, args.target_fps, args.batch)
            print(f"{workers:>8} {stride:>10.1f} {timed:>10.1f}")
        rates = decode_rates(data, vd, paths, args.frames, args.size)
        print(f"\none {args.frames}-frame window per clip, one process:")
        print(f"{'decode':>22} {'clips/s':>8} {'frames decoded/clip':>20}")
        print(f"{'windowed (new)':>22} {rates['windowed']:>8.1f} {rates['windowed_frames']:>20.1f}")
        print(f"{'whole file (old)':>22} {rates['whole']:>8.1f} {rates['whole_frames']:>20.1f}")
        print(f"{'speed-up':>22} {rates['ratio']:>7.1f}x   (goal >= 5x)")
        own, child = peak_rss_mb()
        print(f"\npeak RSS: this process {own:.0f} MiB, largest DataLoader worker {child:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
