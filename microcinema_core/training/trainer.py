"""``python -m microcinema_core.train``: a MicroCinema module on an SD1.x/SD2.x base, from real video data.

The one training loop (loop.py) with the Stable Diffusion set-up (model_setup.StableDiffusionSetup) and a data
source: a folder of captioned clips, a CSV/parquet manifest (WebVid's columns accepted), webdataset tar shards
(data.py), or a latent cache written by ``python -m microcinema_core.precompute`` (latent_cache.py). Launched with
``torchrun`` it trains data-parallel on every rank it is given.

By default only the MicroCinema module (temporal layers, injection, AppearNet) trains; ``train_spatial`` also
trains the SD UNet (and ``from_scratch`` re-initialises it first). A run resumes from its last checkpoint, optimiser
state included (safetensors + JSON; nothing unpickled).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

import torch

from ..module import ModuleConfig
from . import batching, data, distributed, loop, validation

log = logging.getLogger("microcinema.train")


@dataclass
class TrainConfig:
    base: str                         # SD1.x/SD2.x checkpoint (.safetensors) with UNet, CLIP and VAE
    data: str                         # folder, .csv/.parquet manifest, .tar shard(s), or a latent cache folder
    out: str                          # run folder: checkpoints, loss log, state
    video_root: Optional[str] = None  # where a manifest's relative paths (WebVid: page_dir/videoid.mp4) live
    frames: int = 16
    stride: int = 1
    fps: float = 0.0                  # > 0: sample frames at this rate instead of every stride-th frame
    window: str = "random"            # random: a window anywhere in the clip per sample; first: its first frames
    size: int = 256
    batch_size: int = 1               # clips per rank per micro-batch
    grad_accum: int = 1
    steps: int = 1000
    lr: float = 1e-4
    warmup_steps: int = 0
    lr_schedule: str = "constant"     # constant | cosine (after the warm-up, to min_lr_ratio x lr at the last step)
    min_lr_ratio: float = 0.0
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    ema_decay: float = 0.0            # 0: no EMA; e.g. 0.9999 for long runs (module_ema.safetensors)
    ema_warmup: int = 10
    noise_prior_lambda: float = 0.03
    text_dropout: float = 0.1
    train_spatial: bool = False
    from_scratch: bool = False
    appearnet: bool = True
    motion_text_sign: int = 2         # k text-read signs of the frame offset into AppearNet (0: the paper's design)
    keyframe: str = "center"          # center | random | mixed (random positions teach the mask channel)
    loss_weighting: str = "mse"       # mse (the paper) | snr20
    mixed_precision: str = "auto"     # auto (bf16 on CUDA) | no | fp16 | bf16
    frozen_dtype: str = "auto"        # auto (bf16 on CUDA) | fp32 | bf16 | fp16: storage of the frozen UNet
    gradient_checkpointing: str = "auto"  # auto (on for CUDA) | yes | no
    optimizer: str = "adamw"          # adamw (fused on CUDA) | adamw8bit (bitsandbytes)
    workers: int = 2                  # DataLoader worker processes per rank
    save_every: int = 250
    keep_last: int = 3                # numbered checkpoints kept under checkpoints/ (0: only the latest)
    log_every: int = 10
    tensorboard: str = "auto"         # auto (when installed) | yes | no
    val_every: int = 0                # validate every N steps (0: never)
    val_data: str = ""                # keyframe images + .txt prompts, synthetic:N, holdout, or a clip source
    val_holdout: int = 0              # clips of --data kept out of training (for --val-data holdout)
    val_count: int = 4
    val_frames: int = 0               # 0: --frames
    val_size: int = 0                 # 0: --size (square)
    val_steps: int = 20               # sampling steps
    val_cfg: float = 7.5
    val_gamma: float = 0.02
    val_weights: str = "ema"          # ema | raw | both
    seed: int = 0
    module_init: Optional[str] = None  # start from an existing module/full checkpoint
    device: str = "auto"
    extra: dict = field(default_factory=dict)


def build_dataset(cfg: TrainConfig) -> torch.utils.data.Dataset:
    from . import latent_cache

    if latent_cache.is_cache(cfg.data):
        return latent_cache.CachedLatents(cfg.data, keyframe=cfg.keyframe, text_dropout=cfg.text_dropout,
                                          seed=cfg.seed)
    return data.ClipDataset(cfg.data, frames=cfg.frames, size=cfg.size, stride=cfg.stride, fps=cfg.fps,
                            video_root=cfg.video_root, keyframe=cfg.keyframe, text_dropout=cfg.text_dropout,
                            window=cfg.window, seed=cfg.seed, holdout=cfg.val_holdout)


def check_precision(cfg: TrainConfig, device: torch.device) -> None:
    """A frozen UNet stored in 16 bits only runs under autocast (the module's fp32 activations meet its weights)."""
    from .model_setup import frozen_dtype

    stored = frozen_dtype(cfg.frozen_dtype, device)
    if stored != torch.float32 and not (cfg.train_spatial or cfg.from_scratch) and \
            loop.autocast_dtype(cfg.mixed_precision, device) is None:
        raise ValueError(f"--frozen-dtype {cfg.frozen_dtype} stores the frozen UNet in {stored} on {device}, which "
                         "needs --mixed-precision bf16 (or fp16); or use --frozen-dtype fp32")


class Trainer(loop.LoopOwner):
    def __init__(self, cfg: TrainConfig, dist: Optional[distributed.DistContext] = None):
        from .model_setup import StableDiffusionSetup

        self.cfg = cfg
        self.dist = dist or distributed.setup(cfg.device)
        check_precision(cfg, self.dist.device)
        self.dataset = build_dataset(cfg)
        self.setup = StableDiffusionSetup(
            cfg.base, self.dist.device, module_config=ModuleConfig(appearnet=cfg.appearnet,
                                                                    motion_text_sign=cfg.motion_text_sign),
            module_init=cfg.module_init, train_spatial=cfg.train_spatial, from_scratch=cfg.from_scratch,
            frozen=cfg.frozen_dtype, seed=cfg.seed)
        # the loop's settings carry the same names as the command line's: take each from the run's config
        loop_cfg = loop.LoopConfig(**{f.name: getattr(cfg, f.name) for f in fields(loop.LoopConfig)
                                      if hasattr(cfg, f.name)})
        self.loop = loop.TrainLoop(loop_cfg, self.setup, self.dataset, self.dist, collate=batching.collate,
                                   metadata={"train_config": asdict(cfg)})
        if cfg.val_every > 0 and self.dist.is_main:
            self.loop.validator = validation.Validator(validation.ValidationConfig(
                every=cfg.val_every, source=cfg.val_data or "holdout", count=cfg.val_count,
                frames=cfg.val_frames or cfg.frames, width=cfg.val_size or cfg.size, height=cfg.val_size or cfg.size,
                sampling_steps=cfg.val_steps, cfg=cfg.val_cfg, gamma=cfg.val_gamma, seed=cfg.seed,
                weights=cfg.val_weights), Path(cfg.out), self.dataset)
        elif cfg.val_every > 0:
            self.loop.validator = validation.Validator.on_other_rank(cfg.val_every)

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    def train(self, on_step=None) -> float:
        self.loop.cfg.steps = self.cfg.steps  # a caller may raise cfg.steps between runs
        return self.loop.train(on_step=None if on_step is None else (lambda _: on_step(self)))
