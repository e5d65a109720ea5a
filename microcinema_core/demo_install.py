"""Putting the demo models (and the example keyframe) into a user's ComfyUI: missing files are created, an
existing file is never changed.

The target paths come from the caller (``scripts/install_demo_models.py`` asks ComfyUI's folder_paths). Per file:

* missing: built, then put in place without clobbering (a file that appears meanwhile is not replaced);
* present, and its metadata names this very build (``demo.BUILD_KEY``): up to date, nothing is built;
* present otherwise: built into a staging folder and compared by content: tensors and metadata, the build
  fingerprint aside (safetensors writes its metadata in a per-process order, so equal files need not be equal
  bytes). The same content is up to date; anything else is refused, naming the file, before anything is written.
"""
from __future__ import annotations

import filecmp
import json
import logging
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Callable

log = logging.getLogger("microcinema.demo_install")

INSTALLED = "installed"
UP_TO_DATE = "up to date"
_MAX_HEADER = 100 * 2**20  # larger "headers" mean the file is not safetensors at all
_CHUNK = 16 * 2**20


class DemoFileConflict(RuntimeError):
    """Files in the way: they exist and differ from what would be installed. Nothing of theirs was touched."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        lines = [f"{path} already exists and is not the file this version of ComfyUI-MicroCinema installs"
                 f"{' (an earlier build of the demo)' if _is_demo_build(path) else ''}" for path in paths]
        super().__init__("\n".join(lines) + "\nIt was left as it is. Move or rename it and run the command again "
                         "(or keep it and pick your files in the workflows' loaders).")


def safetensors_header(path: Path) -> dict | None:
    """The JSON header of a safetensors file, or None when the file is not one (or cannot be read)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                return None
            (size,) = struct.unpack("<Q", raw)
            if size > min(_MAX_HEADER, os.path.getsize(path) - 8):
                return None
            header = json.loads(f.read(size))
    except (OSError, ValueError):
        return None
    return header if isinstance(header, dict) else None


def safetensors_metadata(path: Path) -> dict[str, str]:
    header = safetensors_header(path)
    meta = header.get("__metadata__") if header else None
    return meta if isinstance(meta, dict) else {}


def _is_demo_build(path: Path) -> bool:
    from .demo import BUILD_KEY

    meta = safetensors_metadata(path)
    return BUILD_KEY in meta or meta.get("generator") == "ComfyUI-MicroCinema demo" or \
        meta.get("note", "").endswith("trained demo module")


def same_safetensors(a: Path, b: Path, ignore: tuple[str, ...] = ()) -> bool:
    """Same tensors (names, dtypes, shapes, bytes) and same metadata, keys in ``ignore`` aside."""
    headers = [safetensors_header(a), safetensors_header(b)]
    if headers[0] is None or headers[1] is None:
        return False
    metas = [{k: v for k, v in (h.pop("__metadata__", None) or {}).items() if k not in ignore} for h in headers]
    if metas[0] != metas[1] or headers[0] != headers[1]:
        return False
    # equal headers give equal offsets: the data sections must be byte for byte the same
    starts = []
    for path in (a, b):
        with open(path, "rb") as f:
            starts.append(8 + struct.unpack("<Q", f.read(8))[0])
    if os.path.getsize(a) - starts[0] != os.path.getsize(b) - starts[1]:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        fa.seek(starts[0])
        fb.seek(starts[1])
        while True:
            chunk = fa.read(_CHUNK)
            if chunk != fb.read(_CHUNK):
                return False
            if not chunk:
                return True


def same_bytes(a: Path, b: Path) -> bool:
    try:
        return b.is_file() and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def install_file(source: Path, target: Path, same: Callable[[Path, Path], bool] = same_bytes,
                 move: bool = False) -> str:
    """``source`` at ``target`` unless a file is there: INSTALLED, UP_TO_DATE (the same content), or
    DemoFileConflict. ``move``: ``source`` is a staged file that may be moved instead of copied."""
    if target.exists() or target.is_symlink():
        if same(source, target):
            return UP_TO_DATE
        raise DemoFileConflict([target])
    target.parent.mkdir(parents=True, exist_ok=True)
    # a hidden name without a model extension while it is written: a running ComfyUI does not list it
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        if move:
            shutil.move(str(source), str(partial))
        else:
            shutil.copyfile(source, partial)
        os.chmod(partial, 0o644)
        try:
            os.link(partial, target)  # fails if the target appeared meanwhile: never clobbers
        except FileExistsError:
            raise DemoFileConflict([target]) from None
        except OSError:  # a filesystem without hard links
            if target.exists():
                raise DemoFileConflict([target]) from None
            os.replace(partial, target)
    finally:
        if partial.exists():
            partial.unlink()
    return INSTALLED


def install(targets: dict[str, Path], untrained: bool = False,
            build: Callable[[Path, Path], None] | None = None, fingerprint: str | None = None) -> dict[str, str]:
    """Install the demo files at ``targets`` ({"checkpoint": path, "module": path}); {kind: INSTALLED or
    UP_TO_DATE}. Raises DemoFileConflict (nothing written) when a target holds another file.
    ``build``/``fingerprint``: demo.write_demo_files / demo.build_fingerprint unless given (tests)."""
    from . import demo

    if build is None:
        def build(checkpoint_path: Path, module_path: Path) -> None:
            demo.write_demo_files(checkpoint_path, module_path, untrained)
    fingerprint = fingerprint if fingerprint is not None else demo.build_fingerprint(untrained)
    status: dict[str, str] = {}
    pending: dict[str, Path] = {}
    for kind, target in targets.items():
        if target.is_file() and safetensors_metadata(target).get(demo.BUILD_KEY) == fingerprint:
            status[kind] = UP_TO_DATE
        else:
            pending[kind] = target
    if not pending:
        return status

    for target in targets.values():
        target.parent.mkdir(parents=True, exist_ok=True)
    # staged next to a target: moving the built file into place is then a rename, not a 300 MB copy
    staging = Path(tempfile.mkdtemp(prefix=".microcinema-demo-", dir=targets["checkpoint"].parent))
    try:
        # no model extension on the staged names: a running ComfyUI's file lists never show them
        staged = {kind: staging / f"{kind}.partial" for kind in ("checkpoint", "module")}
        log.info("building the demo models (about 370 MB; a minute at most)")
        build(staged["checkpoint"], staged["module"])

        def same(a: Path, b: Path) -> bool:
            return same_safetensors(a, b, ignore=(demo.BUILD_KEY,))

        conflicts = [t for kind, t in pending.items() if (t.exists() or t.is_symlink()) and not same(staged[kind], t)]
        if conflicts:
            raise DemoFileConflict(conflicts)
        for kind, target in pending.items():
            status[kind] = install_file(staged[kind], target, same, move=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {kind: status[kind] for kind in targets}
