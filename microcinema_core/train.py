"""Train MicroCinema: ``python -m microcinema_core.train --base sd15.safetensors --data videos/ --out runs/a``.

Runs again with the same --out resume from the last checkpoint. The run folder gets module.safetensors (put
it in ComfyUI's models/microcinema and use 'MicroCinema Apply Module' on the same base), full.safetensors when
the spatial UNet trains too (for 'MicroCinema Checkpoint Loader'), loss.jsonl and the resume state.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from .comfy_env import ensure_comfy


def parse_args(argv: list[str] | None):
    from .training.trainer import TrainConfig

    parser = argparse.ArgumentParser(prog="python -m microcinema_core.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    help_text = {
        "base": "SD1.x/SD2.x checkpoint (.safetensors) with UNet, text encoder and VAE",
        "data": "folder of captioned videos: clip.mp4 + clip.txt, or frame folders with caption.txt",
        "out": "run folder (checkpoints, loss.jsonl, resume state)",
        "noise_prior_lambda": "Appearance Noise Prior lambda in training (paper: 0.03)",
        "text_dropout": "probability of an empty caption (classifier-free guidance)",
        "train_spatial": "also train the SD UNet", "from_scratch": "re-initialise the SD UNet (implies training it)",
        "keyframe": "center (paper) or random keyframe position per clip",
        "motion_text_sign": "k learned signs read from the prompt, times frame offset x keyframe, as extra AppearNet "
                            "inputs (our addition for direction words; 0: the paper's design; ignored with --module-init)",
    }
    for f in dataclasses.fields(TrainConfig):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        required = f.default is dataclasses.MISSING
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text.get(f.name))
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            parser.add_argument(flag, type=kind, required=required, default=None if required else f.default,
                                help=help_text.get(f.name))
    args = parser.parse_args(argv)
    values = {k: v for k, v in vars(args).items()}
    if values.get("from_scratch"):
        values["train_spatial"] = True
    return TrainConfig(**values)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if argv is None:
        argv = sys.argv[1:]
    if "-h" in argv or "--help" in argv:
        # help must work even where ComfyUI is missing
        try:
            ensure_comfy()
        except RuntimeError:
            pass
    else:
        ensure_comfy()
    cfg = parse_args(argv)
    from .training.trainer import Trainer

    trainer = Trainer(cfg)
    loss = trainer.train()
    logging.info("done: step %d, last loss %.5f, checkpoints in %s", trainer.step, loss, cfg.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
