"""FVD: I3D features of clips and the Fréchet distance between the Gaussians fitted to two feature sets.

Preprocessing (as the common FVD code does): each frame is resized to ``size`` x ``size`` (224 for real FVD) with
bilinear interpolation, no crop (the aspect ratio is not kept, as in the TensorFlow reference and VideoGPT), and
RGB is scaled from [0, 255] to [-1, 1]. Features are I3D's 400 Kinetics logits before softmax (``logits``, the
default, what FVD implementations based on the TF-hub I3D compare) or the 1024-d pooled Mixed_5c output
(``pool``).

The Fréchet distance is computed in float64:
``||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2))``. S1 S2 is not symmetric, but it is similar to the
symmetric PSD matrix ``S1^(1/2) S2 S1^(1/2)``, which has the same eigenvalues; the trace of the square root is the
sum of the square roots of those eigenvalues, so two symmetric eigendecompositions (numpy's eigh) replace a general
matrix square root (scipy's sqrtm, kept out of the library).
"""
from __future__ import annotations

from typing import Iterable, Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from . import InputError
from .i3d import InceptionI3d

FeatureKind = Literal["logits", "pool"]
FVD_SIZE = 224  # what I3D was trained on and FVD is defined with; smaller sizes are for fast tests only


def i3d_input(clips: torch.Tensor | np.ndarray, size: int = FVD_SIZE) -> torch.Tensor:
    """uint8 (or float 0..255) clips [B, T, H, W, 3] -> float32 [B, 3, T, size, size] in [-1, 1]."""
    clips = torch.as_tensor(clips)
    batch = clips.shape[0]
    frames = rearrange(clips.float(), "b t h w c -> (b t) c h w")
    if frames.shape[-2:] != (size, size):
        frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    frames = frames / 127.5 - 1.0
    return rearrange(frames, "(b t) c h w -> b c t h w", b=batch)


class I3DFeatures:
    """Clip features from an I3D: ``features(clips)`` with clips uint8 [T, H, W, 3] (all of the same T), run in
    batches of ``batch_size``; returns float64 [N, D]. Batching does not change a clip's features (eval mode)."""

    def __init__(self, model: InceptionI3d, kind: FeatureKind = "logits", size: int = FVD_SIZE,
                 batch_size: int = 4, device: str | torch.device | None = None):
        if kind not in ("logits", "pool"):
            raise ValueError(f"unknown I3D feature kind {kind!r} (logits or pool)")
        self.model = model.eval()
        self.kind, self.size, self.batch_size = kind, size, max(1, batch_size)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device

    @property
    def dim(self) -> int:
        return self.model.num_classes if self.kind == "logits" else self.model.logits.conv3d.in_channels

    @torch.no_grad()
    def _run(self, batch: list[np.ndarray]) -> np.ndarray:
        x = i3d_input(np.stack(batch), self.size).to(self.device)
        pooled, logits = self.model(x)
        return (logits if self.kind == "logits" else pooled).double().cpu().numpy()

    def features(self, clips: Iterable[np.ndarray]) -> np.ndarray:
        out = [self._run(batch) for batch in _batches(clips, self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim))


def _batches(items: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased, N - 1) of features [N, D] in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise InputError(f"FVD needs at least 2 videos per set (got {features.shape[0] if features.ndim else 0})")
    return features.mean(axis=0), np.cov(features, rowvar=False, ddof=1).reshape(features.shape[1],
                                                                                   features.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^(1/2)) for covariance matrices S1, S2 (symmetric PSD, possibly rank-deficient)."""
    root = _psd_sqrt(sigma1)
    inner = root @ sigma2 @ root
    values = np.linalg.eigvalsh((inner + inner.T) / 2)
    # Round-off leaves the true zero eigenvalues (rank-deficient covariances: fewer videos than feature
    # dimensions) at +-D*eps*max; their square roots (1e-8 * max each, hundreds of them) would swamp a distance
    # that is truly 0, so eigenvalues below that level count as zero.
    tolerance = max(values.max(initial=0.0), 0.0) * len(values) * np.finfo(np.float64).eps
    values = np.where(values > tolerance, values, 0.0)
    return float(np.sqrt(values).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2))
    # Exact arithmetic gives >= 0; a tiny negative is round-off around an identical pair of sets.
    return max(value, 0.0)


def frechet_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """The Fréchet distance between the Gaussians fitted to two feature sets [N1, D] and [N2, D]."""
    if np.shape(features1)[1:] != np.shape(features2)[1:]:
        raise ValueError(f"feature sizes differ: {np.shape(features1)} vs {np.shape(features2)}")
    return frechet_distance(*gaussian_stats(features1), *gaussian_stats(features2))
