"""A latent cache: the VAE latents (fp16) and text embeddings of a dataset's clips, in safetensors shards, so that
a training step does no decoding, VAE or text-encoder work.

Layout of a cache folder:
    cache.json                 format, clip count, frames/size/stride/fps, base checkpoint name, shard list
    empty_context.safetensors  the embedding of "" (what a dropped caption trains with)
    shard-00000.safetensors    latents.<i> [T, 4, h, w] fp16 and context.<i> [L, D] fp16 for its clips; the
                               clips' names in its metadata
Each clip is cached with one window: the dataset's first ``frames`` frames (at the stride or fps asked). Entry i
of the cache is clip i of the source's index, so training from the cache visits the same clips, with the same
keyframes and caption drops (seeding.sample_choices), as training from the videos with ``window="first"``.
Written by ``python -m microcinema_core.precompute``.
"""
from __future__ import annotations

import bisect
import json
import logging
import os
from pathlib import Path

import torch

from .. import checkpoint
from . import seeding

log = logging.getLogger("microcinema.train")
FORMAT = "microcinema-latent-cache"
INDEX = "cache.json"


def is_cache(path: str | Path) -> bool:
    return (Path(path) / INDEX).is_file()


class CacheWriter:
    """Appends clips and writes a shard every ``shard_size`` clips; ``close`` writes the index last, so a folder
    with a cache.json is always complete."""

    def __init__(self, out: Path, shard_size: int, info: dict):
        self.out, self.shard_size, self.info = Path(out), shard_size, dict(info)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / INDEX).unlink(missing_ok=True)
        self.pending: dict[str, torch.Tensor] = {}
        self.names: list[str] = []
        self.shards: list[dict] = []

    def add(self, name: str, latents: torch.Tensor, context: torch.Tensor) -> None:
        i = len(self.names)
        self.pending[f"latents.{i}"] = latents.detach().to("cpu", torch.float16).contiguous()
        self.pending[f"context.{i}"] = context.detach().reshape(context.shape[-2:]).to("cpu", torch.float16).contiguous()
        self.names.append(name)
        if len(self.names) % self.shard_size == 0:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        first = self.shards[-1]["end"] if self.shards else 0
        name = f"shard-{len(self.shards):05d}.safetensors"
        checkpoint.write_safetensors_atomic(self.pending, str(self.out / name),
                                            {"names": json.dumps(self.names[first:])})
        self.shards.append({"file": name, "start": first, "end": len(self.names)})
        self.pending = {}

    def close(self, empty_context: torch.Tensor) -> Path:
        self._flush()
        if not self.names:
            raise ValueError(f"{self.out}: no clip was cached")
        checkpoint.write_safetensors_atomic(
            {"context": empty_context.detach().reshape(empty_context.shape[-2:]).to("cpu", torch.float16).contiguous()},
            str(self.out / "empty_context.safetensors"), {})
        index = {"format": FORMAT, "version": 1, "count": len(self.names), "shards": self.shards, **self.info}
        tmp = self.out / f".{INDEX}.staged-{os.getpid()}"
        tmp.write_text(json.dumps(index, indent=1))
        os.replace(tmp, self.out / INDEX)
        return self.out / INDEX


class CachedLatents(torch.utils.data.Dataset):
    """Samples over sample ordinals, like data.ClipDataset, but from a cache: {"latents", "context", ...}."""

    def __init__(self, folder: str | Path, keyframe: str = "center", text_dropout: float = 0.0, seed: int = 0):
        self.folder = Path(folder)
        index = json.loads((self.folder / INDEX).read_text())
        if index.get("format") != FORMAT:
            raise ValueError(f"{self.folder / INDEX}: not a MicroCinema latent cache")
        self.count, self.frames = int(index["count"]), int(index["frames"])
        self.shards = index["shards"]
        self.starts = [s["start"] for s in self.shards]
        self.keyframe, self.text_dropout, self.seed = keyframe, text_dropout, seed
        self._order: tuple[int, torch.Tensor] | None = None
        self._open: dict[int, object] = {}  # shard -> safe_open handle, opened lazily in each worker
        self._empty: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.count

    def _entry(self, n: int) -> int:
        epoch = n // self.count
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, seeding.epoch_order(self.seed, epoch, self.count))
        return int(self._order[1][n % self.count])

    def _shard(self, entry: int):
        from safetensors import safe_open

        shard = bisect.bisect_right(self.starts, entry) - 1
        if shard not in self._open:
            if len(self._open) >= 8:  # bounded: a worker keeps at most 8 shards mapped
                self._open.pop(next(iter(self._open)))
            self._open[shard] = safe_open(str(self.folder / self.shards[shard]["file"]), framework="pt")
        return self._open[shard]

    def empty_context(self) -> torch.Tensor:
        if self._empty is None:
            self._empty = checkpoint.read_safetensors(str(self.folder / "empty_context.safetensors"))[0]["context"]
        return self._empty

    def __getitem__(self, n: int) -> dict:
        entry = self._entry(n)
        handle = self._shard(entry)
        latents = handle.get_tensor(f"latents.{entry}")
        key, drop = seeding.sample_choices(self.seed, n, latents.shape[0], self.keyframe, self.text_dropout)
        context = self.empty_context() if drop else handle.get_tensor(f"context.{entry}")
        return {"latents": latents, "context": context, "key_index": key, "ordinal": n, "name": f"cache/{entry}",
                "skipped": []}

    def __getstate__(self) -> dict:  # workers open their own shard handles
        state = dict(self.__dict__)
        state["_open"] = {}
        return state
