"""Precompute a latent cache: ``python -m microcinema_core.precompute --base sd15.safetensors --data SOURCE --out cache/``.

Decodes each clip of SOURCE (any source ``python -m microcinema_core.train --data`` takes) once, at the frames,
size and stride/fps given, encodes it with the base checkpoint's VAE (latents stored fp16) and its caption with
the base's text encoder, and writes safetensors shards (training/latent_cache.py). ``train --data cache/`` then
trains with no decoding, VAE or text-encoder work per step. Each clip is cached with one window, its first
``--frames`` frames; unusable clips are skipped and listed in cache/skipped.txt.

The cache is tied to the base checkpoint's VAE and text encoder: train on the same --base.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .comfy_env import ensure_comfy

log = logging.getLogger("microcinema.precompute")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m microcinema_core.precompute", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="SD1.x/SD2.x checkpoint (.safetensors): its VAE and text encoder")
    parser.add_argument("--data", required=True, help="clip folder, .csv/.parquet manifest or .tar shard(s)")
    parser.add_argument("--out", required=True, type=Path, help="cache folder to write")
    parser.add_argument("--video-root", help="folder a manifest's relative paths start from")
    parser.add_argument("--frames", type=int, default=16, help="frames per cached clip")
    parser.add_argument("--size", type=int, default=256, help="resolution (square; shorter side, centre crop)")
    parser.add_argument("--stride", type=int, default=1, help="take every stride-th frame")
    parser.add_argument("--fps", type=float, default=0.0, help="if > 0, sample frames at this rate instead")
    parser.add_argument("--shard-size", type=int, default=256, help="clips per shard file")
    parser.add_argument("--batch", type=int, default=4, help="clips encoded together")
    parser.add_argument("--workers", type=int, default=2, help="decoding worker processes")
    parser.add_argument("--device", default="auto", help="auto (cuda where available), cpu, cuda...")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        parse_args(argv)
        return 0
    ensure_comfy()
    args = parse_args(argv)
    import torch

    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        return _precompute(args, device)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _precompute(args: argparse.Namespace, device) -> int:
    import torch

    from .training import data, latent_cache
    from .training.loop import worker_context
    from .training.model_setup import FrozenEncoders

    clips = data.ClipDataset(args.data, frames=args.frames, size=args.size, stride=args.stride, fps=args.fps,
                             video_root=args.video_root, window="first")
    encoders = FrozenEncoders.from_checkpoint(args.base, device)
    writer = latent_cache.CacheWriter(args.out, args.shard_size, {
        "frames": args.frames, "size": args.size, "stride": args.stride, "fps": args.fps,
        "base": Path(args.base).name, "source": str(args.data)})
    loader = torch.utils.data.DataLoader(data.IndexOrder(clips), batch_size=args.batch, num_workers=args.workers,
                                         collate_fn=list, multiprocessing_context=worker_context() if args.workers else None)
    skipped = []
    for samples in loader:
        good = [s for s in samples if s["frames"] is not None]
        skipped += [f"{s['name']}: {s['reason']}" for s in samples if s["frames"] is None]
        if not good:
            continue
        latents = encoders.latents(torch.stack([s["frames"] for s in good]))
        contexts = encoders.contexts([s["caption"] for s in good])
        per_clip = latents.reshape(len(good), args.frames, *latents.shape[1:])
        for sample, z, context in zip(good, per_clip, contexts):
            writer.add(sample["name"], z, context)
        log.info("cached %d of %d clips", len(writer.names), len(clips))
    if skipped:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "skipped.txt").write_text("\n".join(skipped) + "\n")
        log.warning("%d clips skipped (listed in %s)", len(skipped), args.out / "skipped.txt")
    if not writer.names:
        log.error("%s: no usable clip, nothing cached", args.data)
        return 2
    index = writer.close(encoders.contexts([""])[0])
    log.info("wrote %s: %d clips", index, len(writer.names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
