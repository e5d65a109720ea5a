"""The demo models the example workflows name, built locally (no download).

    python -m microcinema_core.demo --models-dir .cache/demo_models

writes, under ComfyUI's model-folder names:
    checkpoints/microcinema_demo_sd15.safetensors     stage 1 (and the SD base of stage 2)
    microcinema/microcinema_demo_module.safetensors   stage 2: MicroCinema temporal layers + AppearNet

Until a trained demo model ships, these are the tiny SD1.5-shaped models of ``tiny_models`` with random
weights and an untrained (identity) MicroCinema module: the graph runs end to end, the pictures are noise.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

log = logging.getLogger("microcinema.demo")

DEMO_CHECKPOINT = "microcinema_demo_sd15.safetensors"
DEMO_MODULE = "microcinema_demo_module.safetensors"


def ensure_demo_models(models_dir: Path, seed: int = 0) -> dict[str, Path]:
    from . import checkpoint, tiny_models
    from .module import ModuleConfig, build_module
    from .patching import MODULE_OPERATIONS

    import torch

    ckpt_path = models_dir / "checkpoints" / DEMO_CHECKPOINT
    module_path = models_dir / "microcinema" / DEMO_MODULE
    if ckpt_path.is_file() and module_path.is_file():
        return {"checkpoint": ckpt_path, "module": module_path}
    for path in (ckpt_path, module_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    log.info("building the demo models in %s (once)", models_dir)
    sd = tiny_models.sd15_checkpoint_state_dict(seed=seed)
    checkpoint.write_safetensors_atomic(sd, str(ckpt_path), {"generator": "ComfyUI-MicroCinema demo"})

    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    unet = UNetModel(**tiny_models.TINY_SD15_UNET, operations=comfy.ops.disable_weight_init)
    prefix = "model.diffusion_model."
    unet.load_state_dict({k[len(prefix):]: v.float() for k, v in sd.items() if k.startswith(prefix)})
    with torch.no_grad():
        module = build_module(unet, ModuleConfig(), MODULE_OPERATIONS)
    checkpoint.save_module(module, str(module_path), dtype=torch.float16,
                           extra_metadata={"note": "untrained demo module"})
    return {"checkpoint": ckpt_path, "module": module_path}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, required=True, help="folder that gets checkpoints/ and microcinema/")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .comfy_env import ensure_comfy

    ensure_comfy()
    for kind, path in ensure_demo_models(args.models_dir, args.seed).items():
        log.info("%s: %s (%.1f MB)", kind, path, os.path.getsize(path) / 1e6)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
