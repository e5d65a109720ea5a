"""The demo model files the shipped example workflows name, generated locally (never downloaded).

    checkpoints/microcinema_demo_sd15.safetensors        microcinema_core.demo (the set-up command's builder)
    microcinema/microcinema_demo_module.safetensors      microcinema_core.demo
    controlnet/microcinema_demo_controlnet.safetensors   harness.extra_models.controlnet_state_dict
    upscale_models/microcinema_demo_x2.safetensors       harness.extra_models.upscaler_state_dict

They are built once in a subprocess (the pack's microcinema_core is imported there as a top-level package, which
must not happen inside a test process that also loads the pack through ComfyUI) and cached in
.cache/test_models/demo-<hash>/, the hash covering the sources that define them; tests link them into the
session's model folders under the names the workflows use. The workflow JSON is never edited.

    python -m harness.demo_models --out DIR   (run from tests/) builds them into DIR.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .locations import MODEL_CACHE, REPO_ROOT, SessionDirs, comfyui_path

log = logging.getLogger("microcinema.tests.demo_models")

DEMO_FILES = {
    "checkpoints": "microcinema_demo_sd15.safetensors",
    "microcinema": "microcinema_demo_module.safetensors",
    "controlnet": "microcinema_demo_controlnet.safetensors",
    "upscale_models": "microcinema_demo_x2.safetensors",
}
CONTROLNET_SEED, UPSCALER_SEED = 7, 5
BUILD_TIMEOUT = 900


def _source_hash() -> str:
    digest = hashlib.sha256()
    sources = sorted((REPO_ROOT / "microcinema_core").rglob("*.py"))
    sources += sorted((REPO_ROOT / "microcinema_core" / "weights").glob("*.safetensors"))  # the trained demo
    sources += [Path(__file__), Path(__file__).with_name("extra_models.py"), Path(__file__).with_name("tiny_models.py")]
    for path in sources:
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    version = comfyui_path() / "comfyui_version.py"
    digest.update(version.read_bytes() if version.is_file() else b"?")
    return digest.hexdigest()[:12]


def ensure_demo_models(cache: Path = MODEL_CACHE) -> Path:
    """Folder holding <model folder>/<demo file> for every DEMO_FILES entry (built when missing)."""
    target = cache / f"demo-{_source_hash()}"
    if all((target / folder / name).is_file() for folder, name in DEMO_FILES.items()):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".demo-partial-", dir=cache))
    log.info("building the demo models in %s (once; cached afterwards)", target)
    cmd = [sys.executable, "-m", "harness.demo_models", "--out", str(partial)]
    proc = subprocess.run(cmd, cwd=str(REPO_ROOT / "tests"), capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise RuntimeError(f"building the demo models failed ({' '.join(cmd)}):\n{proc.stdout[-3000:]}"
                           f"\n{proc.stderr[-6000:]}")
    try:
        os.rename(partial, target)
    except OSError:  # another process finished first
        shutil.rmtree(partial, ignore_errors=True)
    for old in cache.glob("demo-*"):  # earlier generations (sources changed since)
        if old != target and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return target


def place_demo_models(dirs: SessionDirs, cache: Path = MODEL_CACHE) -> dict[str, str]:
    """Link the demo files into the session's model folders under the workflows' names; {folder: file name}."""
    source = ensure_demo_models(cache)
    return {folder: dirs.place_model(folder, source / folder / name, name) for folder, name in DEMO_FILES.items()}


def _build(out: Path) -> None:
    """Runs in the subprocess (cwd tests/)."""
    from .extra_models import controlnet_state_dict, save, upscaler_state_dict
    from .runtime import import_comfy_core

    import_comfy_core(cpu=True)
    # appended, not prepended: the repository root holds a nodes/ package that would shadow ComfyUI's nodes.py
    sys.path.append(str(REPO_ROOT))
    from microcinema_core import demo, tiny_models  # the set-up command's own builder

    built = demo.ensure_demo_models(out)
    assert built["checkpoint"].name == DEMO_FILES["checkpoints"] and built["module"].name == DEMO_FILES["microcinema"]
    save(controlnet_state_dict(dict(tiny_models.TINY_SD15_UNET), seed=CONTROLNET_SEED),
         out / "controlnet" / DEMO_FILES["controlnet"])
    save(upscaler_state_dict(scale=2, seed=UPSCALER_SEED), out / "upscale_models" / DEMO_FILES["upscale_models"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _build(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
