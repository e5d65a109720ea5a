"""Training step time of the real loop on this machine: 1 rank vs 2 ranks (torchrun, gloo), and the DataLoader's
data wait with 0 and 2 workers.

    .venv/bin/python benchmarks/bench_training_ranks.py [--steps 30] [--frames 8] [--size 64]

Model: the tests' tiny SD1.5-shaped checkpoint (random weights) with a fresh MicroCinema module; data: mp4 clips
(10 s, 256x256, 24 fps) decoded, resized and windowed per sample by data.ClipDataset. Each configuration is a
real ``torchrun ... -m microcinema_core.train`` launch; figures come from its loss.jsonl (seconds per step and
data wait, averaged over the steps after the first --warmup, which include worker start-up). Each rank runs one
intra-op thread, so 2 ranks use this machine's 2 cores.

Scaling efficiency = (clips/s with 2 ranks) / (2 x clips/s with 1 rank), at the same batch per rank. Two
independent 1-rank runs started together show how much of the loss is the machine's (two busy cores share caches
and memory bandwidth) rather than the gradient all-reduce's.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def make_clips(folder: Path, count: int) -> None:
    """The data benchmark's clips: 10 s, 256x256, 24 fps, a keyframe every 2 s."""
    sys.path.insert(0, str(HERE))
    from bench_data_pipeline import generate
    from pack_import import sub

    generate(sub("training.video_decode"), folder, count, 10.0, 24.0, 256, 48)


def command(args, base: Path, data: Path, out: Path, ranks: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
           "-m", "microcinema_core.train", "--base", str(base), "--data", str(data), "--out", str(out),
           "--frames", str(args.frames), "--size", str(args.size), "--steps", str(args.steps),
           "--batch-size", str(args.batch), "--workers", str(workers), "--log-every", "1",
           "--save-every", str(args.steps), "--device", "cpu"]


def launch_together(commands: list[tuple[list[str], Path]]) -> list[list[dict]]:
    """Run the commands at the same time; each one's loss.jsonl entries."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for cmd, _ in commands]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(err[-4000:])
    return [[json.loads(line) for line in (out / "loss.jsonl").read_text().splitlines()] for _, out in commands]


def launch(args, base: Path, data: Path, out: Path, ranks: int, workers: int) -> list[dict]:
    return launch_together([(command(args, base, data, out, ranks, workers), out)])[0]


def summary(log: list[dict], warmup: int) -> tuple[float, float]:
    kept = log[warmup:] or log
    step = sum(e["seconds_per_step"] for e in kept) / len(kept)
    wait = sum(e["data_wait"] for e in kept) / len(kept)
    return step, wait


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the averages")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1, help="clips per rank")
    parser.add_argument("--clips", type=int, default=16)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "tests"))
    from harness.tiny_models import ensure_tiny_sd15_checkpoint

    base = ensure_tiny_sd15_checkpoint()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_clips(tmp / "clips", args.clips)
        rows = []
        for ranks, workers in ((1, 0), (1, 2), (2, 1)):
            log = launch(args, base, tmp / "clips", tmp / f"run_{ranks}_{workers}", ranks, workers)
            step, wait = summary(log, args.warmup)
            rows.append((ranks, workers, step, wait, ranks * args.batch / step))
        # the machine's own ceiling: two independent 1-rank runs at once (no communication at all)
        pair = launch_together([(command(args, base, tmp / "clips", tmp / f"pair{i}", 1, 1), tmp / f"pair{i}")
                                for i in range(2)])
        pair_steps = [summary(log, args.warmup)[0] for log in pair]
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"tiny SD1.5-shaped UNet + module, {args.frames} frames at {args.size}x{args.size}, batch {args.batch}/rank, "
          f"{args.steps} steps (first {args.warmup} left out)")
    print(f"{'ranks':>5} {'workers/rank':>12} {'s/step':>8} {'data wait s':>11} {'wait %':>7} {'clips/s':>8}")
    for ranks, workers, step, wait, rate in rows:
        print(f"{ranks:>5} {workers:>12} {step:>8.3f} {wait:>11.4f} {100 * wait / step:>6.1f}% {rate:>8.2f}")
    one = next(r for r in rows if r[0] == 1 and r[1] == 2)
    two = next(r for r in rows if r[0] == 2)
    print(f"2-rank scaling efficiency: {two[4] / (2 * one[4]):.2f} (2 ranks x 1 worker vs 1 rank x 2 workers)")
    ceiling = sum(args.batch / s for s in pair_steps)
    print(f"two independent 1-rank runs at once: {pair_steps[0]:.3f} and {pair_steps[1]:.3f} s/step, "
          f"{ceiling:.2f} clips/s together: this machine's own ceiling is {ceiling / (2 * one[4]):.2f}; "
          f"DDP reaches {two[4] / ceiling:.2f} of it")
    print(f"peak RSS of one training process: {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
