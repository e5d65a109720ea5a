"""An in-process, real ComfyUI for graph tests (one per test process, as ComfyUI itself assumes).

Boot order matters and mirrors main.py:
  1. ComfyUI's folder on sys.path, argument parsing off, ``args.cpu`` set before anything imports
     comfy.model_management (that import picks the device);
  2. ``import utils.extra_config`` before ``import nodes`` (0.3.x: nodes.py puts comfy/ first on sys.path,
     after which ``import utils`` would find comfy/utils.py);
  3. a real ``server.PromptServer`` (0.33's built-in nodes register with ``PromptServer.instance`` at load);
  4. built-in extra nodes, then our pack through ``nodes.load_custom_node`` exactly as ComfyUI loads packs.
"""
from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .locations import MODEL_FOLDERS, PACK_NAME, SessionDirs, comfyui_path, pack_module_path

log = logging.getLogger("microcinema.tests.runtime")

_core: "ComfyCore | None" = None
_runtime: "ComfyRuntime | None" = None


@dataclass
class ComfyCore:
    """Steps 1-2 only: enough to use comfy.* (e.g. to build test checkpoints) without loading any nodes."""

    path: Path
    version: str


def import_comfy_core(cpu: bool = True) -> ComfyCore:
    global _core
    if _core is not None:
        return _core
    root = comfyui_path()
    if not (root / "comfy").is_dir() or not (root / "nodes.py").is_file():
        raise RuntimeError(f"no ComfyUI checkout at {root}: run scripts/bootstrap.sh or set COMFYUI_PATH")
    if "comfy" in sys.modules:
        loaded = Path(sys.modules["comfy"].__file__ or "").resolve().parent.parent
        if loaded != root.resolve():
            raise RuntimeError(f"comfy was already imported from {loaded}, not from {root}")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    if "comfy.model_management" in sys.modules and cpu and not comfy.cli_args.args.cpu:
        raise RuntimeError("comfy.model_management was imported before args.cpu could be set")
    comfy.cli_args.args.cpu = cpu
    import utils.extra_config  # noqa: F401  (must precede `import nodes`, see module docstring)

    version = _read_version(root)
    _core = ComfyCore(path=root, version=version)
    log.info("ComfyUI %s at %s", version, root)
    return _core


def _read_version(root: Path) -> str:
    text = (root / "comfyui_version.py").read_text() if (root / "comfyui_version.py").is_file() else ""
    for line in text.splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return "unknown"


@dataclass
class ComfyRuntime:
    """The booted in-process ComfyUI. ``loop`` is the one event loop every async ComfyUI call runs on
    (PromptServer keeps a reference to it, so it must outlive single ``asyncio.run`` calls)."""

    core: ComfyCore
    dirs: SessionDirs
    loop: asyncio.AbstractEventLoop
    server: Any
    nodes: ModuleType
    folder_paths: ModuleType
    pack_module: str
    boot_seconds: float
    pack_seconds: float
    _runner: Any = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        return self.core.path

    @property
    def version(self) -> str:
        return self.core.version

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.version.split(".") if p.isdigit())

    def run(self, awaitable):
        """Run a coroutine of ComfyUI's on the runtime's loop."""
        return self.loop.run_until_complete(awaitable)

    def node_class(self, class_type: str) -> Any:
        return self.nodes.NODE_CLASS_MAPPINGS[class_type]

    @property
    def runner(self):
        if self._runner is None:
            from .runner import GraphRunner

            self._runner = GraphRunner(self)
        return self._runner

    def run_graph(self, prompt, outputs=None, **kwargs):
        """See GraphRunner.run."""
        return self.runner.run(prompt, outputs=outputs, **kwargs)


def boot(dirs: SessionDirs) -> ComfyRuntime:
    """Boot ComfyUI in this process once; later calls return the same runtime."""
    global _runtime
    if _runtime is not None:
        return _runtime
    t0 = time.perf_counter()
    core = import_comfy_core(cpu=True)
    import folder_paths

    _redirect_folders(folder_paths, dirs)
    import comfy.cli_args

    # The web front end is not needed in-process; an empty root keeps PromptServer from looking for it.
    comfy.cli_args.args.front_end_root = str(dirs.empty_front_end)
    comfy.cli_args.args.disable_api_nodes = True

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    import execution  # noqa: F401  (imports nodes after utils.extra_config; keeps main.py's order)
    import nodes
    import server

    prompt_server = server.PromptServer(loop)
    hook_breaker = _optional_import("hook_breaker_ac10a0")
    if hook_breaker is not None:
        hook_breaker.save_functions()
    try:
        init = nodes.init_extra_nodes
        kwargs = {"init_custom_nodes": False}
        if "init_api_nodes" in inspect.signature(init).parameters:
            kwargs["init_api_nodes"] = False
        _maybe_await(loop, init(**kwargs))
        t_pack = time.perf_counter()
        module_path = str(pack_module_path())
        ok = _maybe_await(loop, nodes.load_custom_node(module_path, module_parent="custom_nodes"))
        pack_seconds = time.perf_counter() - t_pack
    finally:
        if hook_breaker is not None:
            hook_breaker.restore_functions()
    if not ok:
        raise RuntimeError(f"ComfyUI could not load the pack from {module_path} (see the log above)")
    # The pack may register its own model folders at import: point them (again) at the session dirs.
    _redirect_folders(folder_paths, dirs)
    _install_progress_hook(prompt_server)

    _runtime = ComfyRuntime(
        core=core,
        dirs=dirs,
        loop=loop,
        server=prompt_server,
        nodes=nodes,
        folder_paths=folder_paths,
        pack_module=module_path.replace(".", "_x_"),
        boot_seconds=time.perf_counter() - t0,
        pack_seconds=pack_seconds,
    )
    log.info("in-process ComfyUI %s booted in %.1f s (pack %s: %.2f s)", core.version, _runtime.boot_seconds,
             PACK_NAME, pack_seconds)
    return _runtime


def _maybe_await(loop: asyncio.AbstractEventLoop, value):
    return loop.run_until_complete(value) if inspect.isawaitable(value) else value


def _optional_import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _redirect_folders(folder_paths: ModuleType, dirs: SessionDirs) -> None:
    """Every model folder the tests use resolves to the session dir only; outputs go to session dirs."""
    table = folder_paths.folder_names_and_paths
    for name in MODEL_FOLDERS:
        extensions = table[name][1] if name in table else folder_paths.supported_pt_extensions
        table[name] = ([str(dirs.models[name])], extensions)
    folder_paths.set_output_directory(str(dirs.output))
    folder_paths.set_input_directory(str(dirs.input))
    folder_paths.set_temp_directory(str(dirs.temp))
    folder_paths.set_user_directory(str(dirs.user))
    # The file-name list cache would otherwise keep answering with the old folders.
    cache = getattr(folder_paths, "filename_list_cache", None)
    if isinstance(cache, dict):
        cache.clear()


def _install_progress_hook(prompt_server) -> None:
    """What main.py's hijack_progress does (main.py cannot be imported: it parses argv and starts things):
    ProgressBar updates check for interruption, update the progress registry and send "progress"."""
    import comfy.model_management
    import comfy.utils
    from comfy_execution.progress import get_progress_state
    from comfy_execution.utils import get_executing_context

    def hook(value, total, preview_image, prompt_id=None, node_id=None):
        context = get_executing_context()
        if prompt_id is None and context is not None:
            prompt_id = context.prompt_id
        if node_id is None and context is not None:
            node_id = context.node_id
        comfy.model_management.throw_exception_if_processing_interrupted()
        if prompt_id is None:
            prompt_id = getattr(prompt_server, "last_prompt_id", None)
        if node_id is None:
            node_id = prompt_server.last_node_id
        get_progress_state().update_progress(node_id, value, total, preview_image)
        prompt_server.send_sync("progress", {"value": value, "max": total, "prompt_id": prompt_id,
                                             "node": node_id}, prompt_server.client_id)

    comfy.utils.set_progress_bar_global_hook(hook)
