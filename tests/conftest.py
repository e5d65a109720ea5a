"""Pytest fixtures: a real ComfyUI (in-process and as a server) with the pack loaded, plus tiny test models.

Fixtures (all session-scoped):
  comfy_dirs          SessionDirs: temp models/<folder>, input, output, temp, user folders for the session
  comfy_env           ComfyRuntime: in-process ComfyUI with built-in nodes and our pack loaded
  run_graph           run_graph(prompt_or_graph, outputs=None, *, fresh=False) -> GraphResult
  tiny_sd_checkpoint  file name of a tiny SD1.5-shaped checkpoint in the checkpoints folder
  comfy_server        ComfyServer: `python main.py` on 127.0.0.1 with the pack (tests marked `server`)

tests/ is deliberately not a package (the repository root is the pack's package); the harness lives in
tests/harness and is importable because this folder is put on sys.path.
"""
from __future__ import annotations

import atexit
import logging
import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent
# `python -m pytest` from the repository root puts the root on sys.path, where the pack's `nodes/` folder would
# shadow ComfyUI's `nodes` module. The pack is only ever imported through ComfyUI's loader.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _TESTS.parent]
sys.path.insert(0, str(_TESTS))

from harness import runtime as _runtime  # noqa: E402
from harness.locations import REPO_ROOT, SessionDirs  # noqa: E402
from harness.runner import GraphResult  # noqa: E402,F401  (re-exported for type hints in tests)
from harness.server import ComfyServer  # noqa: E402
from harness.tiny_models import ensure_tiny_sd15_checkpoint  # noqa: E402

log = logging.getLogger("microcinema.tests")


class _PackRootIsNotATestPackage:
    """The repository root is the pack's package (ComfyUI imports its __init__.py, which needs ComfyUI on
    sys.path). Pytest would collect the root as a Package and import that __init__.py under the name of the
    checkout folder: a second copy of the pack, outside ComfyUI. Collect the root as a plain folder."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path: Path, parent: pytest.Collector):
        if path == REPO_ROOT:
            return pytest.Dir.from_parent(parent, path=path)
        return None


def pytest_configure(config: pytest.Config) -> None:
    # Registered as a plugin (not a conftest hook) because conftest hooks do not apply to parent folders.
    config.pluginmanager.register(_PackRootIsNotATestPackage(), "microcinema-pack-root")


# Tests that need a ComfyUI get its marker even when the author forgot it, so `-m "not server"` and
# friends select correctly.
_FIXTURE_MARKS = {"comfy_server": "server", "comfy_env": "graph", "run_graph": "graph"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, mark in _FIXTURE_MARKS.items():
            if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(mark) is None:
                item.add_marker(mark)


@pytest.fixture(scope="session")
def comfy_dirs(tmp_path_factory: pytest.TempPathFactory) -> SessionDirs:
    return SessionDirs.create(tmp_path_factory.mktemp("comfy"))


@pytest.fixture(scope="session")
def comfy_env(comfy_dirs: SessionDirs) -> _runtime.ComfyRuntime:
    return _runtime.boot(comfy_dirs)


@pytest.fixture(scope="session")
def mc(comfy_env: _runtime.ComfyRuntime):
    """The pack's microcinema_core as the booted ComfyUI loaded it (the objects the nodes use)."""
    from pack_import import core

    return core()


@pytest.fixture(scope="session")
def run_graph(comfy_env: _runtime.ComfyRuntime):
    """Validate + execute a prompt in-process; see harness.runner.GraphRunner.run."""
    return comfy_env.runner.run


@pytest.fixture(scope="session")
def tiny_sd_checkpoint(comfy_dirs: SessionDirs) -> str:
    """A tiny SD1.5-shaped checkpoint (generated once, cached in .cache/test_models/)."""
    return comfy_dirs.place_model("checkpoints", ensure_tiny_sd15_checkpoint(), "tiny_sd15.safetensors")


@pytest.fixture(scope="session")
def comfy_server(comfy_dirs: SessionDirs) -> ComfyServer:
    server = ComfyServer.start(comfy_dirs)
    atexit.register(server.stop)  # also when the session dies before fixture teardown
    yield server
    server.stop()
