"""Synthetic captioned videos: a coloured shape on a textured background moving in a named direction.

    python -m microcinema_core.training.synthetic --out data/shapes --count 200

Each clip is a folder of PNG frames plus ``caption.txt`` (e.g. "a red circle moving left"), the layout
``data.ClipDataset`` reads. Deterministic for a seed.
"""
from __future__ import annotations

import argparse
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (235, 210, 40),
           "white": (240, 240, 240)}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
BACKGROUNDS = ((30, 30, 40), (70, 50, 90), (20, 70, 70), (90, 80, 60))


@dataclass
class ClipSpec:
    shape: str
    colour: str
    direction: str
    start: tuple[float, float]   # centre, in units of the frame size
    speed: float                 # frame sizes per frame
    radius: float                # frame sizes
    background: tuple[int, int, int]
    stripes: int                 # background texture frequency (0 = plain)

    @property
    def caption(self) -> str:
        return f"a {self.colour} {self.shape} moving {self.direction}"


def random_spec(rng: random.Random, frames: int) -> ClipSpec:
    direction = rng.choice(list(DIRECTIONS))
    speed = rng.uniform(0.025, 0.045)
    dx, dy = DIRECTIONS[direction]
    travel = speed * (frames - 1)
    # start so that the whole path stays inside the frame
    def axis(d: int) -> float:
        lo, hi = 0.22, 0.78
        if d > 0:
            return rng.uniform(lo, hi - travel)
        if d < 0:
            return rng.uniform(lo + travel, hi)
        return rng.uniform(lo, hi)
    return ClipSpec(shape=rng.choice(SHAPES), colour=rng.choice(list(COLOURS)), direction=direction,
                    start=(axis(dx), axis(dy)), speed=speed, radius=rng.uniform(0.12, 0.18),
                    background=rng.choice(BACKGROUNDS), stripes=rng.choice((0, 3, 5)))


def render_frame(spec: ClipSpec, t: int, size: int) -> np.ndarray:
    dx, dy = DIRECTIONS[spec.direction]
    cx = (spec.start[0] + dx * spec.speed * t) * size
    cy = (spec.start[1] + dy * spec.speed * t) * size
    r = spec.radius * size
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    image = np.empty((size, size, 3), np.float32)
    image[:] = spec.background
    if spec.stripes:
        wave = 0.5 + 0.5 * np.sin(2 * math.pi * spec.stripes * (xs + ys) / size)
        image += 25.0 * wave[..., None]
    if spec.shape == "circle":
        inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    elif spec.shape == "square":
        inside = (np.abs(xs - cx) <= r * 0.85) & (np.abs(ys - cy) <= r * 0.85)
    else:  # triangle pointing up
        inside = (ys >= cy - r) & (ys <= cy + r * 0.8) & (np.abs(xs - cx) <= (ys - (cy - r)) * 0.6)
    image[inside] = COLOURS[spec.colour]
    return np.clip(image, 0, 255).astype(np.uint8)


def render_clip(spec: ClipSpec, frames: int, size: int) -> np.ndarray:
    """[T, H, W, 3] uint8: the clip's first ``frames`` frames."""
    return np.stack([render_frame(spec, t, size) for t in range(frames)])


def write_dataset(out: Path, count: int, frames: int = 16, size: int = 64, seed: int = 0) -> list[ClipSpec]:
    rng = random.Random(seed)
    specs = []
    for i in range(count):
        spec = random_spec(rng, frames)
        folder = out / f"clip_{i:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for t in range(frames):
            Image.fromarray(render_frame(spec, t, size)).save(folder / f"{t:03d}.png")
        (folder / "caption.txt").write_text(spec.caption + "\n")
        specs.append(spec)
    return specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_dataset(args.out, args.count, args.frames, args.size, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
