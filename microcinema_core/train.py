"""Train MicroCinema: ``python -m microcinema_core.train --base sd15.safetensors --data videos/ --out runs/a``.

On several GPUs or nodes, launch the same command with torchrun (data-parallel, DDP):
    torchrun --nproc_per_node 8 -m microcinema_core.train --base ... --data ... --out ...
Runs again with the same --out resume from the last checkpoint, on any number of ranks. The run folder gets
module.safetensors (put it in ComfyUI's models/microcinema and use 'MicroCinema Apply Module' on the same base),
full.safetensors when the spatial UNet trains too (for 'MicroCinema Checkpoint Loader'), loss.jsonl and the
resume state. docs/training.md has the whole recipe.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from .comfy_env import ensure_comfy

HELP = {
    "base": "SD1.x/SD2.x checkpoint (.safetensors) with UNet, text encoder and VAE",
    "data": "training clips: a folder (clip.mp4 + clip.txt, or frame folders with caption.txt), a .csv/.parquet "
            "manifest (path,caption[,fps,frames]; WebVid's columns accepted), .tar shards (a file, a folder of "
            "them, or shards/{000..099}.tar), or a latent cache from python -m microcinema_core.precompute",
    "out": "run folder (checkpoints, loss.jsonl, resume state)",
    "video_root": "folder a manifest's relative paths start from (WebVid: <video-root>/<page_dir>/<videoid>.mp4)",
    "frames": "frames per training clip", "stride": "take every stride-th frame of the source video",
    "fps": "if > 0, sample frames at this rate (seconds-based) instead of every stride-th frame",
    "window": "random: each sample's frames start anywhere in its clip; first: at the clip's start (what a latent "
              "cache holds)",
    "size": "training resolution (square; shorter side resized, centre crop)",
    "batch_size": "clips per rank per micro-batch (the global batch is ranks x batch-size x grad-accum)",
    "grad_accum": "micro-batches per optimisation step", "steps": "optimisation steps in all (a resumed run "
    "continues up to this number)", "lr": "AdamW learning rate", "warmup_steps": "linear learning-rate warm-up",
    "weight_decay": "AdamW weight decay", "max_grad_norm": "gradient clipping norm",
    "noise_prior_lambda": "Appearance Noise Prior lambda in training (paper: 0.03)",
    "text_dropout": "probability of an empty caption (classifier-free guidance)",
    "train_spatial": "also train the SD UNet", "from_scratch": "re-initialise the SD UNet (implies training it)",
    "appearnet": "train with the Appearance Injection Network",
    "motion_text_sign": "k learned signs read from the prompt, times frame offset x keyframe, as extra AppearNet "
                        "inputs (our addition for direction words; 0: the paper's design; ignored with --module-init)",
    "keyframe": "center (paper), random, or mixed (centre half of the time) keyframe position per clip",
    "loss_weighting": "mse (the paper) or snr20 (1 + min(1/SNR, 20), what the demo trains with)",
    "mixed_precision": "auto (bf16 on CUDA, none on CPU), no, fp16 or bf16",
    "frozen_dtype": "storage of the frozen UNet: auto (bf16 on CUDA), fp32, bf16, fp16",
    "gradient_checkpointing": "auto (on for CUDA), yes or no",
    "optimizer": "adamw (fused on CUDA) or adamw8bit (bitsandbytes, CUDA, where installed)",
    "workers": "DataLoader worker processes per rank (0: load in the training process)",
    "save_every": "checkpoint every N steps", "log_every": "log every N steps", "seed": "the run's seed: every "
    "sample's clip, window, keyframe, caption drop, noise and timestep derive from it and the sample's number",
    "module_init": "start from an existing module or full MicroCinema checkpoint (.safetensors)",
    "lr_schedule": "constant, or cosine: after the warm-up, down to --min-lr-ratio x lr at the last step",
    "min_lr_ratio": "the cosine schedule's final learning rate, as a fraction of --lr",
    "ema_decay": "keep an exponential moving average of the trained weights with this decay (e.g. 0.9999; 0: none); "
                 "written as module_ema.safetensors, a module file like module.safetensors",
    "ema_warmup": "EMA warm-up: the decay at update n is min(--ema-decay, (1 + n) / (ema-warmup + n)); 0: none",
    "keep_last": "numbered copies of the last K checkpoints under checkpoints/step-NNNNNNN/ (0: only the latest)",
    "tensorboard": "auto (TensorBoard events in <out>/tensorboard when the tensorboard package is installed), yes, no",
    "val_every": "validate every N steps (and at the last): sample --val-data's keyframe + prompt pairs, write mp4s, a "
                 "contact sheet and validation.jsonl (0: never)",
    "val_data": "validation pairs: a folder of keyframe images with same-named .txt prompts, synthetic:N, holdout "
                "(the clips --val-holdout keeps out of training; the default), or another clip source",
    "val_holdout": "the last K clips of --data are never trained on (validation pairs for --val-data holdout)",
    "val_count": "validation pairs used", "val_frames": "frames of each validation video (0: --frames)",
    "val_size": "validation videos' width and height, a multiple of 16 (0: --size)",
    "val_steps": "sampling steps of validation videos", "val_cfg": "guidance scale of validation videos",
    "val_gamma": "noise-prior gamma of validation videos",
    "val_weights": "weights validated: ema (falls back to raw without --ema-decay), raw, or both",
    "device": "auto (cuda:LOCAL_RANK where CUDA exists, else cpu), cpu, cuda, cuda:1...",
}


def parse_args(argv: list[str] | None):
    from .training.trainer import TrainConfig

    parser = argparse.ArgumentParser(prog="python -m microcinema_core.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(TrainConfig):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        required = f.default is dataclasses.MISSING
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=HELP.get(f.name))
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            parser.add_argument(flag, type=kind, required=required, default=None if required else f.default,
                                help=HELP.get(f.name))
    values = dict(vars(parser.parse_args(argv)))
    if values.get("from_scratch"):
        values["train_spatial"] = True
    return TrainConfig(**values)


def _message(error: BaseException) -> str:
    """The error's own message; one raised in a DataLoader worker arrives wrapped with the worker's traceback
    text, whose last line is the original "DataError: ..." line."""
    text = str(error).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return text


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
    from .training import distributed
    from .training.trainer import Trainer

    dist = distributed.setup(cfg.device)
    if not dist.is_main:
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 speaks for the run
    try:
        trainer = Trainer(cfg, dist)
        loss = trainer.train()
        if dist.is_main:
            logging.info("done: step %d, last loss %.5f, checkpoints in %s", trainer.step, loss, cfg.out)
    except (ValueError, FileNotFoundError) as error:
        # bad options or data (DataError names the source): one line, not a traceback from deep inside
        print(f"error: {_message(error)}", file=sys.stderr)
        return 2
    finally:
        dist.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
