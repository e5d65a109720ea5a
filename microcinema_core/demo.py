"""The demo models the example workflows name, built locally from weights shipped in this repository.

    python -m microcinema_core.demo --models-dir .cache/demo_models

writes, under ComfyUI's model-folder names (into a ComfyUI's own model folders, without overwriting anything:
``scripts/install_demo_models.py``, see ``demo_install``):
    checkpoints/microcinema_demo_sd15.safetensors     stage 1 (text -> keyframe) and the SD base of stage 2
    microcinema/microcinema_demo_module.safetensors   stage 2: MicroCinema temporal layers + AppearNet

The UNet and the module were trained by ``microcinema_core.demo_training`` on the synthetic shapes videos
(captions such as "a red circle moving left"), as a narrow twin that ``narrow.widen`` turns into the SD1.5
shapes ComfyUI recognises (exactly: see narrow.py). The files in ``weights/`` hold the narrow weights (a few MB).
The text encoder is a CLIP-L with fixed pseudo-random weights (deterministic per key: it only has to tell the
captions apart) and the VAE is the exact pooling autoencoder of ``demo_vae``. Nothing is downloaded.

Without the shipped weights (``--untrained``) the same files are built with an untrained twin: the graph runs,
the pictures are noise.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
from pathlib import Path

import torch

log = logging.getLogger("microcinema.demo")

DEMO_CHECKPOINT = "microcinema_demo_sd15.safetensors"
DEMO_MODULE = "microcinema_demo_module.safetensors"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
NARROW_UNET = WEIGHTS_DIR / "demo_unet_narrow.safetensors"
NARROW_MODULE = WEIGHTS_DIR / "demo_module_narrow.safetensors"
CLIP_SEED = 1
TEXT_SIGN = 2  # k of the demo module's text sign (ModuleConfig.motion_text_sign)
DEMO_PROMPT = "a red circle moving left"
# metadata key of both built files: the build fingerprint (see build_fingerprint)
BUILD_KEY = "microcinema_demo_build"


def demo_module_config():
    from .module import ModuleConfig

    return ModuleConfig(motion_text_sign=TEXT_SIGN)


def base_state_dict(unet_sd_wide: dict[str, torch.Tensor], dtype=torch.float16) -> dict[str, torch.Tensor]:
    """An SD1.x checkpoint: the given (wide) UNet, the demo CLIP-L and the demo VAE."""
    from . import demo_vae, tiny_models

    sd = {"model.diffusion_model." + k: v.to(dtype).contiguous() for k, v in unet_sd_wide.items()}
    sd.update(tiny_models.random_state_dict(tiny_models.clip_l_shapes(), CLIP_SEED, "cond_stage_model.transformer.",
                                            dtype))
    sd.update({k: v.to(dtype) for k, v in demo_vae.taesd_state_dict().items()})
    return sd


def wide_unet_shapes() -> dict[str, tuple[int, ...]]:
    from . import tiny_models

    return {k: shape for k, (shape, _) in tiny_models.unet_shapes(tiny_models.TINY_SD15_UNET).items()}


# The sources that decide the bytes of the built files: a change to any of them rebuilds the demo files.
_BUILDERS = ("demo.py", "demo_vae.py", "narrow.py", "tiny_models.py", "module.py", "temporal.py", "checkpoint.py")


def _fingerprint(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes() if path.is_file() else b"untrained")
    here = Path(__file__).resolve().parent
    for name in _BUILDERS:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def build_fingerprint(untrained: bool = False) -> str:
    """Names what the built files are made from; the same inputs build the same tensors."""
    trained = not untrained and NARROW_UNET.is_file() and NARROW_MODULE.is_file()
    return _fingerprint(NARROW_UNET, NARROW_MODULE) if trained else "untrained-" + _fingerprint()


def write_demo_files(ckpt_path: Path, module_path: Path, untrained: bool = False) -> None:
    """Build both demo files at the given paths (replacing whatever is there: callers decide whether they may).
    Each file's metadata carries ``BUILD_KEY``: the build fingerprint, so that a later run can tell an
    up-to-date file without building it again."""
    from . import checkpoint, narrow, tiny_models

    trained = not untrained and NARROW_UNET.is_file() and NARROW_MODULE.is_file()
    fingerprint = build_fingerprint(untrained)
    for path in (ckpt_path, module_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    cfg = demo_module_config()
    if trained:
        unet_narrow, _ = checkpoint.read_safetensors(str(NARROW_UNET))
        module_narrow, meta = checkpoint.read_safetensors(str(NARROW_MODULE))
        cfg = checkpoint.detect_config(module_narrow, meta)
        log.info("building the trained demo models")
    else:
        log.warning("building UNTRAINED demo models (their videos are noise)")
        unet = narrow.build_narrow_unet(tiny_models.TINY_SD15_UNET)
        unet_narrow = unet.state_dict()
        module_narrow = narrow.build_narrow_module(unet, cfg).state_dict()
    unet_wide = narrow.widen(unet_narrow, wide_unet_shapes())
    module_wide = narrow.widen(module_narrow, narrow.wide_module_shapes(tiny_models.TINY_SD15_UNET, cfg))
    checkpoint.write_safetensors_atomic(base_state_dict(unet_wide), str(ckpt_path),
                                        {"generator": "ComfyUI-MicroCinema demo", "trained": str(trained),
                                         BUILD_KEY: fingerprint})

    # widen() has checked the keys and shapes against the wide module's, so the file is written directly
    checkpoint.write_safetensors_atomic(
        {k: v.to(torch.float16) for k, v in module_wide.items()}, str(module_path),
        checkpoint.module_metadata(cfg, "module", {"note": ("" if trained else "un") + "trained demo module",
                                                   BUILD_KEY: fingerprint}))


def ensure_demo_models(models_dir: Path, untrained: bool = False) -> dict[str, Path]:
    """Both files under ``models_dir`` (a folder of our own: rebuilt in place when their sources change).
    Installing into a user's ComfyUI, which must never overwrite a file: ``demo_install``."""
    ckpt_path = models_dir / "checkpoints" / DEMO_CHECKPOINT
    module_path = models_dir / "microcinema" / DEMO_MODULE
    stamp = models_dir / ".microcinema_demo_stamp"
    fingerprint = build_fingerprint(untrained)
    if ckpt_path.is_file() and module_path.is_file() and stamp.is_file() and stamp.read_text() == fingerprint:
        return {"checkpoint": ckpt_path, "module": module_path}
    log.info("writing the demo models to %s", models_dir)
    write_demo_files(ckpt_path, module_path, untrained)
    stamp.write_text(fingerprint)
    return {"checkpoint": ckpt_path, "module": module_path}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, required=True, help="folder that gets checkpoints/ and microcinema/")
    parser.add_argument("--untrained", action="store_true", help="build the untrained twin instead (noise videos)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .comfy_env import ensure_comfy

    ensure_comfy()
    for kind, path in ensure_demo_models(args.models_dir, args.untrained).items():
        log.info("%s: %s (%.1f MB)", kind, path, os.path.getsize(path) / 1e6)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
