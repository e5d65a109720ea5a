"""Where things are: the pack, the ComfyUI checkout under test, the model cache, per-session folders.

Nothing here imports ComfyUI or the pack, so server-only test runs stay cheap.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACK_NAME = "ComfyUI-MicroCinema"
# Generated test models are cached here (git-ignored) so every session after the first only reads them.
MODEL_CACHE = REPO_ROOT / ".cache" / "test_models"

# Model folders the tests redirect to a session temp dir. The pack's own folders are included so nothing a
# test does can read a user's real models or write next to them.
MODEL_FOLDERS = (
    "checkpoints",
    "vae",
    "loras",
    "controlnet",
    "upscale_models",
    "clip_vision",
    "embeddings",
    "microcinema",
    "animatediff_models",
)


def comfyui_path() -> Path:
    """COMFYUI_PATH wins; otherwise the checkout scripts/bootstrap.sh recorded; otherwise its default place.

    Kept in sync by hand with microcinema_core/comfy_env.py on purpose: importing pack modules outside
    ComfyUI's loader would create a second copy of them under another module name. One difference, on purpose:
    comfy_env also finds the ComfyUI whose custom_nodes/ holds the pack (a user's install, which has no record);
    the tests always run against the ComfyUI that bootstrap set up for this checkout's virtual environment.
    """
    env = os.environ.get("COMFYUI_PATH")
    if env:
        return Path(env).resolve()
    recorded = REPO_ROOT / ".comfyui" / "comfyui_path.txt"
    if recorded.is_file():
        return Path(recorded.read_text().strip())
    return REPO_ROOT / ".comfyui" / "ComfyUI"


def pack_custom_nodes_dir() -> Path:
    """A folder holding only a link to this pack (made by bootstrap), usable as a custom_nodes folder."""
    return REPO_ROOT / ".comfyui" / "custom_nodes"


def pack_module_path() -> Path:
    """The path ComfyUI would load the pack from: the link in .comfyui/custom_nodes when bootstrap made it
    (so the module is named after the pack folder as in a real install), else the repository itself."""
    link = pack_custom_nodes_dir() / PACK_NAME
    if link.exists() and link.resolve() == REPO_ROOT:
        return link
    return REPO_ROOT


def venv_python() -> str:
    """The interpreter running the tests is the one bootstrap prepared; servers reuse it."""
    return sys.executable


@dataclass(frozen=True)
class SessionDirs:
    """Per-session folders that stand in for ComfyUI's models/, input/, output/, temp/ and user/."""

    root: Path
    models: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path) -> "SessionDirs":
        models = {name: root / "models" / name for name in MODEL_FOLDERS}
        dirs = cls(root=root, models=models)
        for path in [*models.values(), dirs.input, dirs.output, dirs.temp, dirs.user]:
            path.mkdir(parents=True, exist_ok=True)
        return dirs

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def temp(self) -> Path:
        return self.root / "temp"

    @property
    def user(self) -> Path:
        return self.root / "user"

    @property
    def empty_front_end(self) -> Path:
        path = self.root / "empty_front_end"
        path.mkdir(exist_ok=True)
        return path

    def place_model(self, folder: str, source: Path, name: str | None = None) -> str:
        """Make a cached model file visible in a model folder without copying it. Returns the file name that
        loader nodes take.

        A hard link where possible: it keeps the file alive for the session even when another test process
        replaces or prunes the cache entry meanwhile (a symlink would dangle). A symlink across filesystems."""
        target = self.models[folder] / (name or source.name)
        if target.is_symlink() or target.exists():
            if target.exists() and os.path.samefile(target, source):
                return target.name
            target.unlink()  # a stale or dangling link from an earlier call
        try:
            os.link(source, target)
        except OSError:
            target.symlink_to(source.resolve())
        return target.name
