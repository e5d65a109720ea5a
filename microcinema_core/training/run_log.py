"""Rank 0's training log: one JSON line per logged step (loss.jsonl) and, where the tensorboard package is
installed, the same scalars as TensorBoard events under <run>/tensorboard (an optional extra, never required)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger("microcinema.train")


class RunLog:
    def __init__(self, path: Path, tensorboard: str = "auto"):
        self.file = open(path, "a")
        self.writer = None
        if tensorboard != "no":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the tensorboard package is missing
                if tensorboard == "yes":
                    raise ValueError("--tensorboard yes needs the tensorboard package: "
                                     "pip install -r requirements-train.txt") from None
            else:
                self.writer = SummaryWriter(str(path.parent / "tensorboard"))

    def write(self, entry: dict, prefix: str = "train") -> None:
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()
        if self.writer is not None:
            for key, value in entry.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(f"{prefix}/{key}", value, entry["step"])
            self.writer.flush()

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()
