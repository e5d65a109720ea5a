"""MicroCinema checkpoints: safetensors only, a JSON config and a format version in the metadata.

Two kinds:
  module  temporal layers + injection + AppearNet only (keys ``temporal.*``, ``inject.*``, ``appearnet.*``),
          applied on top of any SD1.x/SD2.x UNet the user already has;
  full    an SD checkpoint (``model.diffusion_model.*`` and optionally ``cond_stage_model.*`` and
          ``first_stage_model.*``, exactly as SD files) plus the module under ``microcinema.*``.

The module's configuration is detected from keys and shapes (the metadata is only cross-checked), never from
file names. Pickle files are never unpickled: non-safetensors inputs are refused unless torch's weights_only
loader accepts them.
"""
from __future__ import annotations

import json
import logging
import os
import re
from typing import Optional

import safetensors
import safetensors.torch
import torch
from torch import nn

from . import FORMAT_VERSION
from .module import ModuleConfig, MicroCinemaModule, build_module

log = logging.getLogger(__name__)

FULL_PREFIX = "microcinema."
MODULE_ROOTS = ("temporal.", "inject.", "appearnet.")


class MicroCinemaCheckpointError(ValueError):
    pass


def read_safetensors(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors + metadata of a safetensors file, with a clear error for anything else."""
    if not path.lower().endswith((".safetensors", ".sft")):
        raise MicroCinemaCheckpointError(
            f"{os.path.basename(path)}: only .safetensors files are loaded (pickle files can run code); convert it "
            "with a trusted tool first")
    try:
        with safetensors.safe_open(path, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            return {k: f.get_tensor(k) for k in f.keys()}, metadata
    except MicroCinemaCheckpointError:
        raise
    except Exception as exc:  # safetensors raises several types for truncated/corrupted headers
        raise MicroCinemaCheckpointError(
            f"{os.path.basename(path)} is not a readable safetensors file (truncated or corrupted?): {exc}") from exc


def write_safetensors_atomic(tensors: dict[str, torch.Tensor], path: str, metadata: dict[str, str]) -> None:
    """Write to a temporary file in the same folder, then rename: a crash never leaves a half-written file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        safetensors.torch.save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # safetensors creates 0600 files; models are meant to be shared and read
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def module_metadata(cfg: ModuleConfig, kind: str, extra: Optional[dict] = None) -> dict[str, str]:
    meta = {"microcinema_format": str(FORMAT_VERSION), "microcinema_kind": kind,
            "microcinema_config": json.dumps(cfg.to_dict(), sort_keys=True)}
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    return meta


def save_module(module: MicroCinemaModule, path: str, dtype: Optional[torch.dtype] = None,
                extra_metadata: Optional[dict] = None) -> None:
    sd = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu()
          for k, v in module.state_dict().items()}
    write_safetensors_atomic(sd, path, module_metadata(module.config, "module", extra_metadata))


def save_full(module: MicroCinemaModule, sd_checkpoint: dict[str, torch.Tensor], path: str,
              dtype: Optional[torch.dtype] = None, extra_metadata: Optional[dict] = None) -> None:
    """``sd_checkpoint``: SD-format keys (model.diffusion_model.*, cond_stage_model.*, first_stage_model.*)."""
    out = dict(sd_checkpoint)
    for k, v in module.state_dict().items():
        out[FULL_PREFIX + k] = (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu()
    write_safetensors_atomic(out, path, module_metadata(module.config, "full", extra_metadata))


def split_full(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(SD part, module part) of a full checkpoint."""
    module_sd = {k[len(FULL_PREFIX):]: v for k, v in sd.items() if k.startswith(FULL_PREFIX)}
    sd_part = {k: v for k, v in sd.items() if not k.startswith(FULL_PREFIX)}
    return sd_part, module_sd


def checkpoint_kind(sd: dict[str, torch.Tensor]) -> str:
    """'full', 'module', 'animatediff' or 'unknown', from the keys alone."""
    keys = sd.keys()
    if any(k.startswith(FULL_PREFIX) for k in keys) and any(k.startswith("model.diffusion_model.") for k in keys):
        return "full"
    if any(k.startswith(MODULE_ROOTS) for k in keys):
        return "module"
    if any(".motion_modules." in k for k in keys):
        return "animatediff"
    return "unknown"


_MOTION_RE = re.compile(r"^temporal\.(?:input\.\d+|middle|output\.\d+)\.motion\.")


def detect_config(module_sd: dict[str, torch.Tensor], metadata: Optional[dict] = None) -> ModuleConfig:
    """The module configuration implied by the keys and shapes of a module state dict."""
    keys = list(module_sd)
    meta_cfg = {}
    if metadata and "microcinema_config" in metadata:
        try:
            meta_cfg = json.loads(metadata["microcinema_config"])
        except json.JSONDecodeError:
            log.warning("ignoring unreadable microcinema_config metadata")
    motion_keys = [k for k in keys if _MOTION_RE.match(k)]
    cfg = ModuleConfig(
        temporal_convs=any(re.match(r"^temporal\.[^.]+(\.\d+)?\.res\.", k) for k in keys),
        motion_modules=bool(motion_keys),
        motion_mid_block=any(k.startswith("temporal.middle.motion.") for k in keys),
        appearnet="appearnet.hint_in.weight" in module_sd,
        motion_heads=int(meta_cfg.get("motion_heads", 8)),
    )
    if motion_keys:
        # A damaged file may lack the tensors read here: keep the defaults, the strict load names what is missing.
        blocks = [int(m.group(1)) for k in motion_keys if (m := re.search(r"\.attention_blocks\.(\d+)\.", k))]
        layers = [int(m.group(1)) for k in motion_keys if (m := re.search(r"\.transformer_blocks\.(\d+)\.", k))]
        if blocks:
            cfg.motion_attention_blocks = 1 + max(blocks)
        if layers:
            cfg.motion_layers = 1 + max(layers)
        ff_out = next((module_sd[k] for k in motion_keys if k.endswith(".ff.net.2.weight")), None)
        if ff_out is not None and ff_out.ndim == 2 and ff_out.shape[0] > 0 and ff_out.shape[1] >= ff_out.shape[0]:
            cfg.motion_ff_mult = ff_out.shape[1] // ff_out.shape[0]
    if cfg.appearnet:
        cfg.latent_channels = module_sd["appearnet.hint_in.weight"].shape[0]
        sign = module_sd.get("appearnet.text_sign.weight")
        cfg.motion_text_sign = int(sign.shape[0]) if sign is not None and sign.ndim == 2 else 0
    return cfg


def check_tensor_values(file_sd: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], source: str) -> None:
    """Refuse integer/bool tensors where the model has floating-point weights (copy_ would silently convert them)
    and NaN/Inf weights."""
    wrong_dtype = [f"{k} ({str(v.dtype).replace('torch.', '')})" for k, v in file_sd.items()
                   if k in expected and expected[k].is_floating_point() and not v.is_floating_point()]
    if wrong_dtype:
        raise MicroCinemaCheckpointError(
            f"{source} holds non-floating-point tensors where weights belong (damaged or not a model file): "
            + ", ".join(wrong_dtype[:8]) + (f" ... ({len(wrong_dtype)} in all)" if len(wrong_dtype) > 8 else ""))
    bad = [k for k, v in file_sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise MicroCinemaCheckpointError(f"{source} holds NaN/Inf weights in {', '.join(bad[:8])}")


def load_module_state(module: nn.Module, module_sd: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strict load with an error that names the offending keys (missing, unexpected, wrong shape)."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in module_sd]
    unexpected = [k for k in module_sd if k not in expected]
    wrong = [f"{k}: file {tuple(module_sd[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in expected if k in module_sd and module_sd[k].shape != expected[k].shape]
    problems = []
    for title, items in (("wrong shapes", wrong), ("missing keys", missing), ("unexpected keys", unexpected)):
        if items:
            shown = ", ".join(items[:8]) + (f" ... ({len(items)} in all)" if len(items) > 8 else "")
            problems.append(f"{title}: {shown}")
    if problems:
        raise MicroCinemaCheckpointError(
            f"{source} does not fit this base model (is it made for another SD family or size?); " + "; ".join(problems))
    check_tensor_values(module_sd, expected, source)
    with torch.no_grad():
        for k, tensor in expected.items():
            tensor.copy_(module_sd[k].to(tensor.dtype))


def module_from_state_dict(unet: nn.Module, module_sd: dict[str, torch.Tensor], operations,
                           metadata: Optional[dict] = None, dtype=None, device=None,
                           source: str = "checkpoint") -> MicroCinemaModule:
    cfg = detect_config(module_sd, metadata)
    module = build_module(unet, cfg, operations, dtype=dtype, device=device, fresh=False)
    load_module_state(module, module_sd, source)
    return module
