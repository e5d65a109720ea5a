"""The demo model's trainer: a narrow twin of the SD1.5-shaped demo UNet (phase image), then its MicroCinema module
(phase video), on synthetic clips rendered on the fly. CLI and rationale: ``microcinema_core.demo_training``."""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import torch

from .. import checkpoint, demo, demo_vae, narrow, noise_prior, tiny_models
from ..conditioning import appearance_hint
from ..module import ModuleConfig
from . import optim, synthetic

log = logging.getLogger("microcinema.demo_training")


FRAMES = 8
SIZE = 64


def captions() -> list[str]:
    return sorted({f"a {c} {s} moving {d}" for c in synthetic.COLOURS for s in synthetic.SHAPES
                   for d in synthetic.DIRECTIONS})


def encode_captions(texts: list[str]) -> dict[str, torch.Tensor]:
    """Text embeddings from the demo CLIP-L through ComfyUI's own text encoder (the one the workflows use)."""
    import comfy.sd

    sd = tiny_models.random_state_dict(tiny_models.clip_l_shapes(), demo.CLIP_SEED, "cond_stage_model.transformer.",
                                       torch.float16)
    sd.update(tiny_models.random_state_dict(tiny_models.unet_shapes(tiny_models.TINY_SD15_UNET), 0,
                                            "model.diffusion_model.", torch.float16))
    sd.update(demo_vae.taesd_state_dict())
    _, clip, *_ = comfy.sd.load_state_dict_guess_config(sd, output_vae=False, output_clip=True)
    out = {}
    with torch.no_grad():
        for text in texts + [""]:
            out[text] = clip.encode_from_tokens(clip.tokenize(text)).float().cpu()
    return out


def alphas_cumprod() -> torch.Tensor:
    import comfy.model_sampling

    sigmas = comfy.model_sampling.ModelSamplingDiscrete(model_config=None).sigmas.double()
    return (1.0 / (1.0 + sigmas ** 2)).float()


def render_clip(rng: random.Random, frames: int = FRAMES, size: int = SIZE) -> tuple[torch.Tensor, str]:
    spec = synthetic.random_spec(rng, frames)
    return torch.from_numpy(synthetic.render_clip(spec, frames, size)).float() / 255.0, spec.caption


def weighted_mse(pred: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """eps-MSE weighted by 1 + min(1/SNR, 20). An error e in eps is an error e * sqrt(1/SNR) in the clean-image
    estimate: at SD's highest timesteps (1/SNR ~ 200) a tiny eps error gives the wrong global colour, which a
    small model trained for minutes never fixes under the plain loss. The weight puts those steps first."""
    weight = 1.0 + ((1.0 - abar) / abar).clamp(max=20.0)
    per_sample = ((pred.float() - eps) ** 2).mean(dim=(1, 2, 3))
    return (weight.to(per_sample) * per_sample).mean() / weight.mean()


class DemoTrainer:
    def __init__(self, out: Path, phase: str, lr: float, batch: int, noise_prior_lambda: float,
                 appearnet: bool, seed: int, base: Path | None, text_sign: int = demo.TEXT_SIGN):
        self.out, self.phase, self.batch, self.lam = out, phase, batch, noise_prior_lambda
        out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed)
        self.rng = random.Random(seed)
        self.unet = narrow.build_narrow_unet(tiny_models.TINY_SD15_UNET, seed=seed)
        base = base or out / "unet.safetensors"
        if phase == "video":
            sd, _ = checkpoint.read_safetensors(str(base))
            self.unet.load_state_dict({k: v.float() for k, v in sd.items()})
            cfg = ModuleConfig(appearnet=appearnet, motion_text_sign=text_sign)
            self.module = narrow.build_narrow_module(self.unet, cfg)
            self.unet.requires_grad_(False)
            from ..video_unet import VideoUNet

            self.net = VideoUNet(self.unet, self.module)
            self.trainable = self.module
        else:
            self.module = None
            self.net = self.unet
            self.trainable = self.unet
        self.params = [p for p in self.trainable.parameters() if p.requires_grad]
        self.optimizer = optim.adamw(self.trainable, lr, weight_decay=1e-2)
        self.abar = alphas_cumprod()
        self.text = encode_captions(captions())
        self.step = 0
        self._resume()

    @property
    def weights_path(self) -> Path:
        return self.out / ("unet.safetensors" if self.phase == "image" else "module.safetensors")

    def _resume(self) -> None:
        state = self.out / f"{self.phase}_state.json"
        if state.is_file() and self.weights_path.is_file():
            sd, _ = checkpoint.read_safetensors(str(self.weights_path))
            self.trainable.load_state_dict({k: v.float() for k, v in sd.items()})
            info = json.loads(state.read_text())
            self.step = info["step"]
            self.rng = random.Random(info["seed_next"])
            log.info("resumed %s phase at step %d", self.phase, self.step)

    def save(self) -> None:
        if self.phase == "image":
            checkpoint.write_safetensors_atomic({k: v.detach().contiguous() for k, v in self.unet.state_dict().items()},
                                                str(self.weights_path), {"step": str(self.step)})
        else:
            checkpoint.save_module(self.module, str(self.weights_path),
                                   extra_metadata={"step": str(self.step), "noise_prior_lambda": str(self.lam)})
        (self.out / f"{self.phase}_state.json").write_text(
            json.dumps({"step": self.step, "seed_next": self.rng.randrange(2**31)}))

    def _context(self, caption: str) -> torch.Tensor:
        return self.text["" if self.rng.random() < 0.1 else caption]

    def loss(self) -> torch.Tensor:
        if self.phase == "image":
            frames, contexts = [], []
            for _ in range(self.batch):
                clip, caption = render_clip(self.rng)
                frames.append(clip[self.rng.randrange(FRAMES)])
                contexts.append(self._context(caption))
            z0 = demo_vae.model_space_latents(torch.stack(frames))
            context = torch.cat(contexts)
            eps = torch.randn_like(z0)
            t = torch.randint(0, len(self.abar), (z0.shape[0],))
            zt = noise_prior.noisy_latent(z0, eps, self.abar[t])
            return weighted_mse(self.net(zt, t.float(), context), eps, self.abar[t])
        clips, keys, hints, contexts = [], [], [], []
        for _ in range(self.batch):
            clip, caption = render_clip(self.rng)
            z = demo_vae.model_space_latents(clip)
            k = FRAMES // 2 if self.rng.random() < 0.5 else self.rng.randrange(FRAMES)
            clips.append(z)
            keys.append(z[k:k + 1])
            hints.append(appearance_hint(z[k:k + 1], FRAMES, k))
            contexts.append(self._context(caption).expand(FRAMES, -1, -1))
        z0, keyframes = torch.cat(clips), torch.cat(keys)
        eps = noise_prior.training_noise(torch.randn_like(z0), keyframes, self.lam)
        t = torch.randint(0, len(self.abar), (self.batch,)).repeat_interleave(FRAMES)
        zt = noise_prior.noisy_latent(z0, eps, self.abar[t])
        pred = self.net(zt, t.float(), torch.cat(contexts), mc_num_frames=FRAMES, mc_hint=torch.cat(hints),
                        mc_strength=torch.ones(z0.shape[0]))
        return weighted_mse(pred, eps, self.abar[t])

    def train(self, steps: int, save_every: int = 200, warmup: int = 100) -> None:
        log_file = open(self.out / f"{self.phase}_loss.jsonl", "a")
        recent: list[float] = []
        started = time.time()
        while self.step < steps:
            for group in self.optimizer.param_groups:
                group["lr"] = group["base_lr"] * min(1.0, (self.step + 1) / warmup)
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.optimizer.step()
            self.step += 1
            recent = (recent + [loss.item()])[-50:]
            if self.step % 25 == 0 or self.step == steps:
                mean = sum(recent) / len(recent)
                log_file.write(json.dumps({"step": self.step, "loss": mean, "elapsed": time.time() - started}) + "\n")
                log_file.flush()
                log.info("%s step %d loss %.4f (%.2f s/step)", self.phase, self.step, mean,
                         (time.time() - started) / max(1, len(recent)))
                started, recent = time.time(), []
            if self.step % save_every == 0 or self.step == steps:
                self.save()
        log_file.close()


def publish(out: Path, weights_dir: Path | None = None) -> None:
    """fp16 copies of a run's weights where ``demo.py`` builds the demo files from (the repository's by default)."""
    weights_dir = weights_dir or demo.WEIGHTS_DIR
    NARROW_UNET, NARROW_MODULE = weights_dir / demo.NARROW_UNET.name, weights_dir / demo.NARROW_MODULE.name
    NARROW_UNET.parent.mkdir(parents=True, exist_ok=True)
    sd, meta = checkpoint.read_safetensors(str(out / "unet.safetensors"))
    checkpoint.write_safetensors_atomic({k: v.half() for k, v in sd.items()}, str(NARROW_UNET), meta)
    sd, meta = checkpoint.read_safetensors(str(out / "module.safetensors"))
    checkpoint.write_safetensors_atomic({k: v.half() for k, v in sd.items()}, str(NARROW_MODULE), meta)
    log.info("published %s and %s", NARROW_UNET, NARROW_MODULE)


