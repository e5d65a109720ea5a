"""Train the demo model on CPU: a narrow twin of the SD1.5-shaped demo UNet, then its MicroCinema module.

    python -m microcinema_core.demo_training --out .cache/demo_training --phase image --steps 3000
    python -m microcinema_core.demo_training --out .cache/demo_training --phase video --steps 3000

Phase ``image`` trains the spatial UNet as a text-to-image model on single frames of the synthetic shapes videos
(stage 1 of the demo workflow). Phase ``video`` freezes it and trains the module (temporal layers + AppearNet)
on 8-frame clips with the Appearance Noise Prior (lambda, default 0.03), keyframe in the centre or (half of the
time) anywhere, captions dropped 10 % of the time for classifier-free guidance. Clips are rendered on the fly
(an unlimited stream: nothing to overfit) and encoded with the demo VAE's exact pooling formula.

Both phases run the one training loop of ``python -m microcinema_core.train`` (training/loop.py) with the demo's
narrow-twin set-up and synthetic clip stream, so they also run data-parallel under torchrun
(``torchrun --nproc_per_node 2 -m microcinema_core.demo_training ...``; --batch is then per rank).

The twin trains in a few CPU minutes per thousand steps (narrow.py says why it is exact); ``--publish`` copies the
result to ``microcinema_core/weights/`` where ``demo.py`` widens it into the files ComfyUI loads. A run resumes
from its last save, optimiser state included. Same seed and global batch: the same samples and noise, at any
number of ranks or workers.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .demo import TEXT_SIGN


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="run folder (weights, loss logs, resume state)")
    parser.add_argument("--phase", choices=("image", "video"), default="image")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=0, help="images (phase image, default 64) or clips (video, 8)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--noise-prior-lambda", type=float, default=0.03)
    parser.add_argument("--no-appearnet", action="store_true")
    parser.add_argument("--text-sign", type=int, default=TEXT_SIGN,
                        help="k text-read signs of the frame offset fed to AppearNet (ModuleConfig.motion_text_sign)")
    parser.add_argument("--base", type=Path, help="narrow UNet of phase image (default: OUT/unet.safetensors)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes rendering clips")
    parser.add_argument("--ema-decay", type=float, default=0.0, help="keep an EMA of the weights (0: none)")
    parser.add_argument("--val-every", type=int, default=0, help="phase video: validate every N steps on held-out "
                        "synthetic keyframes (validation/ and validation.jsonl in --out; 0: never)")
    parser.add_argument("--val-count", type=int, default=8, help="validation keyframe + prompt pairs")
    parser.add_argument("--val-weights", choices=("ema", "raw", "both"), default="both")
    parser.add_argument("--publish", action="store_true", help="copy OUT's weights to microcinema_core/weights")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from .comfy_env import ensure_comfy

    ensure_comfy()
    import torch

    from .training import distributed
    from .training.demo_trainer import DemoTrainer, publish

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.publish:
        publish(args.out)
        return 0
    batch = args.batch or (64 if args.phase == "image" else 8)
    dist = distributed.setup("cpu")  # the narrow twin is a CPU recipe
    try:
        trainer = DemoTrainer(args.out, args.phase, args.lr, batch, args.noise_prior_lambda, not args.no_appearnet,
                              args.seed, args.base, args.text_sign, workers=args.workers, dist=dist,
                              ema_decay=args.ema_decay, val_every=args.val_every, val_count=args.val_count,
                              val_weights=args.val_weights)
        trainer.train(args.steps)
    finally:
        dist.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
