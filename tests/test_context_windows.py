"""Context windows inside the video model: schedules, exactness for a frame-by-frame model, graphs."""
from __future__ import annotations

import itertools

import pytest
import torch

from harness.graph import Graph
from pack_import import core, sub


@pytest.fixture(scope="module")
def cw(comfy_env):
    import importlib

    return sub("context_windows")


@pytest.mark.parametrize("frames,length,overlap,schedule,stride,loop", [
    (64, 16, 4, "static_standard", 1, False), (37, 16, 4, "static_standard", 1, False),
    (64, 16, 4, "uniform_standard", 3, False), (48, 16, 2, "uniform_looped", 2, False),
    (50, 16, 0, "batched", 1, False), (40, 8, 3, "static_standard", 1, True), (10, 16, 4, "static_standard", 1, False),
])
def test_every_frame_is_covered_and_windows_are_valid(cw, frames, length, overlap, schedule, stride, loop):
    s = cw.ContextSettings(length, overlap, schedule, stride, loop)
    windows = cw.window_indices(frames, s)
    assert set(itertools.chain(*windows)) == set(range(frames))
    for w in windows:
        assert len(w) == min(length, frames) or schedule == "batched"
        assert all(0 <= f < frames for f in w) and len(set(w)) == len(w)
    if schedule == "static_standard" and frames > length:
        starts = [w[0] for w in windows if not loop or w == sorted(w)]
        assert all(b - a <= length - overlap for a, b in zip(starts, starts[1:]))


def test_fuse_weights_are_positive_and_symmetric(cw):
    for method in cw.FUSE_METHODS:
        w = cw.fuse_weights(9, method, overlap=3)
        assert (w > 0).all() and torch.allclose(w, w.flip(0))


def test_bad_settings_are_refused(cw):
    with pytest.raises(ValueError, match="overlap"):
        cw.window_indices(20, cw.ContextSettings(length=8, overlap=8))
    with pytest.raises(ValueError, match="schedule"):
        cw.window_indices(20, cw.ContextSettings(schedule="nope"))


def _video_model(randomise: bool):
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    torch.manual_seed(0)
    unet = UNetModel(**sub("configs").tiny_unet_config(), operations=comfy.ops.disable_weight_init)
    module_lib = sub("module")
    module_lib.initialise_new_weights(unet)
    module = module_lib.build_module(unet, module_lib.ModuleConfig(), comfy.ops.manual_cast)
    if randomise:
        with torch.no_grad():
            for p in module.parameters():
                p.add_(torch.randn_like(p) * 0.02)
    return sub("video_unet").VideoUNet(unet, module)


@pytest.mark.parity
def test_windows_on_a_frame_by_frame_model_change_nothing(cw):
    """Untrained module = SD per frame, so fusing windows must reproduce the full clip (float rounding only)."""
    net = _video_model(randomise=False)
    mc_conditioning = sub("conditioning")
    T, groups = 8, 2
    x = torch.randn(groups * T, 4, 4, 4)
    t = torch.full((groups * T,), 400.0)
    ctx = torch.randn(groups * T, 7, 64)
    hint = mc_conditioning.appearance_hint(torch.randn(1, 4, 4, 4), T, 5).repeat(groups, 1, 1, 1)
    kw = dict(mc_num_frames=T, mc_hint=hint, mc_strength=torch.ones(groups * T))
    with torch.no_grad():
        full = net(x, t, ctx, **kw)
        opts = {"microcinema_context": cw.ContextSettings(length=4, overlap=1, fuse_method="gaussian")}
        windowed = net(x, t, ctx, transformer_options=opts, **kw)
    assert (full - windowed).abs().max().item() <= 1e-5


def test_windows_bound_the_frames_each_call_sees(cw):
    """With trained-like weights every inner call sees at most length (+ keyframe) frames per video."""
    net = _video_model(randomise=True)
    mc_conditioning = sub("conditioning")
    T = 10
    seen = []
    original = net._forward_clip

    def spy(x, *args):
        seen.append(args[-2])
        return original(x, *args)

    net._forward_clip = spy
    hint = mc_conditioning.appearance_hint(torch.randn(1, 4, 4, 4), T, 0)
    with torch.no_grad():
        out = net(torch.randn(T, 4, 4, 4), torch.full((T,), 300.0), torch.randn(T, 7, 64),
                  transformer_options={"microcinema_context": cw.ContextSettings(length=4, overlap=1)},
                  mc_num_frames=T, mc_hint=hint, mc_strength=torch.ones(T))
    assert torch.isfinite(out).all()
    assert len(seen) >= 3 and max(seen) <= 5


@pytest.mark.graph
def test_long_video_graph_with_context_windows(run_graph, tiny_sd_checkpoint):
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    mc = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name="[new untrained module]",
                motion_module="none")
    windows = g.node("MicroCinemaContextWindows", model=mc, context_length=4, context_overlap=1,
                     context_schedule="static_standard", context_stride=1, closed_loop=False, fuse_method="pyramid",
                     keep_keyframe=True)
    pos = g.node("CLIPTextEncode", text="a ball", clip=ckpt.out(1))
    image = g.node("EmptyImage", width=32, height=32, batch_size=1, color=0x80FF00)
    i2v = g.node("MicroCinemaImageToVideo", positive=pos, negative=pos, vae=ckpt.out(2), image=image, width=32,
                 height=32, length=8, keyframe_position="first", keyframe_index=0, appearance_strength=1.0,
                 noise_prior_gamma=0.02, crop="center", frame_rate=8.0, resize_method="bilinear")
    runs = [g.node("KSampler", model=m, seed=4, steps=2, cfg=1.0, sampler_name="euler", scheduler="normal",
                   positive=i2v.out(0), negative=i2v.out(1), latent_image=i2v.out(2), denoise=1.0)
            for m in (windows, mc)]
    result = run_graph(g, outputs=runs)
    a, b = (result[r.id]["samples"] for r in runs)
    assert a.shape == (8, 4, 4, 4)
    assert (a - b).abs().max().item() <= 1e-4 * b.abs().max().item()  # untrained: windows change nothing


@pytest.mark.graph
def test_context_overlap_must_be_shorter_than_the_window(run_graph, tiny_sd_checkpoint):
    from harness.runner import GraphValidationError

    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    w = g.node("MicroCinemaContextWindows", model=ckpt.out(0), context_length=4, context_overlap=4,
               context_schedule="static_standard", context_stride=1, closed_loop=False, fuse_method="flat",
               keep_keyframe=True)
    with pytest.raises(GraphValidationError, match="context_overlap"):
        run_graph(g, outputs=[w])
