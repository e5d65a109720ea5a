"""Seams of context windows: frame-to-frame change at window borders vs inside windows (issue 8).

    .venv/bin/python benchmarks/bench_seams.py                      # 32 frames, windows of 8 (overlap 2)
    .venv/bin/python benchmarks/bench_seams.py --frames 64 --clips 4

The trained demo model (its narrow twin, exactly the shipped model's arithmetic) animates held-out keyframes of the
synthetic shapes data into long videos through ComfyUI's KSampler code, once per fuse method with the static
window schedule and once without windows. For every pair of neighbouring frames (t, t+1) the mean absolute pixel
change is taken; a pair is a *border* pair when some window starts or ends between t and t+1, otherwise an
*inside* pair (pairs touching the keyframe, which every window holds, are left out of both). A seam shows as
border change > inside change: the ratio border/inside is printed per method (1.0: no visible seam). The same
pairs are scored on the no-window video, as the baseline ratio of the motion itself.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZE = 64


def border_pairs(windows: list[list[int]], frames: int, keyframe: int) -> tuple[list[int], list[int]]:
    cuts = set()
    for window in windows:
        plain = [f for f in window if f != keyframe] or window
        cuts.add(min(plain) - 1)  # a window starts between (start-1, start)
        cuts.add(max(plain))      # ...and ends between (end, end+1)
    border, inside = [], []
    for t in range(frames - 1):
        if keyframe in (t, t + 1):
            continue
        (border if t in cuts else inside).append(t)
    return border, inside


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--gamma", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run-dir", type=Path, default=HERE.parent / ".cache" / "bench_seams")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE.parent / "tests"))
    from pack_import import sub  # noqa: E402

    import torch

    torch.set_num_threads(args.threads)
    synthetic = sub("training.synthetic")
    cw, video_unet = sub("context_windows"), sub("video_unet")
    DemoSampler = sub("demo_sampler").DemoSampler

    sampler = DemoSampler(args.run_dir / "models")
    base = sampler.shipped_twin()

    keyframe_index = args.frames // 2
    rng = random.Random(30_001)
    specs = [synthetic.random_spec(rng, 8) for _ in range(args.clips)]
    methods = list(cw.FUSE_METHODS)
    settings = {m: cw.ContextSettings(args.window, args.overlap, "static_standard", 1, False, m, True) for m in methods}
    windows = cw.window_indices(args.frames, settings["pyramid"])
    border, inside = border_pairs(windows, args.frames, keyframe_index)
    diffs: dict[str, list[np.ndarray]] = {m: [] for m in ["no windows"] + methods}
    t0 = time.time()
    for n, spec in enumerate(specs):
        keyframe = synthetic.render_frame(spec, 4, SIZE).astype(np.float32) / 255.0
        for method in diffs:
            patched = base.clone()
            if method != "no windows":
                options = patched.model_options.setdefault("transformer_options", {})
                options[video_unet.CONTEXT_OPTION] = settings[method]
            video = sampler.animate(patched, keyframe, spec.caption, args.frames, keyframe_index, 500 + n, args.steps,
                                    args.cfg, args.gamma)
            diffs[method].append(np.abs(np.diff(video, axis=0)).mean(axis=(1, 2, 3)))
    print(f"Seams: {args.frames} frames, windows of {args.window} (overlap {args.overlap}, static schedule, keyframe "
          f"{keyframe_index} in every window), {args.clips} held-out clips, {args.steps} euler steps, cfg {args.cfg}; "
          f"{len(border)} border pairs, {len(inside)} inside pairs; {time.time() - t0:.0f} s")
    print("| fuse method | change at borders | change inside | border / inside |")
    print("|---|---|---|---|")
    for method, rows in diffs.items():
        d = np.stack(rows)
        b, i = d[:, border].mean(), d[:, inside].mean()
        print(f"| {method} | {b:.4f} | {i:.4f} | {b / i:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
