"""EMA vs raw weights, measured by the validation that runs during training (issue "Know whether training works").

    .venv/bin/python benchmarks/ema_validation.py [--steps 300] [--every 50] [--ema-decay 0.99] [--threads 1]

Runs the real training loop (the demo trainer: training/loop.py with the demo's narrow twin and its synthetic clip
stream; video phase from the shipped stage-1 UNet, a fresh module) with EMA and validation on, and prints, for
each validation step, the direction accuracy and keyframe SSIM of the EMA weights next to the raw weights, as the
loop logged them in validation.jsonl (computed from the mp4s it wrote). Held-out keyframes: synthetic clips from a
seed training never draws from.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--ema-decay", type=float, default=0.99)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--val-count", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE.parent / ".cache" / "ema_validation")
    parser.add_argument("--fresh", action="store_true", help="delete --out first (otherwise a run resumes)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE.parent / "tests"))
    from pack_import import core, sub  # noqa: E402

    import torch

    torch.set_num_threads(args.threads)
    core()
    demo, trainer_lib = sub("demo"), sub("training.demo_trainer")
    if args.fresh:
        shutil.rmtree(args.out, ignore_errors=True)
    started = time.time()
    trainer = trainer_lib.DemoTrainer(args.out, "video", 5e-4, args.batch, 0.03, True, seed=0, base=demo.NARROW_UNET,
                                      ema_decay=args.ema_decay, val_every=args.every, val_count=args.val_count,
                                      val_weights="both")
    trainer.train(args.steps, save_every=args.every)
    seconds = time.time() - started
    rows: dict[int, dict] = {}
    for line in (args.out / "validation.jsonl").read_text().splitlines():
        entry = json.loads(line)
        rows.setdefault(entry["step"], {})[entry["weights"]] = entry
    print(f"demo video phase, batch {args.batch}, EMA decay {args.ema_decay} (warm-up 10), {args.val_count} held-out "
          f"keyframes, {args.steps} steps in {seconds / 60:.1f} min")
    print(f"{'step':>5} | {'direction raw':>13} {'direction EMA':>13} | {'SSIM raw':>8} {'SSIM EMA':>8} |"
          f" {'motion raw':>10} {'motion EMA':>10}")
    for step in sorted(rows):
        raw, ema = rows[step].get("raw"), rows[step].get("ema")
        if raw is None or ema is None:
            continue
        print(f"{step:>5} | {raw['direction_accuracy']:>13.2f} {ema['direction_accuracy']:>13.2f} | "
              f"{raw['keyframe_ssim']:>8.3f} {ema['keyframe_ssim']:>8.3f} | {raw['motion']:>10.4f} {ema['motion']:>10.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
