"""The demo model's trainer: the one training loop (loop.py) with the demo's narrow-twin set-up and its synthetic
clip stream. Phase image trains the narrow twin of the SD1.5-shaped demo UNet on single frames; phase video its
MicroCinema module on 8-frame clips. CLI and rationale: ``microcinema_core.demo_training``."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from .. import checkpoint, demo
from ..module import ModuleConfig
from . import batching, demo_text, loop, run_state, validation
from .distributed import DistContext
from .model_setup import DemoSetup
from .synthetic_stream import SyntheticClips

log = logging.getLogger("microcinema.demo_training")

FRAMES = 8
SIZE = 64
# re-exported for the benchmarks that probe the demo model
captions, encode_captions, alphas_cumprod = demo_text.captions, demo_text.encode_captions, demo_text.alphas_cumprod



def phase_files(phase: str) -> run_state.RunFiles:
    return run_state.RunFiles(state=f"{phase}_state.json", optimizer=f"{phase}_optimizer.safetensors",
                              log=f"{phase}_loss.jsonl")


class DemoTrainer(loop.LoopOwner):
    def __init__(self, out: Path, phase: str, lr: float, batch: int, noise_prior_lambda: float,
                 appearnet: bool, seed: int, base: Path | None, text_sign: int = demo.TEXT_SIGN,
                 workers: int = 0, dist: DistContext | None = None, ema_decay: float = 0.0, val_every: int = 0,
                 val_count: int = 8, val_steps: int = 8, val_cfg: float = 5.0, val_weights: str = "both"):
        self.out, self.phase = Path(out), phase
        self.setup = DemoSetup(phase, self.out, base, ModuleConfig(appearnet=appearnet, motion_text_sign=text_sign),
                               seed)
        stream = SyntheticClips(FRAMES, SIZE, seed, keyframe="mixed", text_dropout=0.1,
                                frames_per_sample=None if phase == "video" else 1)
        cfg = loop.LoopConfig(out=str(out), batch_size=batch, lr=lr, weight_decay=1e-2, warmup_steps=100,
                              noise_prior_lambda=noise_prior_lambda, loss_weighting="snr20", mixed_precision="no",
                              gradient_checkpointing="no", log_every=25, seed=seed, workers=workers,
                              ema_decay=ema_decay, tensorboard="no")
        self.loop = loop.TrainLoop(cfg, self.setup, stream, dist or DistContext(), phase_files(phase),
                                   collate=batching.collate, metadata={"phase": phase})
        if val_every > 0 and phase == "video" and self.loop.dist.is_main:
            # the demo test's sampling settings (tests/test_demo_model.py): 8 euler steps, cfg 5, gamma 0.02
            self.loop.validator = validation.Validator(validation.ValidationConfig(
                every=val_every, source=f"synthetic:{val_count}", count=val_count, frames=FRAMES, width=SIZE,
                height=SIZE, sampling_steps=val_steps, cfg=val_cfg, gamma=0.02, seed=seed, weights=val_weights),
                self.out)

    @property
    def weights_path(self) -> Path:
        return self.out / self.setup.weights_name

    def train(self, steps: int, save_every: int = 200, warmup: int = 100) -> float:
        self.loop.cfg.steps, self.loop.cfg.save_every, self.loop.cfg.warmup_steps = steps, save_every, warmup
        return self.loop.train()


def publish(out: Path, weights_dir: Path | None = None) -> None:
    """fp16 copies of a run's weights where ``demo.py`` builds the demo files from (the repository's by default)."""
    weights_dir = weights_dir or demo.WEIGHTS_DIR
    weights_dir.mkdir(parents=True, exist_ok=True)
    for source, target in (("unet.safetensors", demo.NARROW_UNET.name), ("module.safetensors", demo.NARROW_MODULE.name)):
        sd, meta = checkpoint.read_safetensors(str(out / source))
        checkpoint.write_safetensors_atomic({k: v.half() for k, v in sd.items()}, str(weights_dir / target), meta)
    log.info("published %s's weights to %s", out, weights_dir)


def weighted_mse(pred: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """The demo's loss (losses.py, snr20) on SD's schedule, for the benchmarks that probe the demo model."""
    from . import losses

    return losses.diffusion_loss(pred, eps, abar, "snr20", demo_text.alphas_cumprod())
