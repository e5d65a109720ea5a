"""The diffusion training loss, shared by every trainer.

``mse``: the plain MSE between the prediction and the target (eps, or v for v-prediction bases), the paper's loss.
``snr20``: each sample's MSE weighted by 1 + min(1/SNR_t, 20), divided by the mean of that weight over all
timesteps. An error e in eps is an error e * sqrt(1/SNR) in the clean-image estimate: at SD's highest timesteps
(1/SNR ~ 200) a tiny eps error gives a wrong global colour, which a small model trained for minutes (the demo)
never fixes under the plain loss; the weight puts those steps first. The normaliser is a constant, not the batch's
own mean weight, so that the loss of a batch is the mean of its samples' losses: that is what makes 2 ranks x
batch 1 train exactly like 1 process x batch 2 under data-parallel gradient averaging.
"""
from __future__ import annotations

import torch

WEIGHTINGS = ("mse", "snr20")
SNR_WEIGHT_CAP = 20.0


def snr_weight(abar: torch.Tensor) -> torch.Tensor:
    return 1.0 + ((1.0 - abar) / abar).clamp(max=SNR_WEIGHT_CAP)


def diffusion_loss(pred: torch.Tensor, target: torch.Tensor, abar: torch.Tensor, weighting: str,
                   all_abar: torch.Tensor | None = None) -> torch.Tensor:
    """pred, target [N, C, h, w]; abar [N] (one per frame); all_abar: the schedule (for the snr20 normaliser)."""
    per_frame = ((pred.float() - target.float()) ** 2).mean(dim=(1, 2, 3))
    if weighting == "mse":
        return per_frame.mean()
    if weighting == "snr20":
        if all_abar is None:
            raise ValueError("the snr20 loss needs the whole alphas_cumprod schedule for its normaliser")
        norm = snr_weight(all_abar.double()).mean().float()
        return (snr_weight(abar).to(per_frame) * per_frame).mean() / norm.to(per_frame)
    raise ValueError(f"unknown loss weighting {weighting!r}: expected one of {', '.join(WEIGHTINGS)}")
