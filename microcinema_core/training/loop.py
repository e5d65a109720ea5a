"""The one MicroCinema training loop (python -m microcinema_core.train and the demo trainer both run it).

Per optimisation step, every rank takes its micro-batches of sample ordinals (seeding.ordinals_for), gets their
frames (or cached latents) from a torch DataLoader, and for each sample n:
  z_0: VAE latents of its T frames [T, 4, h, w] (model space); z_c: the latent of its keyframe frame;
  eps = eps_n + lambda * repeat_T(z_c) (Appearance Noise Prior), eps_n and the timestep drawn from (seed, n);
  z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps; the video UNet (AppearNet fed z_c, the keyframe mask and each
  frame's offset) predicts eps (v for v-prediction bases); loss: losses.diffusion_loss.
Gradients are averaged over ranks by DistributedDataParallel; only rank 0 logs, keeps the EMA of the weights,
validates and writes checkpoints, and every rank waits for it. Since all randomness of a sample comes from (seed, n) and the resume state stores the next
ordinal, a run resumes exactly, on any number of ranks.

What is trained and how frames and text become tensors is the model set-up's business (ModelSetup below): the
SD1.x/SD2.x base with a MicroCinema module (model_setup.StableDiffusionSetup) or the demo's narrow twin
(model_setup.DemoSetup), which may also train the spatial UNet alone (image phase, one frame per sample).
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Protocol

import torch
from einops import rearrange, repeat
from torch import nn

from .. import noise_prior
from ..conditioning import appearance_hint
from . import batching, losses, optim, run_state, schedule, seeding
from .distributed import DistContext
from .ema import EMA, ema_decay
from .run_log import RunLog

log = logging.getLogger("microcinema.train")


class ModelSetup(Protocol):
    net: nn.Module              # net(z_t, timesteps, context, **video inputs) -> prediction
    trainable: nn.Module        # whose trainable parameters the optimiser updates
    video: bool                 # False: a spatial UNet trained on single frames (no hint, no noise prior)
    alphas_cumprod: torch.Tensor
    v_prediction: bool

    def latents(self, frames: torch.Tensor) -> torch.Tensor: ...       # uint8 [B, T, H, W, 3] -> [B*T, 4, h, w]
    def contexts(self, captions: list[str]) -> torch.Tensor: ...       # -> [B, L, D]
    def write_weights(self, stage: run_state.Stager, metadata: dict) -> None: ...
    def load_weights(self, folder: Path) -> None: ...
    def write_ema(self, stage: run_state.Stager, metadata: dict, averaged: nn.Module) -> None: ...
    def read_ema(self, folder: Path) -> Optional[dict]: ...        # keyed like trainable.state_dict()
    def sampling_model(self, weights: nn.Module): ...              # -> (MODEL, CLIP, VAE) for validation


@dataclass
class LoopConfig:
    out: str
    steps: int = 1000
    batch_size: int = 1                 # clips per rank per micro-batch
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 0
    lr_schedule: str = "constant"       # constant | cosine (after the warm-up, down to min_lr_ratio x lr)
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0
    ema_decay: float = 0.0              # 0: no EMA; else e.g. 0.999 (module_ema.safetensors next to the module)
    ema_warmup: int = 10                # EMA decay warm-up: min(decay, (1 + n) / (ema_warmup + n))
    keep_last: int = 0                  # numbered copies of the last K checkpoints under checkpoints/ (0: none)
    tensorboard: str = "auto"           # auto (when installed) | yes | no
    noise_prior_lambda: float = 0.03
    loss_weighting: str = "mse"         # mse (the paper) | snr20 (the demo: losses.py)
    mixed_precision: str = "auto"       # auto (bf16 on CUDA) | no | fp16 | bf16
    gradient_checkpointing: str = "auto"  # auto (on for CUDA) | yes | no
    optimizer: str = "adamw"            # adamw (fused on CUDA) | adamw8bit (bitsandbytes, where installed)
    save_every: int = 250
    log_every: int = 10
    seed: int = 0
    workers: int = 2                    # DataLoader worker processes per rank
    prefetch: int = 2                   # batches each worker prepares ahead


class StepBatches(torch.utils.data.Sampler):
    """The DataLoader's batch sampler: this rank's micro-batches of ordinals from ``first`` (the next step's
    first ordinal) to the end of the run, in training order."""

    def __init__(self, first: int, steps_left: int, rank: int, world: int, batch: int, grad_accum: int):
        self.first, self.steps_left = first, steps_left
        self.rank, self.world, self.batch, self.grad_accum = rank, world, batch, grad_accum

    def __len__(self) -> int:
        return self.steps_left * self.grad_accum

    def __iter__(self) -> Iterator[list[int]]:
        per_step = self.world * self.batch * self.grad_accum
        for step in range(self.steps_left):
            for micro in range(self.grad_accum):
                yield seeding.ordinals_for(self.first + step * per_step, micro, self.rank, self.world, self.batch)


def worker_context():
    """Workers are forked: the dataset classes live in the pack as ComfyUI loaded it, under a module name a
    spawned interpreter could not import (and Python 3.14 no longer forks by default). The workers never touch
    CUDA, so forking after CUDA is initialised is safe."""
    import multiprocessing

    return multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None


def autocast_dtype(choice: str, device: torch.device) -> Optional[torch.dtype]:
    if choice == "auto":
        choice = "bf16" if device.type == "cuda" else "no"
    options = {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}
    if choice not in options:
        raise ValueError(f"--mixed-precision {choice!r}: expected auto, no, fp16 or bf16")
    return options[choice]


class TrainLoop:
    def __init__(self, cfg: LoopConfig, setup: ModelSetup, dataset: torch.utils.data.Dataset,
                 dist: DistContext, files: run_state.RunFiles = run_state.RunFiles(),
                 collate: Optional[Callable] = None, metadata: Optional[dict] = None):
        self.cfg, self.setup, self.dataset, self.dist, self.files = cfg, setup, dataset, dist, files
        self.collate = collate or batching.collate
        self.metadata = dict(metadata or {})
        self.out = Path(cfg.out)
        if dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        dist.barrier()
        self.device = dist.device
        self.autocast = autocast_dtype(cfg.mixed_precision, self.device)
        if hasattr(setup.net, "gradient_checkpointing"):
            setup.net.gradient_checkpointing = (cfg.gradient_checkpointing == "yes" or (
                cfg.gradient_checkpointing == "auto" and self.device.type == "cuda"))
        self.params = [p for p in setup.trainable.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("nothing to train: every parameter of the model set-up is frozen")
        self.optimizer = optim.build(setup.trainable, cfg.optimizer, cfg.lr, cfg.weight_decay, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.autocast == torch.float16 and self.device.type == "cuda")
        self.all_abar = setup.alphas_cumprod.float().cpu()
        # rank 0 alone keeps the average: the others would hold identical copies for nothing
        self.ema = EMA(setup.trainable, cfg.ema_decay, cfg.ema_warmup) if cfg.ema_decay > 0 and dist.is_main else None
        self.validator = None  # set by the caller: validation.Validator
        self.step = 0
        self.next_ordinal = 0  # the first sample ordinal of the next step
        self.skipped = 0
        self._resume()
        self.wrapped = dist.wrap(setup.net)

    @property
    def samples_per_step(self) -> int:
        return self.dist.world * self.cfg.batch_size * self.cfg.grad_accum

    # -- one micro-batch -----------------------------------------------------------------------------------
    def loss(self, batch: dict) -> torch.Tensor:
        cfg, setup, dev = self.cfg, self.setup, self.device
        ordinals = [int(n) for n in batch["ordinal"]]
        b = len(ordinals)
        if "latents" in batch:  # from the latent cache: no VAE work
            z0 = rearrange(batch["latents"], "b t c h w -> (b t) c h w").to(dev, torch.float32)
        else:
            z0 = setup.latents(batch["frames"]).to(dev, torch.float32)
        t = z0.shape[0] // b
        context = batch["context"] if "context" in batch else setup.contexts(list(batch["caption"]))
        context = repeat(context.to(dev, torch.float32), "b l d -> (b t) l d", t=t)

        shape = (t, *z0.shape[1:])
        eps = torch.cat([torch.randn(shape, generator=seeding.torch_generator(cfg.seed, n, "noise"))
                         for n in ordinals]).to(dev)
        steps = len(self.all_abar)
        timesteps = torch.tensor([int(torch.randint(0, steps, (1,), generator=seeding.torch_generator(
            cfg.seed, n, "timestep"))) for n in ordinals]).repeat_interleave(t)
        abar = self.all_abar[timesteps].to(dev)
        inputs = {}
        if setup.video:
            key_index = [int(k) for k in batch["key_index"]]
            keys = rearrange(z0, "(b t) c h w -> b t c h w", b=b)[torch.arange(b), torch.tensor(key_index)]
            eps = noise_prior.training_noise(eps, keys, cfg.noise_prior_lambda)
            inputs = {"mc_num_frames": t,
                      "mc_hint": torch.cat([appearance_hint(keys[i:i + 1], t, key_index[i]) for i in range(b)]),
                      "mc_strength": torch.ones(b * t, device=dev)}
        zt = noise_prior.noisy_latent(z0, eps, abar)
        target = eps
        if setup.v_prediction:
            a = abar.reshape(-1, 1, 1, 1)
            target = a.sqrt() * eps - (1 - a).sqrt() * z0
        with torch.autocast(dev.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None):
            pred = self.wrapped(zt, timesteps.float().to(dev), context, **inputs)
        return losses.diffusion_loss(pred, target, abar, cfg.loss_weighting, self.all_abar)

    # -- the run -------------------------------------------------------------------------------------------
    def loader(self) -> torch.utils.data.DataLoader:
        cfg, dist = self.cfg, self.dist
        batches = StepBatches(self.next_ordinal, cfg.steps - self.step, dist.rank, dist.world, cfg.batch_size,
                              cfg.grad_accum)
        workers = max(0, cfg.workers)
        return torch.utils.data.DataLoader(
            self.dataset, batch_sampler=batches, num_workers=workers, collate_fn=self.collate,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
            prefetch_factor=cfg.prefetch if workers else None,
            multiprocessing_context=worker_context() if workers else None)

    def set_lr(self) -> float:
        cfg = self.cfg
        scale = schedule.lr_factor(self.step, cfg.warmup_steps, cfg.steps, cfg.lr_schedule, cfg.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * scale
        return self.optimizer.param_groups[0]["lr"]

    def train(self, on_step: Optional[Callable[["TrainLoop"], None]] = None) -> float:
        cfg, dist = self.cfg, self.dist
        self.setup.net.train()
        last = math.nan
        if self.step >= cfg.steps:
            return last
        log_file = RunLog(self.out / self.files.log, cfg.tensorboard) if dist.is_main else None
        batches = iter(self.loader())
        window = {"loss": [], "wait": 0.0, "time": 0.0}
        try:
            while self.step < cfg.steps:
                started = time.perf_counter()
                lr = self.set_lr()
                self.optimizer.zero_grad(set_to_none=True)
                total = torch.zeros((), device=self.device)
                wait = 0.0
                for micro in range(cfg.grad_accum):
                    fetch = time.perf_counter()
                    batch = next(batches)
                    wait += time.perf_counter() - fetch
                    self._count_skips(batch)
                    with dist.no_sync(self.wrapped, sync=micro == cfg.grad_accum - 1):
                        loss = self.loss(batch) / cfg.grad_accum
                        self.scaler.scale(loss).backward()
                    total += loss.detach()
                self.scaler.unscale_(self.optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.step += 1
                self.next_ordinal += self.samples_per_step
                if self.ema is not None:
                    self.ema.update(self.setup.trainable)
                last = dist.mean(total)
                window["loss"].append(last)
                window["wait"] += wait
                window["time"] += time.perf_counter() - started
                if log_file is not None and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                    self._log(log_file, window, lr, float(grad_norm))
                    window = {"loss": [], "wait": 0.0, "time": 0.0}
                if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                    self.save()
                if self.validator is not None and self.validator.due(self.step, cfg.steps):
                    self.validate()
                if on_step is not None:
                    on_step(self)
        finally:
            if log_file is not None:
                log_file.close()
            del batches  # shuts the workers down
        return last

    def _count_skips(self, batch: dict) -> None:
        for names in batch.get("skipped", ()):
            for name in names:
                self.skipped += 1
                log.warning("skipped training clip %s", name)

    def validate(self) -> None:
        """Rank 0 samples the validation set (with the EMA weights when there are some); the others wait."""
        if self.dist.is_main:
            weights = {"raw": self.setup.trainable}
            if self.ema is not None:
                weights["ema"] = self.ema.module
            self.validator.run(self, weights)
            self.setup.net.train()
        self.dist.barrier()

    def _log(self, log_file, window: dict, lr: float, grad_norm: float) -> None:
        n = max(1, len(window["loss"]))
        seconds = window["time"] / n
        entry = {"step": self.step, "loss": sum(window["loss"]) / n, "lr": lr, "grad_norm": grad_norm,
                 "seconds_per_step": seconds, "data_wait": window["wait"] / n,
                 "clips_per_second": self.samples_per_step / seconds if seconds > 0 else None,
                 "skipped_clips": self.skipped}
        if self.ema is not None:
            entry["ema_decay"] = ema_decay(self.ema.decay, self.ema.warmup, self.ema.updates)
        log_file.write(entry)
        log.info("step %d loss %.5f lr %.2e grad norm %.3f %.2f s/step (data wait %.3f s)", self.step,
                 entry["loss"], lr, grad_norm, seconds, entry["data_wait"])

    # -- checkpoints -----------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"step": self.step, "next_ordinal": self.next_ordinal, "seed": self.cfg.seed,
                "ema_updates": self.ema.updates if self.ema is not None else 0,
                "world_size": self.dist.world, "samples_per_step": self.samples_per_step,
                "config": {k: v for k, v in vars(self.cfg).items()}, **self.metadata}

    def save(self) -> None:
        if self.dist.is_main:
            meta = {"step": str(self.step), "noise_prior_lambda": str(self.cfg.noise_prior_lambda)}

            def weights(stage: run_state.Stager) -> None:
                self.setup.write_weights(stage, meta)
                if self.ema is not None:
                    self.setup.write_ema(stage, meta, self.ema.module)

            written = run_state.save(self.out, self.files, weights, self.optimizer, self.state())
            if self.cfg.keep_last > 0:
                self._keep_numbered(written)
            log.info("saved step %d to %s", self.step, self.out)
        self.dist.barrier()

    def _keep_numbered(self, written: list[Path]) -> None:
        """checkpoints/step-0000250/ gets the weight files of this save (hard links where the file system has
        them: no copy); only the last ``keep_last`` such folders stay."""
        root = self.out / "checkpoints"
        folder = root / f"step-{self.step:07d}"
        staging = root / f".{folder.name}.staged-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for path in written:
            try:
                os.link(path, staging / path.name)
            except OSError:
                shutil.copy2(path, staging / path.name)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
        numbered = sorted(p for p in root.iterdir() if p.name.startswith("step-"))
        for old in numbered[:-self.cfg.keep_last]:
            shutil.rmtree(old, ignore_errors=True)

    def _resume(self) -> None:
        state = run_state.read_state(self.out, self.files)
        if state is None:
            return
        if int(state.get("seed", self.cfg.seed)) != self.cfg.seed:
            log.warning("resuming a run started with seed %s under seed %d: later samples follow the new seed",
                        state.get("seed"), self.cfg.seed)
        self.setup.load_weights(self.out)
        run_state.restore_optimizer(self.out, self.files, self.optimizer)
        if self.ema is not None:
            averaged = self.setup.read_ema(self.out)
            if averaged is not None:
                self.ema.load(averaged, int(state.get("ema_updates", 0)))
            else:
                log.warning("%s has no EMA weights: the average starts from the resumed weights", self.out)
        self.step = int(state["step"])
        self.next_ordinal = int(state.get("next_ordinal", self.step * self.samples_per_step))
        if state.get("samples_per_step") not in (None, self.samples_per_step):
            log.info("resuming with %d samples per step (the run had %s): ordinals continue from %d",
                     self.samples_per_step, state["samples_per_step"], self.next_ordinal)
        if self.dist.is_main:
            log.info("resumed from step %d in %s", self.step, self.out)


class LoopOwner:
    """What the trainers built on the loop expose: its step, trained parts, optimiser, EMA and save."""
    loop: TrainLoop
    setup: ModelSetup

    @property
    def step(self) -> int:
        return self.loop.step

    @property
    def unet(self):
        return self.setup.unet

    @property
    def module(self):
        return self.setup.module

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.loop.optimizer

    @property
    def ema(self) -> Optional[EMA]:
        return self.loop.ema

    def save(self) -> None:
        self.loop.save()
