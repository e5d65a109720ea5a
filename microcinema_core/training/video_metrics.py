"""Scores for generated clips of the synthetic shapes data (demo tests and the noise-prior ablation).

- ``object_centroid``: where the prompted object is in a frame (pixels near its colour, weighted by closeness);
- ``keyframe_ssim``: SSIM (kornia) of the frame at the keyframe position against the keyframe;
- ``clip_features``: a small feature space of our own for a clip (motion energy, flicker, velocity of the object
  along and across the prompted direction, its area and how much that area changes);
- ``frechet_distance``: Frechet distance between two sets of such features (as FVD does with I3D features).

Frames are [T, H, W, 3] float arrays in [0, 1] (ComfyUI IMAGE layout).
"""
from __future__ import annotations

import numpy as np
import torch

CLOSE = 0.35  # colour distance at which a pixel stops counting as the object


def object_weights(frame: np.ndarray, colour_rgb255) -> np.ndarray:
    target = np.asarray(colour_rgb255, np.float32) / 255.0
    return np.clip(1.0 - np.linalg.norm(frame - target, axis=-1) / CLOSE, 0.0, None)


def object_centroid(frame: np.ndarray, colour_rgb255) -> tuple[float, float] | None:
    """(x, y) in pixels, or None when nothing in the frame is close to the colour."""
    weight = object_weights(frame, colour_rgb255)
    total = weight.sum()
    if total < 1e-3:
        return None
    ys, xs = np.mgrid[0:frame.shape[0], 0:frame.shape[1]] + 0.5
    return float((xs * weight).sum() / total), float((ys * weight).sum() / total)


def displacement(clip: np.ndarray, colour_rgb255, direction: tuple[int, int]) -> tuple[float, float] | None:
    """(along, across) movement in pixels of the object from the first to the last frame."""
    first, last = object_centroid(clip[0], colour_rgb255), object_centroid(clip[-1], colour_rgb255)
    if first is None or last is None:
        return None
    dx, dy = last[0] - first[0], last[1] - first[1]
    return dx * direction[0] + dy * direction[1], abs(dx * direction[1]) + abs(dy * direction[0])


def moves_as_prompted(clip: np.ndarray, colour_rgb255, direction: tuple[int, int], min_pixels: float = 1.0) -> bool:
    moved = displacement(clip, colour_rgb255, direction)
    return moved is not None and moved[0] > min_pixels and moved[0] > moved[1]


def keyframe_ssim(frame: np.ndarray, keyframe: np.ndarray) -> float:
    import kornia

    a = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
    b = torch.from_numpy(np.ascontiguousarray(keyframe)).permute(2, 0, 1)[None].float()
    return float(kornia.metrics.ssim(a, b, window_size=7).mean())


def clip_features(clip: np.ndarray, colour_rgb255, direction: tuple[int, int]) -> np.ndarray:
    frames = clip.astype(np.float64)
    steps = len(frames) - 1
    energy = np.abs(np.diff(frames, axis=0)).mean()
    flicker = np.abs(np.diff(frames, n=2, axis=0)).mean() if len(frames) > 2 else 0.0
    moved = displacement(clip, colour_rgb255, direction) or (0.0, 0.0)
    areas = np.array([object_weights(f, colour_rgb255).mean() for f in clip])
    area_change = areas.std() / max(areas.mean(), 1e-6)
    return np.array([energy, flicker, moved[0] / steps, moved[1] / steps, areas.mean(), area_change])


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) for feature rows a [N, D] and b [M, D]."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # (S_a S_b)^1/2 has the trace of (S_a^1/2 S_b S_a^1/2)^1/2, a symmetric PSD matrix: eigenvalues suffice
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = np.linalg.eigvalsh(root_a @ s_b @ root_a)
    cross = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * cross)
