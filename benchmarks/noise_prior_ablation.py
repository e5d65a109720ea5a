"""A miniature of the paper's Appearance Noise Prior ablation, on the synthetic shapes data (issue 6.3).

    .venv/bin/python benchmarks/noise_prior_ablation.py                 # trains 4 variants, prints the table
    .venv/bin/python benchmarks/noise_prior_ablation.py --steps 150 --clips 8   # quicker, noisier

From the shipped stage-1 UNet of the demo (the phase-image weights), four MicroCinema modules are trained with
the same seed, steps and data: noise-prior lambda in {0, 0.03} x AppearNet on/off (``demo_trainer``, phase
video; kept in --run-dir and reused by later runs). Each is sampled with gamma in {0, 0.01, 0.02, 0.04} through
ComfyUI's own KSampler code (``nodes.common_ksampler``; conditioning and prior latent built by the same functions
as MicroCinema Image To Video) on held-out clips (seeds the trainer never draws), and scored by
``video_metrics``:
- FD: Frechet distance between generated and held-out real clips in our clip feature space (lower is better);
- SSIM: keyframe SSIM at the keyframe position (higher is better);
- dir: share of clips whose object moves in the prompted direction.

The models are the narrow training twins (exactly the shipped wide models' arithmetic, 6-7x cheaper on a CPU),
patched over the demo checkpoint's MODEL as its diffusion model.
"""
from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LAMBDAS = (0.0, 0.03)
GAMMAS = (0.0, 0.01, 0.02, 0.04)
FRAMES, SIZE = 8, 64
EVAL_SEED, REAL_SEED = 10_007, 20_011  # held out: the trainer's stream is random.Random(0)


def held_out_specs(synthetic, seed: int, count: int) -> list:
    rng = random.Random(seed)
    return [synthetic.random_spec(rng, FRAMES) for _ in range(count)]


def render(synthetic, spec) -> np.ndarray:
    return synthetic.render_clip(spec, FRAMES, SIZE).astype(np.float32) / 255.0


def pooled(frames: np.ndarray) -> np.ndarray:
    """What the demo VAE can represent of frames: 8x8 means, upsampled."""
    t, h, w, c = frames.shape
    cells = frames.reshape(t, h // 8, 8, w // 8, 8, c).mean(axis=(2, 4))
    return np.repeat(np.repeat(cells, 8, axis=1), 8, axis=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=HERE.parent / ".cache" / "ablation")
    parser.add_argument("--steps", type=int, default=300, help="training steps per variant")
    parser.add_argument("--batch", type=int, default=4, help="clips per training step")
    parser.add_argument("--clips", type=int, default=16, help="held-out clips generated per table cell")
    parser.add_argument("--real", type=int, default=64, help="held-out real clips for the Frechet distance")
    parser.add_argument("--sampling-steps", type=int, default=12)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--text-sign", type=int, default=None,
                        help="k of the text sign in the AppearNet-on variants (default: the shipped demo's; 0: the paper's design)")
    args = parser.parse_args(argv)
    if args.clips < 2 or args.real < 2:
        parser.error("--clips and --real need at least 2 clips each (the Frechet distance needs a covariance)")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    sys.path.insert(0, str(HERE.parent / "tests"))
    from pack_import import core, sub  # noqa: E402  (ComfyUI on sys.path, the pack as microcinema_core)

    import torch

    torch.set_num_threads(args.threads)
    mc = core()
    demo, synthetic, metrics = sub("demo"), sub("training.synthetic"), sub("training.video_metrics")
    trainer_lib, narrow = sub("training.demo_trainer"), sub("narrow")
    DemoSampler = sub("demo_sampler").DemoSampler

    if args.text_sign is None:
        args.text_sign = demo.TEXT_SIGN
    base = demo.NARROW_UNET
    if not base.is_file():
        raise SystemExit(f"{base} is missing: the ablation starts from the shipped stage-1 UNet")
    variants = [(lam, app) for lam in LAMBDAS for app in (True, False)]
    t0 = time.time()
    def run_dir(lam: float, app: bool) -> Path:
        return args.run_dir / (f"lambda{lam}_appearnet{int(app)}" + (f"_sign{args.text_sign}" if app else ""))

    for lam, app in variants:
        out = run_dir(lam, app)
        trainer = trainer_lib.DemoTrainer(out, "video", 5e-4, args.batch, lam, app, seed=0, base=base,
                                          text_sign=args.text_sign)
        if trainer.step < args.steps:
            print(f"training lambda={lam} appearnet={'on' if app else 'off'} ({args.steps} steps)", flush=True)
            trainer.train(args.steps)
    train_seconds = time.time() - t0

    sampler = DemoSampler(args.run_dir / "models")
    real_specs = held_out_specs(synthetic, REAL_SEED, args.real)
    real = np.stack([metrics.clip_features(pooled(render(synthetic, s)), synthetic.COLOURS[s.colour],
                                           synthetic.DIRECTIONS[s.direction]) for s in real_specs])
    eval_specs = held_out_specs(synthetic, EVAL_SEED, args.clips)
    rows = []
    t1 = time.time()
    for lam, app in variants:
        out = run_dir(lam, app)
        unet, module = narrow.load_twin(str(base), str(out / "module.safetensors"))
        patched = sampler.with_twin(unet, module)
        for gamma in GAMMAS:
            features, ssims, directed = [], [], 0
            for n, spec in enumerate(eval_specs):
                frames = pooled(render(synthetic, spec))
                key = FRAMES // 2
                keyframe = frames[key]
                video = sampler.animate(patched, keyframe, spec.caption, FRAMES, key, 1000 + n, args.sampling_steps,
                                        args.cfg, gamma)
                colour, direction = synthetic.COLOURS[spec.colour], synthetic.DIRECTIONS[spec.direction]
                features.append(metrics.clip_features(video, colour, direction))
                ssims.append(metrics.keyframe_ssim(video[key], keyframe))
                directed += metrics.moves_as_prompted(video, colour, direction)
            rows.append((lam, app, gamma, metrics.frechet_distance(np.stack(features), real), float(np.mean(ssims)),
                         directed / len(eval_specs)))
            print(f"  lambda={lam:<4} appearnet={'on ' if app else 'off'} gamma={gamma:<4}  "
                  f"FD={rows[-1][3]:.4f}  SSIM={rows[-1][4]:.3f}  dir={rows[-1][5]:.2f}", flush=True)
    print(f"\nNoise-prior ablation ({args.steps} training steps x {args.batch} clips per variant, text sign "
          f"k={args.text_sign} with AppearNet, {args.clips} "
          f"held-out clips per cell, {args.sampling_steps} euler steps, cfg {args.cfg}; train {train_seconds:.0f} s, "
          f"sample {time.time() - t1:.0f} s; microcinema_core {getattr(mc, 'FORMAT_VERSION', '?')})")
    print("| train lambda | AppearNet | " + " | ".join(f"gamma {g}: FD / SSIM / dir" for g in GAMMAS) + " |")
    print("|---|---|" + "---|" * len(GAMMAS))
    for lam, app in variants:
        cells = [r for r in rows if r[0] == lam and r[1] == app]
        print(f"| {lam} | {'on' if app else 'off'} | " +
              " | ".join(f"{fd:.4f} / {s:.3f} / {d:.2f}" for *_, fd, s, d in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
