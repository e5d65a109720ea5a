"""A run folder's checkpoint: the trained weights (written by the model set-up), the optimiser state and a JSON
state, all safetensors + JSON (nothing pickled, even where torch offers it).

Files are staged under hidden names and renamed into place only once all of them are written, the JSON state
last: a failure half-way (disk full, killed) leaves the previous checkpoint whole, never a mix of two steps, and
no staged file survives a failed save. Only rank 0 writes; the caller makes every rank wait for it.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .. import checkpoint

log = logging.getLogger("microcinema.train")


@dataclass(frozen=True)
class RunFiles:
    """Names inside the run folder (the demo's two phases share one folder, so they prefix theirs)."""
    state: str = "trainer_state.json"
    optimizer: str = "optimizer.safetensors"
    log: str = "loss.jsonl"


class Stager:
    """Hands out staged paths; ``commit`` renames them all into place, ``discard`` deletes them."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.staged: list[tuple[Path, Path]] = []

    def __call__(self, name: str) -> str:
        self.staged.append((self.folder / f".{name}.staged-{os.getpid()}", self.folder / name))
        return str(self.staged[-1][0])

    def commit(self) -> None:
        for tmp, final in self.staged:
            os.replace(tmp, final)
        self.staged.clear()

    def discard(self) -> None:
        for tmp, _ in self.staged:
            tmp.unlink(missing_ok=True)
        self.staged.clear()


def save(folder: Path, files: RunFiles, write_weights: Callable[[Stager], None],
         optimizer: torch.optim.Optimizer, state: dict) -> list[Path]:
    """Writes the checkpoint; returns the weight files written (not the optimiser state nor the JSON)."""
    stager = Stager(folder)
    try:
        write_weights(stager)
        weights = [final for _, final in stager.staged]
        tensors, groups = flatten_optimizer(optimizer)
        checkpoint.write_safetensors_atomic(tensors, stager(files.optimizer), {"param_groups": json.dumps(groups)})
        stager.commit()
    except BaseException:
        stager.discard()
        raise
    # the JSON state goes last: a folder whose state names step k holds step k's weights and optimiser
    stager = Stager(folder)
    try:
        Path(stager(files.state)).write_text(json.dumps(state, indent=1))
        stager.commit()
    except BaseException:
        stager.discard()
        raise
    return weights


def read_state(folder: Path, files: RunFiles) -> dict | None:
    path = folder / files.state
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def restore_optimizer(folder: Path, files: RunFiles, optimizer: torch.optim.Optimizer) -> bool:
    path = folder / files.optimizer
    if not path.is_file():
        log.warning("%s is missing: the optimiser restarts from zero moments", path)
        return False
    tensors, meta = checkpoint.read_safetensors(str(path))
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    groups = json.loads(meta["param_groups"])
    current = optimizer.state_dict()["param_groups"]
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in current]:
        raise ValueError(f"{path}: its parameter groups do not match this run's trainable parameters "
                         "(was the run started with other training options?)")
    for saved, now in zip(groups, current):
        saved["params"] = now["params"]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return True


def flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict, list]:
    sd = optimizer.state_dict()
    tensors = {}
    for index, state in sd["state"].items():
        for name, value in state.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
    return tensors, sd["param_groups"]
