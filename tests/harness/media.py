"""Small deterministic input images for graphs (written into the session input folder, read by LoadImage)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_test_image(folder: Path, name: str, width: int = 32, height: int = 32, seed: int = 0) -> str:
    """A smooth colour gradient plus a seeded pattern, saved as PNG; returns the file name for LoadImage."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    channels = [0.5 + 0.5 * np.sin(x / width * 2 * np.pi + phase[c]) * np.cos(y / height * np.pi + phase[c])
                for c in range(3)]
    pixels = (np.stack(channels, axis=-1) * 255).round().clip(0, 255).astype(np.uint8)
    path = folder / name
    Image.fromarray(pixels, "RGB").save(path)
    return path.name
