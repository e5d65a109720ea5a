"""Video-to-video and clip extension on the trained demo model (issue 18 parts 3 and 4).

    .venv/bin/python benchmarks/bench_video_to_video.py               # 4 held-out clips, 12 euler steps
    .venv/bin/python benchmarks/bench_video_to_video.py --clips 8 --steps 20

Video-to-video: a source clip (the demo animating held-out keyframe A under its caption) is re-sampled with the
keyframe of another held-out clip B (another colour/shape) and B's caption, through the functions the nodes call
(video_to_video.video_to_video_inputs, ComfyUI's common_ksampler with the same steps/denoise, VAE decode). Per
denoise it prints the mean absolute pixel difference of the result to the source clip (how much of the source
stays) and of the keyframe frame to keyframe B (how much of the new appearance arrives), per noise-prior gamma.

Extension: two rounds of 8 frames (round 2's keyframe = round 1's last frame, keyframe position first), joined
without the repeated frame. Printed: the mean frame-to-frame change at the seam (round 1's last frame -> round 2's
second frame), inside the rounds, and at the pair the join drops (round 1's last frame -> round 2's first: a
near-freeze if it were kept).
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZE, FRAMES = 64, 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--denoise", type=float, nargs="+", default=[0.3, 0.6, 1.0])
    parser.add_argument("--gammas", type=float, nargs="+", default=[0.02])
    parser.add_argument("--run-dir", type=Path, default=HERE.parent / ".cache" / "bench_video_to_video")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE.parent / "tests"))
    from pack_import import sub  # noqa: E402

    import torch

    torch.set_num_threads(args.threads)
    synthetic = sub("training.synthetic")
    v2v, extend = sub("video_to_video"), sub("extend")
    DemoSampler = sub("demo_sampler").DemoSampler
    import nodes as comfy_nodes  # ComfyUI's nodes.py (common_ksampler)

    sampler = DemoSampler(args.run_dir / "models")
    model = sampler.shipped_twin()
    rng = random.Random(40_001)
    specs = [synthetic.random_spec(rng, FRAMES) for _ in range(2 * args.clips)]

    def keyframe(spec, t=0):
        return synthetic.render_frame(spec, t, SIZE).astype(np.float32) / 255.0

    def restyle(source: np.ndarray, key: np.ndarray, caption: str, denoise: float, gamma: float, seed: int):
        pos, neg, latent = v2v.video_to_video_inputs(
            sampler.text(caption), sampler.text(""), sampler.vae, model, video=torch.from_numpy(source),
            keyframe=torch.from_numpy(key)[None], keyframe_position="first", noise_prior_gamma=gamma,
            steps=args.steps, denoise=denoise, sampler_name="euler", scheduler="normal")
        (out,) = comfy_nodes.common_ksampler(model, seed, args.steps, args.cfg, "euler", "normal", pos, neg, latent,
                                             denoise=denoise)
        return sampler.vae.decode(out["samples"]).detach().cpu().numpy()

    t0 = time.time()
    rows: dict[tuple[float, float], list[tuple[float, float]]] = {}
    seam, inside, dropped = [], [], []
    for n in range(args.clips):
        a, b = specs[2 * n], specs[2 * n + 1]
        source = sampler.animate(model, keyframe(a), a.caption, FRAMES, 0, 100 + n, args.steps, args.cfg, 0.02)
        key_b = keyframe(b)
        for denoise in args.denoise:
            for gamma in args.gammas:
                out = restyle(source, key_b, b.caption, denoise, gamma, 200 + n)
                rows.setdefault((denoise, gamma), []).append(
                    (float(np.abs(out - source).mean()), float(np.abs(out[0] - key_b).mean())))
        # extension: round 2 starts from round 1's last frame
        round1 = source
        round2 = sampler.animate(model, round1[-1], a.caption, FRAMES, 0, 300 + n, args.steps, args.cfg, 0.02)
        joined = extend.join_clips(torch.from_numpy(round1), torch.from_numpy(round2)).numpy()
        assert joined.shape[0] == 2 * FRAMES - 1
        change = np.abs(np.diff(joined, axis=0)).mean(axis=(1, 2, 3))
        seam.append(change[FRAMES - 1])
        inside.extend(np.delete(change, FRAMES - 1).tolist())
        dropped.append(float(np.abs(round2[0] - round1[-1]).mean()))
    print(f"Video-to-video on the demo model: {args.clips} held-out clips of {FRAMES} frames at {SIZE}x{SIZE}, "
          f"{args.steps} euler steps, cfg {args.cfg}; {time.time() - t0:.0f} s")
    print("| denoise | gamma | mean abs diff to the source | keyframe frame vs new keyframe |")
    print("|---|---|---|---|")
    for (denoise, gamma), values in rows.items():
        d = np.array(values)
        print(f"| {denoise} | {gamma} | {d[:, 0].mean():.4f} | {d[:, 1].mean():.4f} |")
    print(f"Extension (2 rounds of {FRAMES}, joined to {2 * FRAMES - 1} frames): frame change at the seam "
          f"{np.mean(seam):.4f}, inside the rounds {np.mean(inside):.4f}; the dropped pair (round 1 last -> round 2 "
          f"first) {np.mean(dropped):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
