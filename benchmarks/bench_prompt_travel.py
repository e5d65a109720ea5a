"""Prompt travel on the trained demo model: does a direction word that changes mid-clip turn the object? (issue 18)

    .venv/bin/python benchmarks/bench_prompt_travel.py                      # 16 frames, word changes at frame 8
    .venv/bin/python benchmarks/bench_prompt_travel.py --frames 8 --switch 4 --keyframes 2 --seeds 1   # quick look

The demo model (its narrow twin: exactly the shipped model's arithmetic, see narrow.py) animates held-out synthetic
keyframes with the object near the centre (so it has room both ways), half of them under "left then right", half
under "right then left" (d1 then d2), through ``sampling.animate`` (ComfyUI's KSampler code, as the nodes call it)
with the positive conditioning that MicroCinema Prompt Travel outputs (``prompt_travel.travel_conditioning``, the
node's own function) and an empty negative. Prompt variants per keyframe and sampling seed:
  const d1     "... moving d1" on every frame (plain CLIP Text Encode output)
  const d2     "... moving d2" on every frame
  hold         "0: ... moving d1" / "S: ... moving d2", interpolation hold (a cut at frame S)
  linear       "0: ... moving d1" / "T-1: ... moving d2", interpolation linear (a gradual change)
each with the keyframe at the centre (frame T // 2) and at the first frame. From the object's centroid per frame
(``video_metrics.object_centroid``, pixels of the 64x64 frames), projected on d1's axis (+ = towards d1):
  v1   mean velocity over frames 0..S-1 (px/frame);  v2  mean velocity over frames S..T-1;
  jump the step from frame S-1 to S;  turn  share of samples with v1 > 0.3 and v2 < -0.3 (moves d1, then d2).
A model that follows each frame's word shows v1 > 0, v2 < 0 for hold and linear; const d1 gives +/+, const d2 -/-.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZE, GAMMA = 64, 0.02
PAIRS = (("left", "right"), ("right", "left"))
LOOKS = (("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "circle"))
VARIANTS = ("const d1", "const d2", "hold", "linear")
TURN = 0.3  # px/frame that counts as moving


def keyframes(synthetic, count: int, frames: int) -> list:
    """(d1, d2, colour, shape, keyframe [H, W, 3] float) with the object near the centre (seeded, held out)."""
    rng, out = random.Random(4242), []
    for n in range(count):
        d1, d2 = PAIRS[n % 2]
        colour, shape = LOOKS[n % len(LOOKS)]
        spec = synthetic.random_spec(rng, frames)
        spec = synthetic.ClipSpec(**{**spec.__dict__, "direction": d1, "colour": colour, "shape": shape,
                                     "start": (rng.uniform(0.45, 0.55), rng.uniform(0.4, 0.6))})
        out.append((d1, d2, colour, shape, synthetic.render_frame(spec, 0, SIZE).astype(np.float32) / 255.0))
    return out


def schedule(variant: str, first: str, second: str, frames: int, switch: int) -> tuple[str, str]:
    """(schedule text, interpolation) for a variant."""
    if variant == "const d1":
        return f"0: {first}", "hold"
    if variant == "const d2":
        return f"0: {second}", "hold"
    if variant == "hold":
        return f"0: {first}\n{switch}: {second}", "hold"
    return f"0: {first}\n{frames - 1}: {second}", "linear"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--switch", type=int, default=None, help="frame of the second word (default frames // 2)")
    parser.add_argument("--keyframes", type=int, default=4, help="held-out keyframes (half left->right)")
    parser.add_argument("--seeds", type=int, default=2, help="sampling seeds per keyframe")
    parser.add_argument("--positions", nargs="+", default=["center", "first"], choices=["center", "first"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    frames, switch = args.frames, args.switch if args.switch is not None else args.frames // 2
    if not 2 <= switch <= frames - 2:
        parser.error("--switch must leave at least two frames on each side")
    sys.path.insert(0, str(HERE.parent / "tests"))
    from pack_import import core, sub  # noqa: E402  (ComfyUI on sys.path, the pack as microcinema_core)

    import torch

    torch.set_num_threads(args.threads)
    core()
    synthetic = sub("training.synthetic")
    metrics, sampling, travel, noise_prior = (sub("training.video_metrics"), sub("sampling"), sub("prompt_travel"),
                                              sub("noise_prior"))
    sampler = sub("demo_sampler").DemoSampler(HERE.parent / ".cache" / "bench_prompt_travel")
    model = sampler.shipped_twin()
    negative = sampler.text("")
    cases = keyframes(synthetic, args.keyframes, frames)
    t0, rows = time.time(), []
    for position in args.positions:
        key = noise_prior.keyframe_index(position, frames)
        for variant in VARIANTS:
            v1s, v2s, jumps, paths, lost = [], [], [], [], 0
            for n, (d1, d2, colour, shape, keyframe) in enumerate(cases):
                text, mode = schedule(variant, f"a {colour} {shape} moving {d1}", f"a {colour} {shape} moving {d2}",
                                      frames, switch)
                positive = travel.travel_conditioning(sampler.clip, text, frames, mode)
                axis = synthetic.DIRECTIONS[d1][0]  # +1 right, -1 left: project x on d1
                image = torch.from_numpy(keyframe)[None]
                for seed in range(args.seeds):
                    video, _ = sampling.animate(model, positive, negative, sampler.vae, image, width=SIZE,
                                                height=SIZE, length=frames, seed=17 + 31 * n + 1000 * seed,
                                                steps=args.steps, cfg=args.cfg, keyframe_position=position,
                                                noise_prior_gamma=GAMMA)
                    video = video.detach().cpu().numpy()
                    points = [metrics.object_centroid(f, synthetic.COLOURS[colour]) for f in video]
                    if any(p is None for p in points):
                        lost += 1
                        continue
                    x = np.array([p[0] for p in points]) * axis
                    paths.append(np.round(x - x[0], 1))
                    v1s.append((x[switch - 1] - x[0]) / (switch - 1))
                    v2s.append((x[-1] - x[switch]) / (frames - 1 - switch))
                    jumps.append(x[switch] - x[switch - 1])
            v1, v2 = np.array(v1s), np.array(v2s)
            turn = float(np.mean((v1 > TURN) & (v2 < -TURN))) if len(v1) else float("nan")
            rows.append((position, key, variant, v1.mean(), v1.std(), v2.mean(), v2.std(), float(np.mean(jumps)),
                         turn, lost, np.mean(paths, axis=0) if paths else None))
            print(f"  keyframe {position:<6} {variant:<8} v1 {v1.mean():+5.2f}  v2 {v2.mean():+5.2f}  "
                  f"jump {np.mean(jumps):+5.2f}  turn {turn:.2f}  lost {lost}", flush=True)
    total = len(cases) * args.seeds
    print(f"\nPrompt travel on the demo model ({total} samples per row: {args.keyframes} held-out keyframes, half "
          f"left->right, half right->left, x {args.seeds} seeds; {frames} frames {SIZE}x{SIZE}, second word from "
          f"frame {switch}, {args.steps} euler steps, cfg {args.cfg}, gamma {GAMMA}; {time.time() - t0:.0f} s)")
    print("Velocities along d1 (px/frame, + = towards the first word's direction).")
    print("| keyframe | prompts | v1 frames 0..S-1 (mean / sd) | v2 frames S..T-1 (mean / sd) | jump S-1 -> S | turn |")
    print("|---|---|---|---|---|---|")
    for position, key, variant, m1, s1, m2, s2, jump, turn, lost, _ in rows:
        print(f"| {position} (frame {key}) | {variant} | {m1:+.2f} / {s1:.2f} | {m2:+.2f} / {s2:.2f} | {jump:+.2f} | "
              f"{turn:.2f} |" + (f" ({lost} lost)" if lost else ""))
    print("\nMean path along d1 (px from frame 0, per frame):")
    for position, key, variant, *_, path in rows:
        if path is not None:
            print(f"  {position:<6} {variant:<8} " + " ".join(f"{v:+5.1f}" for v in path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
