"""Peak memory of loading a MicroCinema module file onto an SD1.5-shaped UNet (what Apply Module does).

    .venv/bin/python benchmarks/module_load_memory.py            # reference config (SD1.5 widths), fp16

A module file holds AppearNet's copy of the SD encoder + middle block, so loading one needs that copy's storage
once (plus the file's tensors while they are copied in). The figure printed is the growth of the process's peak
RSS during ``checkpoint.module_from_state_dict`` (Linux: /proc peak reset; in a fresh process that has already
built the UNet and read the file), next to the sizes of the UNet and of the module, so a regression (e.g. copying the encoder's data only to
overwrite it) shows as peak growth well above 1x the module.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _mb(nbytes: float) -> float:
    return nbytes / 2**20


def _status_kb(field: str) -> int:
    """Bytes of a /proc/self/status memory field."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def build_unet(config: str):
    """ComfyUI's own SD UNet (fp16, weights left uninitialised) in the chosen config, with ComfyUI and the pack
    importable."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from pack_import import core, sub  # noqa: E402

    import torch

    core()
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    configs = sub("configs")
    unet_config = configs.reference_unet_config() if config == "reference" else configs.tiny_unet_config(768)
    return UNetModel(**unet_config, dtype=torch.float16, operations=comfy.ops.disable_weight_init)


def child(path: str, config: str) -> None:
    unet = build_unet(config)
    import torch
    from pack_import import sub

    checkpoint, patching = sub("checkpoint"), sub("patching")
    sd, metadata = checkpoint.read_safetensors(path)
    sd = {k: v + 0 for k, v in sd.items()}  # resident in anonymous memory, as a loaded state dict is
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak (VmHWM) to the current RSS
    with torch.no_grad():
        module = checkpoint.module_from_state_dict(unet, sd, patching.MODULE_OPERATIONS, metadata,
                                                   dtype=torch.float16, device=torch.device("cpu"))
    after = _status_kb("VmHWM")
    size = lambda m: sum(p.numel() * p.element_size() for p in m.parameters())  # noqa: E731
    print(json.dumps({"unet_mb": _mb(size(unet)), "module_mb": _mb(size(module)), "peak_growth_mb": _mb(after - before)}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=("reference", "tiny"), default="reference")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.config)
        return 0
    unet = build_unet(args.config)
    import comfy.ops
    import torch
    from pack_import import sub

    checkpoint, module_lib = sub("checkpoint"), sub("module")
    with torch.no_grad():
        for p in unet.parameters():
            p.normal_(0, 0.02)
        module = module_lib.build_module(unet, module_lib.ModuleConfig(), comfy.ops.manual_cast,
                                         dtype=torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "module.safetensors")
        checkpoint.save_module(module, path, dtype=torch.float16)
        del module, unet
        out = subprocess.run([sys.executable, __file__, "--config", args.config, "--child", path],
                             capture_output=True, text=True, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{args.config} config, fp16: UNet {figures['unet_mb']:.0f} MB, module {figures['module_mb']:.0f} MB; "
          f"peak RSS growth while loading the module {figures['peak_growth_mb']:.0f} MB "
          f"({figures['peak_growth_mb'] / figures['module_mb']:.2f}x the module)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
