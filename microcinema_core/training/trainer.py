"""The MicroCinema training loop (method.md section 6).

Per step: a batch of clips -> VAE latents z_0 [B*T, 4, h, w] (model space), keyframe z_c = centre frame;
eps = eps_n + lambda * repeat_T(z_c) (Appearance Noise Prior); one timestep per clip;
z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps; the video UNet (AppearNet fed z_c + keyframe mask) predicts the
whole eps (or v = sqrt(abar) eps - sqrt(1 - abar) z_0 for v-prediction bases); MSE. Text is dropped to "" with
probability ``text_dropout`` for classifier-free guidance.

By default only the MicroCinema module (temporal layers, injection, AppearNet) trains; ``train_spatial`` also
trains the SD UNet (and ``from_scratch`` re-initialises it first). Checkpoints are written atomically and a run
resumes from the last one, optimizer and RNG state included (all in safetensors + JSON; nothing unpickled).
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .. import checkpoint, noise_prior
from ..conditioning import appearance_hint
from ..module import ModuleConfig, build_module, initialise_new_weights
from ..patching import MODULE_OPERATIONS
from ..video_unet import VideoUNet
from . import optim
from .data import VideoFolderDataset

log = logging.getLogger("microcinema.train")

STATE_FILE = "trainer_state.json"


@dataclass
class TrainConfig:
    base: str                         # SD1.x/SD2.x checkpoint (.safetensors) with UNet, CLIP and VAE
    data: str                         # folder of captioned videos (see data.py)
    out: str                          # run folder: checkpoints, loss log, state
    frames: int = 16
    stride: int = 1
    size: int = 256
    batch_size: int = 1
    grad_accum: int = 1
    steps: int = 1000
    lr: float = 1e-4
    weight_decay: float = 1e-2
    noise_prior_lambda: float = 0.03
    text_dropout: float = 0.1
    train_spatial: bool = False
    from_scratch: bool = False
    appearnet: bool = True
    motion_text_sign: int = 2         # k text-read signs of the frame offset into AppearNet (0: the paper's design)
    keyframe: str = "center"          # center | random (random positions teach the mask channel)
    mixed_precision: str = "auto"     # auto (bf16 on CUDA) | no | fp16 | bf16
    gradient_checkpointing: str = "auto"  # auto (on for CUDA) | yes | no
    save_every: int = 250
    log_every: int = 10
    seed: int = 0
    module_init: Optional[str] = None  # start from an existing module/full checkpoint
    device: str = "auto"
    extra: dict = field(default_factory=dict)


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device != "auto":
        return torch.device(cfg.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _autocast_dtype(cfg: TrainConfig, device: torch.device) -> Optional[torch.dtype]:
    choice = cfg.mixed_precision
    if choice == "auto":
        choice = "bf16" if device.type == "cuda" else "no"
    return {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}[choice]


def load_base(path: str):
    """(ModelPatcher, CLIP, VAE) through ComfyUI's own checkpoint loader, weights in fp32 for training."""
    import comfy.sd

    if not path.lower().endswith((".safetensors", ".sft")):
        raise ValueError(f"{path}: the base checkpoint must be .safetensors")
    model, clip, vae, *_ = comfy.sd.load_checkpoint_guess_config(
        path, output_vae=True, output_clip=True, model_options={"dtype": torch.float32})
    if model is None or clip is None or vae is None:
        raise ValueError(f"{path}: needs a UNet, a text encoder and a VAE (an SD1.x/SD2.x checkpoint)")
    return model, clip, vae


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = _device(cfg)
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        from ..patching import check_base

        self.model, self.clip, self.vae = load_base(cfg.base)
        self.unet = check_base(self.model)
        self.latent_format = self.model.model.latent_format
        self.v_prediction = "V_PREDICTION" in str(self.model.model.model_type)
        sigmas = self.model.get_model_object("model_sampling").sigmas.double()
        self.alphas_cumprod = (1.0 / (1.0 + sigmas ** 2)).float()

        if cfg.from_scratch:
            initialise_new_weights(self.unet)
        module_cfg = ModuleConfig(appearnet=cfg.appearnet, motion_text_sign=cfg.motion_text_sign)
        if cfg.module_init:
            sd, meta = checkpoint.read_safetensors(cfg.module_init)
            if checkpoint.checkpoint_kind(sd) == "full":
                sd = checkpoint.split_full(sd)[1]
            self.module = checkpoint.module_from_state_dict(self.unet, sd, MODULE_OPERATIONS, meta,
                                                            dtype=torch.float32, source=cfg.module_init)
        else:
            self.module = build_module(self.unet, module_cfg, MODULE_OPERATIONS, dtype=torch.float32)
        self.net = VideoUNet(self.unet, self.module).to(self.device)
        self.net.gradient_checkpointing = (cfg.gradient_checkpointing == "yes" or
                                           (cfg.gradient_checkpointing == "auto" and self.device.type == "cuda"))
        for p in self.unet.parameters():
            p.requires_grad_(cfg.train_spatial)
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = optim.adamw(self.net, cfg.lr, cfg.weight_decay)
        self.autocast = _autocast_dtype(cfg, self.device)
        self.scaler = torch.amp.GradScaler(enabled=self.autocast == torch.float16 and self.device.type == "cuda")
        self.data = VideoFolderDataset(Path(cfg.data), cfg.frames, cfg.stride, cfg.size, cfg.seed)
        self.step = 0
        self._text_cache: dict[str, torch.Tensor] = {}
        self._resume()

    # -- inputs ------------------------------------------------------------------------------------------
    def encode_text(self, text: str) -> torch.Tensor:
        if text not in self._text_cache:
            with torch.no_grad():
                cond = self.clip.encode_from_tokens(self.clip.tokenize(text))
            self._text_cache[text] = cond.float().cpu()
        return self._text_cache[text]

    def batch(self):
        """z_0 [B*T, 4, h, w] (model space), keyframes [B, 4, h, w], key indices [B], contexts [B*T, L, D]."""
        latents, keys, key_indices, contexts = [], [], [], []
        for _ in range(self.cfg.batch_size):
            frames, caption = self.data.clip(random.randrange(len(self.data)))
            with torch.no_grad():
                z = self.latent_format.process_in(self.vae.encode(frames).float().cpu())
            t = frames.shape[0]
            k = t // 2 if self.cfg.keyframe == "center" else random.randrange(t)
            if random.random() < self.cfg.text_dropout:
                caption = ""
            latents.append(z)
            keys.append(z[k:k + 1])
            key_indices.append(k)
            contexts.append(self.encode_text(caption).expand(t, -1, -1))
        return torch.cat(latents), torch.cat(keys), key_indices, torch.cat(contexts)

    # -- one optimisation step ---------------------------------------------------------------------------
    def loss(self) -> torch.Tensor:
        cfg = self.cfg
        z0, keys, key_indices, context = self.batch()
        b, t = keys.shape[0], cfg.frames
        eps = noise_prior.training_noise(torch.randn_like(z0), keys, cfg.noise_prior_lambda)
        timesteps = torch.randint(0, len(self.alphas_cumprod), (b,))
        timesteps = timesteps.repeat_interleave(t)
        abar = self.alphas_cumprod[timesteps]
        zt = noise_prior.noisy_latent(z0, eps, abar)
        hint = torch.cat([appearance_hint(keys[i:i + 1], t, key_indices[i]) for i in range(b)])
        target = eps
        if self.v_prediction:
            a = abar.reshape(-1, 1, 1, 1)
            target = a.sqrt() * eps - (1 - a).sqrt() * z0
        dev = self.device
        with torch.autocast(dev.type, dtype=self.autocast, enabled=self.autocast is not None):
            pred = self.net(zt.to(dev), timesteps.float().to(dev), context.to(dev), mc_num_frames=t,
                            mc_hint=hint.to(dev), mc_strength=torch.ones(b * t, device=dev))
        return nn.functional.mse_loss(pred.float(), target.to(dev))

    def train(self, on_step=None) -> float:
        cfg = self.cfg
        self.net.train()
        loss_log = open(self.out / "loss.jsonl", "a")
        last = math.nan
        try:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc="MicroCinema training", unit="step")
            while self.step < cfg.steps:
                t0 = time.time()
                self.optimizer.zero_grad(set_to_none=True)
                total = 0.0
                for _ in range(cfg.grad_accum):
                    loss = self.loss() / cfg.grad_accum
                    self.scaler.scale(loss).backward()
                    total += loss.item()
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.params, 1.0)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.step += 1
                last = total
                bar.update(1)
                bar.set_postfix(loss=f"{total:.4f}")
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    loss_log.write(json.dumps({"step": self.step, "loss": total, "seconds": time.time() - t0}) + "\n")
                    loss_log.flush()
                if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                    self.save()
                if on_step is not None:
                    on_step(self)
            bar.close()
        finally:
            loss_log.close()
        return last

    # -- checkpoints ---------------------------------------------------------------------------------------
    def save(self) -> Path:
        """module.safetensors (for 'MicroCinema Apply Module'), full.safetensors when the spatial UNet trains,
        optimizer.safetensors and trainer_state.json; each written atomically, the state last."""
        meta = {"step": str(self.step), "noise_prior_lambda": str(self.cfg.noise_prior_lambda)}
        # Every file of the checkpoint is staged first and only renamed into place once all of them are written: a
        # failure half-way (disk full, killed) leaves the previous checkpoint complete, never a mix of two steps.
        staged: list[tuple[Path, Path]] = []

        def stage(name: str) -> str:
            staged.append((self.out / f".{name}.staged-{os.getpid()}", self.out / name))
            return str(staged[-1][0])

        try:
            checkpoint.save_module(self.module, stage("module.safetensors"), extra_metadata=meta)
            if self.cfg.train_spatial:
                sd = {"model.diffusion_model." + k: v.detach().cpu() for k, v in self.unet.state_dict().items()}
                sd.update(_prefixed(self.clip.get_sd(), "cond_stage_model.", self.clip))
                sd.update({"first_stage_model." + k: v for k, v in self.vae.get_sd().items()})
                checkpoint.save_full(self.module, sd, stage("full.safetensors"), extra_metadata=meta)
            tensors, groups = _flatten_optimizer(self.optimizer)
            tensors["rng.torch"] = torch.get_rng_state()
            checkpoint.write_safetensors_atomic(tensors, stage("optimizer.safetensors"),
                                                {"param_groups": json.dumps(groups)})
            if self.cfg.train_spatial:
                checkpoint.write_safetensors_atomic(
                    {k: v.detach().cpu().contiguous() for k, v in self.unet.state_dict().items()},
                    stage("spatial.safetensors"), {})
        except BaseException:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            raise
        for tmp, final in staged:
            os.replace(tmp, final)
        state = {"step": self.step, "config": asdict(self.cfg), "python_random": repr(random.getstate())}
        tmp = self.out / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.out / STATE_FILE)
        log.info("saved step %d to %s", self.step, self.out)
        return self.out / "module.safetensors"

    def _resume(self) -> None:
        state_path = self.out / STATE_FILE
        if not state_path.is_file():
            return
        state = json.loads(state_path.read_text())
        sd, _ = checkpoint.read_safetensors(str(self.out / "module.safetensors"))
        checkpoint.load_module_state(self.module, sd, "module.safetensors")
        if self.cfg.train_spatial and (self.out / "spatial.safetensors").is_file():
            spatial, _ = checkpoint.read_safetensors(str(self.out / "spatial.safetensors"))
            self.unet.load_state_dict(spatial)
        tensors, meta = checkpoint.read_safetensors(str(self.out / "optimizer.safetensors"))
        _restore_optimizer(self.optimizer, tensors, json.loads(meta["param_groups"]))
        torch.set_rng_state(tensors["rng.torch"])
        import ast

        random.setstate(ast.literal_eval(state["python_random"]))
        self.step = int(state["step"])
        log.info("resumed from step %d in %s", self.step, self.out)


def _prefixed(sd: dict, prefix: str, clip) -> dict:
    # ComfyUI's CLIP.get_sd() returns keys like "clip_l.transformer..."; SD1 files store "transformer..."
    out = {}
    for k, v in sd.items():
        key = k[len("clip_l."):] if k.startswith("clip_l.") else k
        out[prefix + key] = v
    return out


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict, list]:
    sd = optimizer.state_dict()
    tensors = {}
    for index, state in sd["state"].items():
        for name, value in state.items():
            tensors[f"state.{index}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, sd["param_groups"]


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, groups: list) -> None:
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})
