"""What the training loop trains, and how a batch's frames and captions become its inputs.

StableDiffusionSetup: an SD1.x/SD2.x checkpoint loaded by ComfyUI's own loader (UNet, CLIP, VAE) plus a new or
existing MicroCinema module; the module trains (and the spatial UNet too with ``train_spatial``). On CUDA the
frozen parts (UNet when it does not train, VAE, CLIP) are stored in bf16: they take half the memory and run under
bf16 autocast anyway; the trained weights stay fp32.

DemoSetup: the demo model's narrow twin (narrow.py), phase "image" (the spatial UNet on single frames) or "video"
(its module, on the frozen phase-image UNet), with the demo's exact pooling VAE and its fixed CLIP-L.

Captions are encoded per batch on the training device: nothing keeps every caption's embedding for the run.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch
from einops import rearrange
from torch import nn

from .. import checkpoint
from ..module import ModuleConfig, build_module, initialise_new_weights
from ..video_unet import VideoUNet
from .run_state import Stager

log = logging.getLogger("microcinema.train")


def alphas_cumprod_of(model_sampling) -> torch.Tensor:
    """abar_t of a ComfyUI model_sampling object (its sigmas are sqrt((1 - abar) / abar))."""
    sigmas = model_sampling.sigmas.double()
    return (1.0 / (1.0 + sigmas ** 2)).float()


def load_base(path: str, dtype: torch.dtype = torch.float32):
    """(ModelPatcher, CLIP, VAE) through ComfyUI's own checkpoint loader."""
    import comfy.sd

    if not str(path).lower().endswith((".safetensors", ".sft")):
        raise ValueError(f"{path}: the base checkpoint must be .safetensors")
    if not Path(path).is_file():
        raise FileNotFoundError(f"--base {path}: no such file")
    model, clip, vae, *_ = comfy.sd.load_checkpoint_guess_config(
        str(path), output_vae=True, output_clip=True, model_options={"dtype": dtype})
    if model is None or clip is None or vae is None:
        raise ValueError(f"{path}: needs a UNet, a text encoder and a VAE (an SD1.x/SD2.x checkpoint)")
    return model, clip, vae


def frozen_dtype(choice: str, device: torch.device) -> torch.dtype:
    if choice == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[choice]


def frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [B, T, H, W, 3] -> float [B*T, H, W, 3] in [0, 1] (ComfyUI's IMAGE layout)."""
    return rearrange(frames, "b t h w c -> (b t) h w c").float().div_(255.0)


class FrozenEncoders:
    """The base checkpoint's VAE and text encoder as the training step uses them (also what the latent cache
    precomputes with, so that cached and live inputs are the same computation)."""

    def __init__(self, vae, clip, latent_format, device: torch.device):
        self.vae, self.clip, self.latent_format, self.device = vae, clip, latent_format, device

    def latents(self, frames: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            raw = self.vae.encode(frames_to_float(frames))
        return self.latent_format.process_in(raw.float()).to(self.device)

    def contexts(self, captions: list[str]) -> torch.Tensor:
        unique = {text: None for text in captions}
        with torch.no_grad():
            for text in unique:
                unique[text] = self.clip.encode_from_tokens(self.clip.tokenize(text)).float()
        return torch.cat([unique[text].to(self.device) for text in captions])

    @classmethod
    def from_checkpoint(cls, path: str, device: torch.device) -> "FrozenEncoders":
        model, clip, vae = load_base(path, frozen_dtype("auto", device))
        return cls(vae, clip, model.model.latent_format, device)


class StableDiffusionSetup:
    video = True

    def __init__(self, base: str, device: torch.device, *, module_config: ModuleConfig,
                 module_init: Optional[str] = None, train_spatial: bool = False, from_scratch: bool = False,
                 frozen: str = "auto", seed: int = 0):
        from ..patching import MODULE_OPERATIONS, check_base

        self.device, self.train_spatial = device, train_spatial or from_scratch
        self.frozen_dtype = frozen_dtype(frozen, device)
        unet_dtype = torch.float32 if self.train_spatial else self.frozen_dtype
        self.model, self.clip, self.vae = load_base(base, unet_dtype)
        self.unet = check_base(self.model)
        self.latent_format = self.model.model.latent_format
        self.v_prediction = "V_PREDICTION" in str(self.model.model.model_type)
        self.alphas_cumprod = alphas_cumprod_of(self.model.get_model_object("model_sampling"))
        torch.manual_seed(seed)  # the new module's initial weights
        if from_scratch:
            initialise_new_weights(self.unet)
        if module_init:
            sd, meta = checkpoint.read_safetensors(module_init)
            if checkpoint.checkpoint_kind(sd) == "full":
                sd = checkpoint.split_full(sd)[1]
            self.module = checkpoint.module_from_state_dict(self.unet, sd, MODULE_OPERATIONS, meta,
                                                            dtype=torch.float32, source=module_init)
        else:
            self.module = build_module(self.unet, module_config, MODULE_OPERATIONS, dtype=torch.float32)
        self.net = VideoUNet(self.unet, self.module).to(device)
        self.unet.requires_grad_(self.train_spatial)
        self.trainable = self.net if self.train_spatial else self.module
        self.encoders = FrozenEncoders(self.vae, self.clip, self.latent_format, device)

    def latents(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encoders.latents(frames)

    def contexts(self, captions: list[str]) -> torch.Tensor:
        return self.encoders.contexts(captions)

    def write_weights(self, stage: Stager, metadata: dict) -> None:
        checkpoint.save_module(self.module, stage("module.safetensors"), extra_metadata=metadata)
        if self.train_spatial:
            unet_sd = {k: v.detach().cpu() for k, v in self.unet.state_dict().items()}
            sd = {"model.diffusion_model." + k: v for k, v in unet_sd.items()}
            sd.update(_sd1_clip_keys(self.clip.get_sd(), "cond_stage_model."))
            sd.update({"first_stage_model." + k: v for k, v in self.vae.get_sd().items()})
            checkpoint.save_full(self.module, sd, stage("full.safetensors"), extra_metadata=metadata)
            checkpoint.write_safetensors_atomic({k: v.contiguous() for k, v in unet_sd.items()},
                                                stage("spatial.safetensors"), {})

    def load_weights(self, folder: Path) -> None:
        sd, _ = checkpoint.read_safetensors(str(folder / "module.safetensors"))
        checkpoint.load_module_state(self.module, sd, "module.safetensors")
        if self.train_spatial and (folder / "spatial.safetensors").is_file():
            spatial, _ = checkpoint.read_safetensors(str(folder / "spatial.safetensors"))
            self.unet.load_state_dict(spatial)

    def write_ema(self, stage: Stager, metadata: dict, averaged: nn.Module) -> None:
        """module_ema.safetensors (a module file like module.safetensors), and spatial_ema.safetensors when the
        spatial UNet trains too (``averaged`` is then an averaged copy of the whole VideoUNet)."""
        meta = {**metadata, "weights": "ema"}
        if not self.train_spatial:
            checkpoint.save_module(averaged, stage("module_ema.safetensors"), extra_metadata=meta)
            return
        checkpoint.save_module(averaged.microcinema, stage("module_ema.safetensors"), extra_metadata=meta)
        spatial = {k: v.detach().cpu().contiguous() for k, v in averaged.state_dict().items()
                   if not k.startswith("microcinema.")}
        checkpoint.write_safetensors_atomic(spatial, stage("spatial_ema.safetensors"), {"weights": "ema"})

    def sampling_model(self, weights: nn.Module):
        """(MODEL, CLIP, VAE) for sampling with ``weights`` (the trained module, or its averaged copy) through
        ComfyUI: a clone of the base MODEL whose diffusion model is the video UNet of those weights. Its load and
        offload devices are the training device, so ComfyUI's memory management never moves the UNet that
        training shares with it."""
        net = weights if isinstance(weights, VideoUNet) else VideoUNet(self.unet, weights)
        patched = self.model.clone()
        patched.add_object_patch("diffusion_model", net)
        patched.load_device = patched.offload_device = self.device
        return patched, self.clip, self.vae

    def read_ema(self, folder: Path) -> Optional[dict]:
        """The averaged weights saved by write_ema, keyed like ``trainable``'s state dict (None if absent)."""
        if not (folder / "module_ema.safetensors").is_file():
            return None
        module_sd, _ = checkpoint.read_safetensors(str(folder / "module_ema.safetensors"))
        if not self.train_spatial:
            return module_sd
        spatial, _ = checkpoint.read_safetensors(str(folder / "spatial_ema.safetensors"))
        return {**spatial, **{"microcinema." + k: v for k, v in module_sd.items()}}


def _sd1_clip_keys(sd: dict, prefix: str) -> dict:
    # ComfyUI's CLIP.get_sd() returns keys like "clip_l.transformer..."; SD1 files store "transformer..."
    return {prefix + (k[len("clip_l."):] if k.startswith("clip_l.") else k): v for k, v in sd.items()}


class DemoSetup:
    """The demo's narrow twin; ``phase`` image trains the spatial UNet, video its module on the frozen UNet."""

    def __init__(self, phase: str, folder: Path, base: Optional[Path], module_config: ModuleConfig, seed: int):
        from .. import narrow, tiny_models
        from . import demo_text

        self.phase, self.video, self.v_prediction = phase, phase == "video", False
        torch.manual_seed(seed)
        self.unet = narrow.build_narrow_unet(tiny_models.TINY_SD15_UNET, seed=seed)
        self.alphas_cumprod = demo_text.alphas_cumprod()
        self.text = demo_text.encode_captions(demo_text.captions())
        self.weights_name = "unet.safetensors" if phase == "image" else "module.safetensors"
        self.models_dir = Path(folder) / "demo_models"  # the widened demo files validation samples through
        if self.video:
            sd, _ = checkpoint.read_safetensors(str(base or folder / "unet.safetensors"))
            self.unet.load_state_dict({k: v.float() for k, v in sd.items()})
            self.unet.requires_grad_(False)
            self.module = narrow.build_narrow_module(self.unet, module_config)
            self.net: nn.Module = VideoUNet(self.unet, self.module)
            self.trainable: nn.Module = self.module
        else:
            self.module = None
            self.net = self.trainable = self.unet

    def latents(self, frames: torch.Tensor) -> torch.Tensor:
        from .. import demo_vae

        return demo_vae.model_space_latents(frames_to_float(frames))

    def contexts(self, captions: list[str]) -> torch.Tensor:
        try:
            return torch.cat([self.text[c] for c in captions])
        except KeyError as error:
            raise ValueError(f"the demo trains on its own captions only; got {error.args[0]!r}") from None

    def write_weights(self, stage: Stager, metadata: dict) -> None:
        if self.video:
            checkpoint.save_module(self.module, stage(self.weights_name), extra_metadata=metadata)
        else:
            checkpoint.write_safetensors_atomic({k: v.detach().contiguous() for k, v in self.unet.state_dict().items()},
                                                stage(self.weights_name), {"step": metadata["step"]})

    def load_weights(self, folder: Path) -> None:
        sd, _ = checkpoint.read_safetensors(str(folder / self.weights_name))
        self.trainable.load_state_dict({k: v.float() for k, v in sd.items()})

    def sampling_model(self, weights: nn.Module):
        """(MODEL, CLIP, VAE): the demo checkpoint as ComfyUI loads it, with the twin's video UNet patched in."""
        if not self.video:
            raise ValueError("the demo's image phase trains no video model to sample")
        from ..demo_sampler import DemoSampler

        if getattr(self, "_sampler", None) is None:
            self._sampler = DemoSampler(self.models_dir)
        return self._sampler.with_twin(self.unet, weights), self._sampler.clip, self._sampler.vae

    @property
    def ema_name(self) -> str:
        return self.weights_name.replace(".safetensors", "_ema.safetensors")

    def write_ema(self, stage: Stager, metadata: dict, averaged: nn.Module) -> None:
        meta = {**metadata, "weights": "ema"}
        if self.video:
            checkpoint.save_module(averaged, stage(self.ema_name), extra_metadata=meta)
        else:
            checkpoint.write_safetensors_atomic({k: v.detach().contiguous() for k, v in averaged.state_dict().items()},
                                                stage(self.ema_name), {"step": metadata["step"], "weights": "ema"})

    def read_ema(self, folder: Path) -> Optional[dict]:
        path = folder / self.ema_name
        return checkpoint.read_safetensors(str(path))[0] if path.is_file() else None
