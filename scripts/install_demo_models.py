"""Install the MicroCinema demo models into the ComfyUI this pack is installed in.

Run it from the ComfyUI folder, with the Python that runs ComfyUI:

    python custom_nodes/ComfyUI-MicroCinema/scripts/install_demo_models.py

It writes the files the example workflows name, where that ComfyUI's folder_paths puts new models (so an
extra_model_paths.yaml next to main.py counts, as do --base-directory and --extra-model-paths-config given here,
as for main.py):

    models/checkpoints/microcinema_demo_sd15.safetensors
    models/microcinema/microcinema_demo_module.safetensors
    input/microcinema_example_keyframe.png       (the picture the image_to_video workflow loads)

A second run finds them up to date. A file of the same name that differs is never replaced: the command names
it and stops (exit status 1). ComfyUI is found as microcinema_core.comfy_env finds it: COMFYUI_PATH, else the
ComfyUI whose custom_nodes/ folder holds the pack.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from pathlib import Path
from types import ModuleType

# abspath, not resolve: a pack linked into ComfyUI/custom_nodes/ is seen where it is linked (comfy_env relies on it)
PACK_DIR = Path(os.path.abspath(__file__)).parent.parent
CORE = "microcinema_core"
EXAMPLE_KEYFRAME = "microcinema_example_keyframe.png"
log = logging.getLogger("microcinema.install_demo_models")

# Python put this scripts/ folder first on sys.path; nothing is imported from it, and a file here must never
# stand in for one of ComfyUI's top-level modules.
if sys.path and sys.path[0] and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]


def _load(name: str, path: Path, package_dir: Path | None = None) -> ModuleType:
    """A module from a file, without putting the pack folder on sys.path: the pack's nodes/ package would
    shadow ComfyUI's nodes module there."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(package_dir)] if package_dir else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def comfy_folders(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """(checkpoints, microcinema, input) folders where this ComfyUI puts new files, set up as main.py does."""
    import comfy.cli_args

    if args.base_directory:  # read by folder_paths when it is first imported, just below
        comfy.cli_args.args.base_directory = os.path.abspath(args.base_directory)
    import folder_paths
    import utils.extra_config  # ComfyUI's utils package (ComfyUI's folder is first on sys.path)

    configs = [Path(folder_paths.__file__).resolve().parent / "extra_model_paths.yaml"]  # main.py's default
    configs = [c for c in configs if c.is_file()] + [Path(c) for c in args.extra_model_paths_config or ()]
    for config in configs:
        utils.extra_config.load_extra_path_config(str(config))
    # after the yaml files, as in ComfyUI, where they are read before custom nodes register their folders
    _load("microcinema_model_folders", PACK_DIR / "nodes" / "model_folders.py").register()
    if args.input_directory:
        folder_paths.set_input_directory(os.path.abspath(args.input_directory))
    return (Path(folder_paths.get_folder_paths("checkpoints")[0]),
            Path(folder_paths.get_folder_paths("microcinema")[0]),
            Path(folder_paths.get_input_directory()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-directory", help="as main.py's --base-directory")
    parser.add_argument("--extra-model-paths-config", action="append", metavar="YAML",
                        help="as main.py's option (repeatable); extra_model_paths.yaml next to main.py is read anyway")
    parser.add_argument("--input-directory", help="as main.py's --input-directory (where the keyframe goes)")
    parser.add_argument("--untrained", action="store_true", help="install the untrained twin (noise videos)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    _load(CORE, PACK_DIR / CORE / "__init__.py", PACK_DIR / CORE)
    from microcinema_core import comfy_env

    try:
        root = comfy_env.ensure_comfy(cpu=True)  # the build runs on the CPU: the same bytes everywhere
    except RuntimeError as exc:
        print(f"install_demo_models: {exc}", file=sys.stderr)
        return 1
    log.info("ComfyUI: %s", root or comfy_env.comfyui_path())
    checkpoints, modules, inputs = comfy_folders(args)

    from microcinema_core import demo, demo_install

    targets = {"checkpoint": checkpoints / demo.DEMO_CHECKPOINT, "module": modules / demo.DEMO_MODULE}
    refused = []
    try:
        status = demo_install.install(targets, untrained=args.untrained)
    except demo_install.DemoFileConflict as exc:
        refused.append(str(exc))
        status = {}
    keyframe = inputs / EXAMPLE_KEYFRAME
    try:
        status["example keyframe"] = demo_install.install_file(PACK_DIR / "example_workflows" / EXAMPLE_KEYFRAME,
                                                               keyframe)
        targets["example keyframe"] = keyframe
    except demo_install.DemoFileConflict as exc:
        refused.append(str(exc))
    for kind, state in status.items():
        log.info("%-16s %-10s %s (%.1f MB)", kind, state, targets[kind], os.path.getsize(targets[kind]) / 1e6)
    if refused:
        print("install_demo_models: refused:\n" + "\n".join(refused), file=sys.stderr)
        return 1
    log.info("done: the example workflows (template browser, ComfyUI-MicroCinema) find their models")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
