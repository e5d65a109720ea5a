"""Motion amount vs how far the object moves, on the trained demo model (issue 18).

    .venv/bin/python benchmarks/bench_motion_amount.py                        # 7 amounts x 16 samples
    .venv/bin/python benchmarks/bench_motion_amount.py --amounts 0 1 --per-direction 1 --seeds 1   # quick look

The demo model (its narrow twin: exactly the shipped model's arithmetic, see narrow.py) animates held-out keyframes
of the synthetic shapes data ("a red circle moving left"; 4 directions x --per-direction keyframes x --seeds
sampling seeds, the same samples for every amount) through ``sampling.animate`` (ComfyUI's KSampler code, as the
nodes call it), with the MODEL's transformer_options carrying the motion amount exactly as MicroCinema Motion
Amount sets it. Per amount, from the object's centroid (``video_metrics``, pixels of the 64x64 frames):
- along: first -> last frame displacement along the prompted direction (signed; the data moves 11-20 px);
- |d|: first -> last frame displacement, Euclidean;
- path: sum over frames of the centroid's step length (counts back-and-forth jitter too);
- dir: share of samples moving in the prompted direction (``moves_as_prompted``);
- SSIM: keyframe SSIM at the keyframe position (is the image still kept?).
``--temporal-only`` adds the same sweep with only the temporal layers scaled (the text sign's offset cue left as
trained, see motion_amount.py), to show which part of the motion the temporal layers carry.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FRAMES, SIZE, GAMMA = 8, 64, 0.02
CASES = {"left": ("red", "circle"), "right": ("blue", "square"), "up": ("green", "square"),
         "down": ("white", "circle")}  # one colour/shape per direction, as tests/test_demo_model.py


def path_length(metrics, clip: np.ndarray, colour) -> float | None:
    points = [metrics.object_centroid(frame, colour) for frame in clip]
    if any(p is None for p in points):
        return None
    return float(sum(np.hypot(b[0] - a[0], b[1] - a[1]) for a, b in zip(points, points[1:])))


def samples(synthetic, per_direction: int) -> list:
    """(spec, keyframe [H, W, 3]) held-out keyframes at the clip's centre (seeds as direction_probe.py's)."""
    out = []
    for n, (direction, (colour, shape)) in enumerate(CASES.items()):
        rng = random.Random(100 + n)
        while sum(s.direction == direction for s, _ in out) < per_direction:
            spec = synthetic.random_spec(rng, FRAMES)
            if spec.direction != direction:
                continue
            spec.colour, spec.shape = colour, shape
            clip = synthetic.render_clip(spec, FRAMES, SIZE).astype(np.float32) / 255.0
            out.append((spec, clip[FRAMES // 2]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--amounts", type=float, nargs="+", default=[0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 2])
    parser.add_argument("--per-direction", type=int, default=2, help="keyframes per direction")
    parser.add_argument("--seeds", type=int, default=2, help="sampling seeds per keyframe")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--temporal-only", action="store_true",
                        help="also sweep scaling only the temporal layers (not the text sign's offset cue)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE.parent / "tests"))
    from pack_import import core, sub  # noqa: E402  (ComfyUI on sys.path, the pack as microcinema_core)

    import torch

    torch.set_num_threads(args.threads)
    core()
    synthetic = sub("training.synthetic")
    metrics = sub("training.video_metrics")
    motion_amount = sub("motion_amount")
    sampler = sub("demo_sampler").DemoSampler(HERE.parent / ".cache" / "bench_motion_amount")
    patched = sampler.shipped_twin()
    variants = [("all motion", patched)] + ([("temporal only", patched)] if args.temporal_only else [])
    scaled_offsets = motion_amount.scaled_offsets
    cases = samples(synthetic, args.per_direction)
    key = FRAMES // 2
    rows, t0 = [], time.time()
    for label, patched in variants:
        # diagnostic only: the node always scales the cue too
        motion_amount.scaled_offsets = scaled_offsets if label == "all motion" else lambda hint, *_: hint
        for amount in args.amounts:
            model = patched.clone()  # what the node does
            model.model_options.setdefault("transformer_options", {})[motion_amount.MOTION_OPTION] = \
                motion_amount.MotionSettings(float(amount))
            along, euclid, path, ok, ssim, lost = [], [], [], 0, [], 0
            for n, (spec, keyframe) in enumerate(cases):
                colour, direction = synthetic.COLOURS[spec.colour], synthetic.DIRECTIONS[spec.direction]
                for seed in range(args.seeds):
                    video = sampler.animate(model, keyframe, spec.caption, FRAMES, key, 11 + 7 * n + 1000 * seed,
                                            args.steps, args.cfg, GAMMA)
                    moved = metrics.displacement(video, colour, direction)
                    steps = path_length(metrics, video, colour)
                    if moved is None or steps is None:
                        lost += 1
                        continue
                    first, last = metrics.object_centroid(video[0], colour), metrics.object_centroid(video[-1], colour)
                    along.append(moved[0])
                    euclid.append(float(np.hypot(last[0] - first[0], last[1] - first[1])))
                    path.append(steps)
                    ok += metrics.moves_as_prompted(video, colour, direction)
                    ssim.append(metrics.keyframe_ssim(video[key], keyframe))
            total = len(cases) * args.seeds
            rows.append((label, amount, float(np.mean(along)), float(np.std(along)), float(np.mean(euclid)),
                         float(np.mean(path)), ok / total, float(np.mean(ssim)), lost))
            print(f"  {label:<13} amount {amount:<5} along {rows[-1][2]:+6.2f} (sd {rows[-1][3]:.2f})  "
                  f"|d| {rows[-1][4]:5.2f}  path {rows[-1][5]:5.2f}  dir {rows[-1][6]:.2f}  SSIM {rows[-1][7]:.3f}  "
                  f"lost {lost}", flush=True)
    total = len(cases) * args.seeds
    print(f"\nMotion amount on the demo model ({total} samples per row: 4 directions x {args.per_direction} held-out "
          f"keyframes x {args.seeds} seeds; {FRAMES} frames {SIZE}x{SIZE}, keyframe at frame {key}, {args.steps} "
          f"euler steps, cfg {args.cfg}, gamma {GAMMA}; {time.time() - t0:.0f} s)")
    print("| model | motion amount | along (px, mean / sd) | abs displacement (px) | path (px) | dir | keyframe SSIM |")
    print("|---|---|---|---|---|---|---|")
    for label, amount, a, sd, e, p, d, s, lost in rows:
        print(f"| {label} | {amount:g} | {a:+.2f} / {sd:.2f} | {e:.2f} | {p:.2f} | {d:.2f} | {s:.3f} |"
              + (f" ({lost} lost)" if lost else ""))
    for label, _ in variants:
        values = [r[2] for r in rows if r[0] == label]
        increasing = all(b > a for a, b in zip(values, values[1:]))
        print(f"{label}: along-displacement {'is' if increasing else 'is NOT'} strictly increasing in the amount")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
