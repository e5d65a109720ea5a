"""Validation during training: every N steps rank 0 animates a fixed set of keyframe + prompt pairs with the
current weights (the EMA weights, the raw ones, or both) through ``sampling.animate`` (the function the nodes
call), writes each video as an mp4 and one contact-sheet PNG per set of weights, and logs figures computed from
the written files (decoded back, so the numbers are those of the files a user looks at):

- keyframe_ssim: SSIM (video_metrics.keyframe_ssim) of the frame at the keyframe position against the keyframe as
  the VAE reproduces it (written next to the video as NN_<name>_keyframe.png);
- motion: mean absolute change between consecutive frames (0..1 pixel units): a model that stopped animating
  shows ~0, one that lost the scene shows large values;
- direction_accuracy: for prompts of the form "a <colour> <shape> moving <direction>" (the synthetic shapes data),
  the share of videos whose object moves that way (video_metrics.moves_as_prompted); null otherwise.

Pairs come from ``source``: a folder of keyframe images with same-named .txt prompts; ``synthetic:N`` (N held-out
synthetic clips, drawn from a seed training never uses); ``holdout`` (the clips the training dataset holds out,
``--val-holdout K``: the last K of its index, never trained on); or any other clip source (its first usable
clips). From clips, the keyframe is the window's centre frame and the prompt the caption.
Outputs: <run>/validation/step-0000250/<weights>/NN_<name>.mp4, NN_<name>_keyframe.png and contact_sheet.png;
<run>/validation.jsonl.
"""
from __future__ import annotations

import copy
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import sampling
from . import video_metrics
from .video_decode import image_to_uint8, open_clip, write_video

log = logging.getLogger("microcinema.train")
SYNTHETIC_PROMPT = re.compile(r"^a (\w+) (\w+) moving (\w+)$")
HELD_OUT_SEED = 987654321  # synthetic validation clips: a seed no training run draws its samples from


@dataclass
class ValidationConfig:
    every: int = 0            # steps between validations (0: never); the last step is always validated
    source: str = ""
    count: int = 4            # pairs taken from the source
    frames: int = 16
    width: int = 256
    height: int = 256
    keyframe: str = "center"  # where the keyframe sits in the sampled clip: center | first | last
    sampling_steps: int = 20
    cfg: float = 7.5
    gamma: float = 0.02
    seed: int = 0
    weights: str = "ema"      # ema | raw | both (ema falls back to raw when the run keeps no EMA)
    fps: float = 8.0


@dataclass
class Pair:
    name: str
    keyframe: np.ndarray      # [H, W, 3] float in [0, 1]
    prompt: str


def load_pairs(cfg: ValidationConfig, training_data=None) -> list[Pair]:
    source = cfg.source
    if source.startswith("synthetic:"):
        return _synthetic_pairs(int(source.split(":", 1)[1] or cfg.count), cfg)
    folder = Path(source)
    if folder.is_dir():
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")
                        and p.with_suffix(".txt").is_file())
        if images:
            from PIL import Image

            return [Pair(p.stem, np.asarray(Image.open(p).convert("RGB"), np.float32) / 255.0,
                         p.with_suffix(".txt").read_text().strip()) for p in images[:cfg.count]]
    return _clip_pairs(cfg, training_data)


def _synthetic_pairs(count: int, cfg: ValidationConfig) -> list[Pair]:
    import random

    from . import synthetic

    rng = random.Random(HELD_OUT_SEED)
    pairs = []
    for i in range(count):
        spec = synthetic.random_spec(rng, cfg.frames)
        key = sampling_key_index(cfg)
        frame = synthetic.render_frame(spec, key, min(cfg.width, cfg.height))
        pairs.append(Pair(f"synthetic{i:02d}", frame.astype(np.float32) / 255.0, spec.caption))
    return pairs


def _clip_pairs(cfg: ValidationConfig, training_data=None) -> list[Pair]:
    """Clips of a source; ``holdout`` takes the clips the training dataset holds out (its last ones)."""
    from .data import ClipDataset

    if cfg.source == "holdout":
        if training_data is None or not getattr(training_data, "holdout", 0):
            raise ValueError("--val-data holdout needs --val-holdout K > 0 and a clip source as --data")
        clips = copy.copy(training_data)  # the same index, read without caption dropout, from each clip's start
        clips.text_dropout, clips.window_mode = 0.0, "first"
        numbers = training_data.held_out()
    else:
        clips = ClipDataset(cfg.source, frames=cfg.frames, size=min(cfg.width, cfg.height), window="first")
        numbers = range(len(clips))
    pairs = []
    for i in numbers:
        sample = clips.clip_sample(i, i)
        if sample["frames"] is None or not sample["caption"]:
            continue
        frame = sample["frames"][len(sample["frames"]) // 2].numpy().astype(np.float32) / 255.0
        pairs.append(Pair(Path(sample["name"]).stem, frame, sample["caption"]))
        if len(pairs) == cfg.count:
            break
    if not pairs:
        raise ValueError(f"--val-data {cfg.source}: no usable keyframe + prompt pair (images with .txt prompts, "
                         "synthetic:N, or captioned clips)")
    return pairs


def sampling_key_index(cfg: ValidationConfig) -> int:
    from ..noise_prior import keyframe_index

    return keyframe_index(cfg.keyframe, cfg.frames)


def motion(frames: np.ndarray) -> float:
    return float(np.abs(np.diff(frames.astype(np.float64), axis=0)).mean()) if len(frames) > 1 else 0.0


def direction_ok(frames: np.ndarray, prompt: str) -> bool | None:
    from . import synthetic

    match = SYNTHETIC_PROMPT.match(prompt)
    if not match or match[1] not in synthetic.COLOURS or match[3] not in synthetic.DIRECTIONS:
        return None
    return video_metrics.moves_as_prompted(frames, synthetic.COLOURS[match[1]], synthetic.DIRECTIONS[match[3]])


def contact_sheet(videos: list[np.ndarray]) -> np.ndarray:
    """One row per video, one column per frame (uint8)."""
    rows = [np.concatenate(list(v), axis=1) for v in videos]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0)


def reference_keyframe(vae, keyframe: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 [height, width, 3]: the keyframe as the VAE reproduces it (resized as the nodes do, encoded, decoded).
    A video can at best show its keyframe the way the VAE decodes it, so SSIM against this reference measures the
    model, not the autoencoder (the demo's pooling VAE alone turns a sharp keyframe into 8x8 blocks)."""
    pixels = sampling.prepare_keyframes(torch.from_numpy(keyframe)[None], width, height)
    decoded = vae.decode(vae.encode(pixels)).reshape(-1, height, width, 3)[0]
    return image_to_uint8(decoded)


def score_files(files: list[Path], references: list[Path], pairs: list[Pair], key: int) -> dict:
    """The logged figures, computed from the written files: each mp4 and its keyframe reference PNG."""
    from PIL import Image

    samples, decoded = [], []
    for path, reference, pair in zip(files, references, pairs):
        with open_clip(str(path)) as reader:
            frames = reader.read_all().astype(np.float32) / 255.0
        decoded.append(frames)
        keyframe = np.asarray(Image.open(reference).convert("RGB"), np.float32) / 255.0
        samples.append({"name": pair.name, "prompt": pair.prompt, "file": path.name, "keyframe": reference.name,
                        "keyframe_ssim": video_metrics.keyframe_ssim(frames[key], keyframe),
                        "motion": motion(frames), "moves_as_prompted": direction_ok(frames, pair.prompt)})
    judged = [s["moves_as_prompted"] for s in samples if s["moves_as_prompted"] is not None]
    return {"keyframe_ssim": float(np.mean([s["keyframe_ssim"] for s in samples])),
            "motion": float(np.mean([s["motion"] for s in samples])),
            "direction_accuracy": float(np.mean(judged)) if judged else None,
            "samples": samples, "decoded": decoded}


class Validator:
    def __init__(self, cfg: ValidationConfig, out: Path, training_data=None):
        if cfg.weights not in ("ema", "raw", "both"):
            raise ValueError(f"--val-weights {cfg.weights!r}: expected ema, raw or both")
        if cfg.width % 16 or cfg.height % 16:
            raise ValueError(f"--val-width/--val-height must be multiples of 16 (the mp4 encoder's and the VAE's "
                             f"cells), got {cfg.width}x{cfg.height}")
        self.cfg, self.out = cfg, Path(out)
        self.pairs = load_pairs(cfg, training_data)
        self.key = sampling_key_index(cfg)

    @classmethod
    def on_other_rank(cls, every: int) -> "Validator":
        """What ranks other than 0 hold: the schedule only (they wait at the barrier while rank 0 samples)."""
        validator = cls.__new__(cls)
        validator.cfg = ValidationConfig(every=every)
        return validator

    def due(self, step: int, total: int) -> bool:
        return self.cfg.every > 0 and (step % self.cfg.every == 0 or step == total)

    def chosen(self, available: dict) -> dict:
        if self.cfg.weights == "both":
            return available
        name = self.cfg.weights if self.cfg.weights in available else "raw"
        return {name: available[name]}

    def run(self, loop, available: dict) -> list[dict]:
        results = []
        with torch.no_grad():
            for name, weights in self.chosen(available).items():
                results.append(self._run_one(loop, name, weights))
        return results

    def _run_one(self, loop, name: str, weights) -> dict:
        from PIL import Image

        cfg, step = self.cfg, loop.step
        folder = self.out / "validation" / f"step-{step:07d}" / name
        folder.mkdir(parents=True, exist_ok=True)
        model, clip, vae = loop.setup.sampling_model(weights)
        negative = sampling.text_conditioning(clip, "")
        files, references = [], []
        for i, pair in enumerate(self.pairs):
            frames, _ = sampling.animate(
                model, sampling.text_conditioning(clip, pair.prompt), negative, vae,
                torch.from_numpy(pair.keyframe)[None], width=cfg.width, height=cfg.height, length=cfg.frames,
                seed=cfg.seed + i, steps=cfg.sampling_steps, cfg=cfg.cfg, keyframe_position="index",
                keyframe_index=self.key, noise_prior_gamma=cfg.gamma, frame_rate=cfg.fps)
            pixels = image_to_uint8(frames)
            path = folder / f"{i:02d}_{pair.name}.mp4"
            write_video(str(path), list(pixels), cfg.fps, codec="libx264")
            files.append(path)
            references.append(folder / f"{i:02d}_{pair.name}_keyframe.png")
            Image.fromarray(reference_keyframe(vae, pair.keyframe, cfg.width, cfg.height)).save(references[-1])
        scores = score_files(files, references, self.pairs, self.key)
        sheet = contact_sheet([(v * 255).round().astype(np.uint8) for v in scores.pop("decoded")])
        Image.fromarray(sheet).save(folder / "contact_sheet.png")
        entry = {"step": step, "weights": name, "folder": str(folder.relative_to(self.out)), **scores}
        with open(self.out / "validation.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")
        log.info("validation step %d (%s weights): keyframe SSIM %.3f, motion %.4f, direction %s", step, name,
                 entry["keyframe_ssim"], entry["motion"], entry["direction_accuracy"])
        return entry
