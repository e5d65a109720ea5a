"""Tiny, deterministic SD1.5-shaped checkpoints for tests (random weights; no downloads).

The UNet is small (model_channels 320 and context_dim 768 are what ComfyUI's SD15 detection keys on; one
level, one res block, depth-1 transformers). CLIP-L and the VAE must be full size: ComfyUI builds both from
fixed configs and leaves any weight missing from the file as uninitialised memory.

Key sets and shapes come from ComfyUI's own modules built on the meta device, so a file always matches what
the ComfyUI under test loads. Each tensor gets its own generator seeded from (seed, key), so the values do
not depend on key order or on other keys. Files are cached in .cache/test_models/ under a name derived from
everything that defines them, and rebuilt when missing.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .locations import MODEL_CACHE

log = logging.getLogger("microcinema.tests.tiny_models")

# Bump when the generation below changes in a way that changes file contents.
GENERATOR_VERSION = 1


def _load_product_generator():
    """The pack's own generator (microcinema_core/tiny_models.py, which the demo model uses too), loaded from
    its file: it imports only torch at module level, so no package import and no ComfyUI are needed here."""
    name = "_microcinema_tiny_models"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[2] / "microcinema_core" / "tiny_models.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_generator = _load_product_generator()
INIT_STD = _generator.INIT_STD
# What comfy.model_detection.detect_unet_config returns for such a file (UNetModel takes it as kwargs).
TINY_SD15_UNET: dict[str, Any] = _generator.TINY_SD15_UNET
# SD's VAE as ComfyUI builds it for an SD1.x checkpoint (comfy/sd.py VAE, fixed; embed_dim 4).
SD_VAE_DDCONFIG: dict[str, Any] = _generator.SD_VAE_DDCONFIG
Shapes = dict[str, tuple[tuple[int, ...], bool]]  # key -> (shape, is a normalisation parameter)
_meta_shapes = _generator.meta_shapes
random_state_dict = _generator.random_state_dict


def unet_shapes(unet_config: dict[str, Any]) -> Shapes:
    """Keys (without prefix) and shapes of ComfyUI's openaimodel UNet for ``unet_config``."""
    from .runtime import import_comfy_core

    import_comfy_core()
    return _generator.unet_shapes(unet_config)


def clip_l_shapes() -> Shapes:
    from .runtime import import_comfy_core

    import_comfy_core()
    return _generator.clip_l_shapes()


def vae_shapes() -> Shapes:
    from .runtime import import_comfy_core

    import_comfy_core()
    return _generator.vae_shapes()


def build_unet_state_dict(unet_config: dict[str, Any] | None = None, seed: int = 0,
                          prefix: str = "model.diffusion_model.", dtype=None):
    return random_state_dict(unet_shapes(unet_config or TINY_SD15_UNET), seed, prefix, dtype)


def build_sd15_checkpoint_state_dict(unet_config: dict[str, Any] | None = None, seed: int = 0, dtype=None):
    """UNet + CLIP-L + VAE under SD1.x checkpoint prefixes."""
    from .runtime import import_comfy_core

    import_comfy_core()
    return _generator.sd15_checkpoint_state_dict(unet_config, seed, dtype)


def _cache_name(kind: str, spec: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps({"v": GENERATOR_VERSION, **spec}, sort_keys=True).encode()).hexdigest()
    return f"{kind}-{digest[:12]}.safetensors"


def save_atomically(state_dict: dict, path: Path, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    save_file(state_dict, str(partial), metadata=metadata)
    os.replace(partial, path)  # a crash never leaves a truncated file under the cached name
    return path


def ensure_tiny_sd15_checkpoint(unet_config: dict[str, Any] | None = None, seed: int = 0,
                                cache_dir: Path = MODEL_CACHE) -> Path:
    """Path of the cached tiny SD1.5 checkpoint for (unet_config, seed); generated when missing."""
    unet_config = unet_config or TINY_SD15_UNET
    path = cache_dir / _cache_name("tiny-sd15", {"unet": unet_config, "seed": seed, "std": INIT_STD})
    if path.is_file():
        return path
    log.info("generating %s (once; cached afterwards)", path)
    sd = build_sd15_checkpoint_state_dict(unet_config, seed)
    return save_atomically(sd, path, metadata={"generator": "ComfyUI-MicroCinema tests",
                                               "unet_config": json.dumps(unet_config)})
