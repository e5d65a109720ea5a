"""Context windows inside the video model: schedules (ComfyUI's names and semantics), exactness for a
frame-by-frame model, graphs (deprecated schedule names included)."""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch

from harness.graph import Graph
from pack_import import core, sub


@pytest.fixture(scope="module")
def cw(comfy_env):
    return sub("context_windows")


SCHEDULE_CASES = [
    (64, 16, 4, "standard_static", 1, False), (37, 16, 4, "standard_static", 1, False),
    (64, 16, 4, "standard_uniform", 3, False), (48, 16, 2, "looped_uniform", 2, False),
    (48, 16, 2, "looped_uniform", 1, True), (50, 16, 0, "batched", 1, False), (40, 8, 3, "standard_uniform", 1, False),
    (10, 16, 4, "standard_static", 1, False), (21, 6, 5, "standard_uniform", 2, False),
]


@pytest.mark.parametrize("frames,length,overlap,schedule,stride,loop", SCHEDULE_CASES)
def test_every_frame_is_covered_at_every_step_and_windows_are_valid(cw, frames, length, overlap, schedule, stride,
                                                                      loop):
    s = cw.ContextSettings(length, overlap, schedule, stride, loop)
    for step in range(12):
        windows = cw.window_indices(frames, s, step)
        assert set(itertools.chain(*windows)) == set(range(frames)), step
        for w in windows:
            assert len(w) == min(length, frames) or schedule == "batched"
            assert all(0 <= f < frames for f in w) and len(set(w)) == len(w)
            if schedule != "looped_uniform":
                assert w == sorted(w)  # only the looped schedule wraps from the end to the start
        if schedule == "standard_static" and frames > length:
            starts = [w[0] for w in windows]
            assert all(b - a <= length - overlap for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("schedule", ["standard_uniform", "looped_uniform"])
def test_uniform_schedules_shift_between_steps(cw, schedule):
    """A uniform schedule moves its windows with the sampling step (so seams move); the others never do."""
    s = cw.ContextSettings(16, 4, schedule, 1)
    per_step = [cw.window_indices(64, s, step) for step in range(8)]
    assert all(a != b for a, b in zip(per_step, per_step[1:]))
    starts = {tuple(sorted(w[0] for w in windows)) for windows in per_step}
    assert len(starts) >= 6
    for fixed in ("standard_static", "batched"):
        s = cw.ContextSettings(16, 4, fixed)
        assert all(cw.window_indices(64, s, step) == cw.window_indices(64, s, 0) for step in range(8))


def test_uniform_windows_by_hand(cw):
    """standard_uniform, 10 frames, windows of 4, overlap 1, computed by hand from the rule: shift = the step's
    bits mirrored (0, 1/2, 1/4, 3/4), grid start round(10 * shift), hop 3, a window past the end moved back to end
    on frame 9 and the frames it lost after the wrap covered by a window from the wrap point."""
    s = cw.ContextSettings(4, 1, "standard_uniform")
    assert cw.window_indices(10, s, 0) == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    # step 1: shift 1/2 -> starts 5, 8, 11 (= 1 mod 10); window 8..11 wraps -> [6..9] + [0..3] for frames 0, 1
    assert cw.window_indices(10, s, 1) == [[5, 6, 7, 8], [6, 7, 8, 9], [0, 1, 2, 3], [1, 2, 3, 4]]
    # step 2: shift 1/4 -> round(2.5) = 2 (half to even) -> starts 2, 5, 8; 8..11 wraps
    assert cw.window_indices(10, s, 2) == [[2, 3, 4, 5], [5, 6, 7, 8], [6, 7, 8, 9], [0, 1, 2, 3]]
    looped = cw.ContextSettings(4, 1, "looped_uniform")
    assert cw.window_indices(10, looped, 1) == [[5, 6, 7, 8], [8, 9, 0, 1], [1, 2, 3, 4]]


def test_van_der_corput_against_string_reversal(cw):
    for step in list(range(300)) + [2 ** 40 + 12345]:
        expected = int(format(step, "064b")[::-1], 2) / 2 ** 64
        assert cw.van_der_corput(step) == expected
    assert [cw.van_der_corput(i) for i in range(6)] == [0, 0.5, 0.25, 0.75, 0.125, 0.625]


def test_sampling_step_follows_the_sigmas(cw):
    sample = torch.tensor([14.6, 6.0, 2.5, 0.9, 0.0])
    assert cw.sampling_step({}) == 0
    for i in range(4):
        assert cw.sampling_step({"sample_sigmas": sample, "sigmas": sample[i:i + 1].repeat(6)}) == i
    # a multi-stage sampler's intermediate sigma belongs to the step it started from
    assert cw.sampling_step({"sample_sigmas": sample, "sigmas": torch.tensor([4.0])}) == 1
    assert cw.sampling_step({"sample_sigmas": sample, "sigmas": torch.tensor([6.0001])}) == 1


def _stock_windows(stock, schedule, frames, s, step):
    handler = SimpleNamespace(context_length=s.length, context_overlap=s.overlap, context_stride=s.stride,
                              closed_loop=s.closed_loop, _step=step)
    return stock.CONTEXT_MAPPING[schedule](frames, handler, {})


def _valid(windows, frames):
    return all(all(0 <= f < frames for f in w) and len(set(w)) == len(w) for w in windows) and \
        set(itertools.chain(*windows)) == set(range(frames))


def test_schedules_match_comfyui_stock_windows(cw):
    """Independent computation: the running ComfyUI's own schedule functions (0.3.75 and newer have them). Where
    ComfyUI's dilated uniform windows are invalid (out of range or a frame twice: stride > 1 on short videos),
    ours leave that dilation out instead, so only valid stock results are compared."""
    stock = pytest.importorskip("comfy.context_windows")
    compared = skipped = 0
    for schedule, frames, length, stride, loop in itertools.product(
            cw.SCHEDULES, (9, 17, 30, 41), (4, 8), (1, 2, 3), (False, True)):
        for overlap in sorted({0, 1, length // 2, length - 1}):
            s = cw.ContextSettings(length, overlap, schedule, stride, loop)
            for step in range(6):
                theirs = _stock_windows(stock, schedule, frames, s, step)
                if not _valid(theirs, frames):
                    skipped += 1
                    continue
                assert cw.window_indices(frames, s, step) == theirs, (schedule, frames, length, overlap, stride,
                                                                       loop, step)
                compared += 1
    assert compared > 1000 and skipped < compared / 5


@pytest.mark.parametrize("old,new", [("static_standard", "standard_static"), ("uniform_standard", "standard_uniform"),
                                     ("uniform_looped", "looped_uniform")])
def test_deprecated_schedule_names_are_aliases(cw, old, new):
    assert old in cw.SCHEDULE_OPTIONS and old not in cw.SCHEDULES
    a, b = cw.ContextSettings(8, 2, old, 2), cw.ContextSettings(8, 2, new, 2)
    assert a == b and a.schedule == new
    assert all(cw.window_indices(30, a, step) == cw.window_indices(30, b, step) for step in range(5))


def test_fuse_weights_match_comfyui(cw):
    """flat, pyramid and overlap-linear against the running ComfyUI's own fuse functions; relative (a running
    weighted average in ComfyUI) against its weights computed by hand; gaussian (ours) is positive and symmetric."""
    stock = pytest.importorskip("comfy.context_windows")
    handler = SimpleNamespace(context_overlap=3)
    for window, total in (([0, 1, 2, 3, 4, 5, 6, 7, 8], 30), ([10, 11, 12, 13, 14, 15, 16, 17, 18], 30),
                          ([21, 22, 23, 24, 25, 26, 27, 28, 29], 30), (list(range(6)), 30)):
        for method in ("flat", "pyramid", "overlap-linear"):
            theirs = stock.get_matching_fuse_method(method).func(len(window), full_length=total, idxs=window,
                                                                 handler=handler, context_overlap=3)
            theirs = torch.as_tensor(theirs, dtype=torch.float32).clamp_min(cw.MIN_WEIGHT)
            assert torch.allclose(cw.fuse_weights(window, total, method, 3), theirs, atol=1e-6), (method, window)
    relative = cw.fuse_weights([10, 11, 12, 13, 14], 30, "relative")
    assert torch.allclose(relative, torch.tensor([0.01, 1 - 1 / 2.005, 1.0, 1 - 1 / 2.005, 0.01]).clamp_min(0.01))
    w = cw.fuse_weights(list(range(9)), 9, "gaussian")
    assert (w > 0).all() and torch.allclose(w, w.flip(0))


def test_an_added_keyframe_gets_the_window_s_smallest_weight_and_its_time_place(cw):
    assert cw.with_keyframe([4, 5, 6, 7], 1) == [1, 4, 5, 6, 7]
    assert cw.with_keyframe([8, 9, 0, 1], 3) == [8, 9, 0, 1, 3]  # after the wrap: nearer to frame 1
    assert cw.with_keyframe([8, 9, 0, 1], 6) == [6, 8, 9, 0, 1]
    w = cw.window_weights([4, 5, 6, 7], [1, 4, 5, 6, 7], 20, "pyramid", 1)
    assert w.tolist() == [1.0, 1.0, 2.0, 2.0, 1.0]


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
    # a rule across two inputs: checked when the node runs (nodes/inputs.py), reported once, on the overlap
    from harness.runner import GraphExecutionError

    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    w = g.node("MicroCinemaContextWindows", model=ckpt.out(0), context_length=4, context_overlap=4,
               context_schedule="static_standard", context_stride=1, closed_loop=False, fuse_method="flat",
               keep_keyframe=True)
    with pytest.raises(GraphExecutionError, match="context_overlap"):
        run_graph(g, outputs=[w])


@pytest.mark.graph
def test_deprecated_schedule_names_still_validate_and_run(run_graph, tiny_sd_checkpoint):
    """Workflows saved with the old names (workflows/api/long_video.api.json uses static_standard) keep loading and
    running, with the same result as the new name they stand for."""
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    mc = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name="[new untrained module]",
                motion_module="none")
    pos = g.node("CLIPTextEncode", text="a ball", clip=ckpt.out(1))
    image = g.node("EmptyImage", width=32, height=32, batch_size=1, color=0x80FF00)
    i2v = g.node("MicroCinemaImageToVideo", positive=pos, negative=pos, vae=ckpt.out(2), image=image, width=32,
                 height=32, length=8, keyframe_position="first", keyframe_index=0, appearance_strength=1.0,
                 noise_prior_gamma=0.02, crop="center", frame_rate=8.0, resize_method="bilinear")
    runs = {}
    for schedule in ("uniform_standard", "standard_uniform", "static_standard", "uniform_looped"):
        windows = g.node("MicroCinemaContextWindows", model=mc, context_length=4, context_overlap=1,
                         context_schedule=schedule, context_stride=1, closed_loop=False, fuse_method="pyramid",
                         keep_keyframe=True)
        runs[schedule] = g.node("KSampler", model=windows, seed=4, steps=2, cfg=1.0, sampler_name="euler",
                                scheduler="normal", positive=i2v.out(0), negative=i2v.out(1),
                                latent_image=i2v.out(2), denoise=1.0)
    result = run_graph(g, outputs=list(runs.values()))
    out = {k: result[r.id]["samples"] for k, r in runs.items()}
    assert torch.equal(out["uniform_standard"], out["standard_uniform"])
    assert all(torch.isfinite(v).all() for v in out.values())
