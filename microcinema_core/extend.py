"""Extending a clip: each round samples one new clip whose first frame is the previous clip's last frame
(Image To Video with keyframe_position "first"), and the join drops that first frame, so no frame repeats.

Frames are IMAGE batches [N, H, W, C] holding ``videos`` videos one after another (as the sampler and VAE Decode
give them); every function works per video.
"""
from __future__ import annotations

import torch
from einops import rearrange

EXTEND = "MicroCinema Extend Video"
LAST_FRAME = "MicroCinema Last Frame"


def _per_video(frames: torch.Tensor, videos: int, node: str, name: str) -> torch.Tensor:
    """[N, H, W, C] -> [videos, N / videos, H, W, C], or ValueError naming the input."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[0] < 1:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"{node}, input '{name}': expected an IMAGE batch of frames [frames, height, width, "
                         f"channels], got {shape}")
    if frames.shape[0] % videos != 0:
        raise ValueError(f"{node}, input '{name}': {frames.shape[0]} frames cannot be split into {videos} videos "
                         "of equal length (input 'videos')")
    return rearrange(frames, "(b t) h w c -> b t h w c", b=videos)


def last_frames(frames: torch.Tensor, videos: int = 1, node: str = LAST_FRAME) -> torch.Tensor:
    """The last frame of each video: [videos, H, W, C] (the keyframes of the next round)."""
    return _per_video(frames, videos, node, "images")[:, -1].clone()


def join_clips(video: torch.Tensor, clip: torch.Tensor, videos: int = 1, node: str = EXTEND) -> torch.Tensor:
    """Each video of ``video`` followed by the same video of ``clip`` without the clip's first frame (which
    re-generates the keyframe, i.e. the video's last frame): T_video + T_clip - 1 frames per video."""
    so_far = _per_video(video, videos, node, "video")
    new = _per_video(clip, videos, node, "clip")
    if so_far.shape[2:] != new.shape[2:]:
        raise ValueError(f"{node}, input 'clip': its frames are {new.shape[3]}x{new.shape[2]} with {new.shape[4]} "
                         f"channels, the video's are {so_far.shape[3]}x{so_far.shape[2]} with {so_far.shape[4]}; "
                         "sample the new clip at the video's size")
    joined = torch.cat([so_far, new[:, 1:].to(so_far)], dim=1)
    return rearrange(joined, "b t h w c -> (b t) h w c")
