"""Batch isolation: frames travel in the batch dimension ([(groups * videos * T), ...]), so the temporal layers
must regroup exactly per video. With every MicroCinema weight random (temporal convs, motion modules, SPADE and
attention injection, AppearNet), a video's output never depends on another video of the batch, bit for bit;
ComfyUI's cond/uncond halves (batch = [cond videos..., uncond videos...]) are independent; and within one video
the temporal layers do mix frames.
"""
from __future__ import annotations

import pytest
import torch

from pack_import import randomize, single_thread_fixture, sub, tiny_unet

FRAMES, SIZE = 4, 8


_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread_fixture)


def _video_model(module_cfg: dict, seed: int = 40):
    import comfy.ops

    module_mod, video_unet = sub("module"), sub("video_unet")
    unet = tiny_unet(seed=seed)
    module = module_mod.build_module(unet, module_mod.ModuleConfig(**module_cfg), comfy.ops.manual_cast)
    randomize(module, seed=seed + 1, std=0.1)
    return video_unet.VideoUNet(unet, module)


@pytest.fixture(scope="module")
def model(mc):
    return _video_model({})


def _batch(videos: int, seed: int, strength: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    n = videos * FRAMES
    return {
        "x": torch.randn(n, 4, SIZE, SIZE, generator=g),
        "timesteps": (torch.rand(videos, generator=g) * 999).repeat_interleave(FRAMES),
        "context": torch.randn(n, 5, 64, generator=g),
        "mc_hint": torch.randn(n, 6, SIZE, SIZE, generator=g),
        "mc_strength": torch.full((n,), strength),
    }


def _run(model, batch):
    with torch.no_grad():
        return model(batch["x"], batch["timesteps"], batch["context"], mc_num_frames=FRAMES,
                     mc_hint=batch["mc_hint"], mc_strength=batch["mc_strength"])


def _frames(video: int) -> slice:
    return slice(video * FRAMES, (video + 1) * FRAMES)


def _change_video(batch, video: int, seed: int, keys=("x", "timesteps", "context", "mc_hint", "mc_strength")):
    other = _batch(len(batch["x"]) // FRAMES, seed, strength=0.3)
    changed = {k: v.clone() for k, v in batch.items()}
    for key in keys:
        changed[key][_frames(video)] = other[key][_frames(video)]
    return changed


def test_other_video_never_changes_this_one(mc, model):
    batch = _batch(2, seed=1)
    base = _run(model, batch)
    for key in ("x", "timesteps", "context", "mc_hint", "mc_strength"):
        changed = _change_video(batch, 1, seed=2, keys=(key,))
        out = _run(model, changed)
        assert torch.equal(out[_frames(0)], base[_frames(0)]), f"changing video 2's {key} changed video 1"
        assert not torch.equal(out[_frames(1)], base[_frames(1)]), f"video 2's {key} had no effect at all"


def test_video_alone_equals_video_in_batch(mc, model):
    """Same frames, same result whether the video is sampled alone or with others (batch-size independence
    up to float rounding of batched kernels)."""
    batch = _batch(3, seed=3)
    full = _run(model, batch)
    alone = _run(model, {k: v[_frames(1)] for k, v in batch.items()})
    assert (alone - full[_frames(1)]).abs().max().item() <= 1e-5


def test_cond_uncond_halves_independent(mc, model):
    """ComfyUI batches [cond videos..., uncond videos...] with different contexts; each half only sees itself."""
    videos = 2
    batch = _batch(2 * videos, seed=4)
    cond, uncond = slice(0, videos * FRAMES), slice(videos * FRAMES, None)
    # Same latents/timesteps/hints in both halves, as the sampler sends them; only the text differs.
    for key in ("x", "timesteps", "mc_hint", "mc_strength"):
        batch[key][uncond] = batch[key][cond]
    base = _run(model, batch)
    g = torch.Generator().manual_seed(5)

    new_uncond = {k: v.clone() for k, v in batch.items()}
    new_uncond["context"][uncond] = torch.randn(new_uncond["context"][uncond].shape, generator=g)
    out = _run(model, new_uncond)
    assert torch.equal(out[cond], base[cond])
    assert not torch.equal(out[uncond], base[uncond])

    new_cond = {k: v.clone() for k, v in batch.items()}
    new_cond["context"][cond] = torch.randn(new_cond["context"][cond].shape, generator=g)
    out = _run(model, new_cond)
    assert torch.equal(out[uncond], base[uncond])
    assert not torch.equal(out[cond], base[cond])


def test_strength_zero_video_equals_appearnet_off(mc, model):
    """A video at strength 0 gets exactly the AppearNet-off result even when another video of the batch runs
    AppearNet (strength > 0)."""
    batch = _batch(2, seed=6)
    batch["mc_strength"][_frames(0)] = 0.0
    mixed = _run(model, batch)
    batch_off = {k: v.clone() for k, v in batch.items()}
    batch_off["mc_strength"].zero_()
    off = _run(model, batch_off)
    assert torch.equal(mixed[_frames(0)], off[_frames(0)])
    assert not torch.equal(mixed[_frames(1)], off[_frames(1)])


@pytest.mark.parametrize("module_cfg", [
    {},
    {"motion_modules": False, "appearnet": False},   # temporal convs alone
    {"temporal_convs": False, "appearnet": False},   # motion modules alone
], ids=["all", "convs", "motion"])
def test_temporal_layers_mix_frames_within_a_video(mc, module_cfg):
    model = _video_model(module_cfg, seed=50)
    batch = _batch(2, seed=7)
    base = _run(model, batch)
    changed = {k: v.clone() for k, v in batch.items()}
    changed["x"][0] += torch.randn(changed["x"][0].shape, generator=torch.Generator().manual_seed(8))
    out = _run(model, changed)
    assert not torch.allclose(out[3], base[3], atol=1e-6), "frame 3 did not see frame 0"
    assert torch.equal(out[_frames(1)], base[_frames(1)])


def test_image_model_does_not_mix_frames(mc):
    """Control for the test above: the spatial UNet alone treats frames independently."""
    unet = tiny_unet(seed=50)
    batch = _batch(1, seed=7)
    with torch.no_grad():
        base = unet(batch["x"], batch["timesteps"], batch["context"])
        x = batch["x"].clone()
        x[0] += 1.0
        out = unet(x, batch["timesteps"], batch["context"])
    assert (out[1:] - base[1:]).abs().max().item() <= 1e-6
