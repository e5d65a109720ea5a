"""From files to a MicroCinema MODEL: module files, full checkpoints and AnimateDiff motion modules."""
from __future__ import annotations

import logging
import os
from typing import Optional

import torch

from . import animatediff, checkpoint
from .module import MicroCinemaModule, ModuleConfig
from .patching import MODULE_OPERATIONS, apply_module, module_base, new_module

log = logging.getLogger(__name__)


def read_weights(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """safetensors, or a pickle-format file only if torch's weights_only loader accepts it (no code runs)."""
    if path.lower().endswith((".safetensors", ".sft")):
        return checkpoint.read_safetensors(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise checkpoint.MicroCinemaCheckpointError(
            f"{os.path.basename(path)} was refused: it is not safetensors and torch's safe (weights_only) loader "
            f"rejected it ({type(exc).__name__}); convert it to safetensors with a tool you trust") from exc
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise checkpoint.MicroCinemaCheckpointError(f"{os.path.basename(path)} holds no plain tensor dictionary")
    return data, {}


def module_for(model_patcher, path: Optional[str]) -> MicroCinemaModule:
    """The module stored in ``path`` (module or full checkpoint), shaped for this base model; a fresh one if None."""
    if path is None:
        return new_module(model_patcher, ModuleConfig())
    sd, metadata = read_weights(path)
    kind = checkpoint.checkpoint_kind(sd)
    name = os.path.basename(path)
    if kind == "full":
        sd = checkpoint.split_full(sd)[1]
    elif kind == "animatediff":
        raise checkpoint.MicroCinemaCheckpointError(
            f"{name} is an AnimateDiff motion module: choose it as 'motion_module' (from animatediff_models)")
    elif kind != "module":
        raise checkpoint.MicroCinemaCheckpointError(f"{name} is not a MicroCinema checkpoint (no MicroCinema keys)")
    unet = module_base(model_patcher)
    with torch.no_grad():
        return checkpoint.module_from_state_dict(unet, sd, MODULE_OPERATIONS, metadata,
                                                 dtype=model_patcher.model.get_dtype(),
                                                 device=model_patcher.offload_device, source=name)


def load_motion_module(module: MicroCinemaModule, path: str) -> None:
    """Overwrite the module's temporal transformers with an AnimateDiff motion module's."""
    name = os.path.basename(path)
    sd, _ = read_weights(path)
    if not animatediff.is_animatediff(sd):
        raise checkpoint.MicroCinemaCheckpointError(f"{name} is not an AnimateDiff motion module")
    if not module.config.motion_modules:
        raise checkpoint.MicroCinemaCheckpointError("this MicroCinema module has no temporal transformers to load into")
    try:
        converted, _has_mid = animatediff.convert_animatediff(sd, module.layout)
    except ValueError as exc:
        raise checkpoint.MicroCinemaCheckpointError(f"{name}: {exc}") from exc
    expected = module.state_dict()
    wrong = [f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}" for k, v in converted.items()
             if k in expected and v.shape != expected[k].shape]
    unexpected = [k for k in converted if k not in expected]
    if wrong or unexpected:
        raise checkpoint.MicroCinemaCheckpointError(
            f"{name} does not fit this base model's temporal layers: " + ", ".join((wrong + unexpected)[:8]))
    checkpoint.check_tensor_values(converted, expected, name)
    with torch.no_grad():
        for k, v in converted.items():
            expected[k].copy_(v.to(expected[k].dtype))


def microcinema_model(model_patcher, module_path: Optional[str], motion_module_path: Optional[str] = None):
    module = module_for(model_patcher, module_path)
    if motion_module_path is not None:
        load_motion_module(module, motion_module_path)
    return apply_module(model_patcher, module)


def load_full_checkpoint(path: str, embedding_directory=None):
    """(MODEL, CLIP or None, VAE or None) from a full MicroCinema checkpoint."""
    import comfy.sd

    sd, metadata = read_weights(path)
    if checkpoint.checkpoint_kind(sd) != "full":
        raise checkpoint.MicroCinemaCheckpointError(
            f"{os.path.basename(path)} is not a full MicroCinema checkpoint (a module file goes to "
            "'MicroCinema Apply Module' together with an SD checkpoint)")
    sd_part, module_sd = checkpoint.split_full(sd)
    out = comfy.sd.load_state_dict_guess_config(sd_part, output_vae=True, output_clip=True,
                                                embedding_directory=embedding_directory)
    model, clip, vae = out[0], out[1], out[2]
    if model is None:
        raise checkpoint.MicroCinemaCheckpointError(f"{os.path.basename(path)}: ComfyUI found no SD UNet in it")
    unet = module_base(model)
    with torch.no_grad():
        module = checkpoint.module_from_state_dict(unet, module_sd, MODULE_OPERATIONS, metadata,
                                                   dtype=model.model.get_dtype(), device=model.offload_device,
                                                   source=os.path.basename(path))
    return apply_module(model, module), clip, vae
