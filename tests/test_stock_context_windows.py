"""ComfyUI's own "Context Windows (Manual)" on the MicroCinema MODEL (microcinema_core/stock_context.py).

On a ComfyUI whose stock windows have the RESIZE_COND_ITEM hook (0.33.0 and newer) they run our model: each window
gets mc_num_frames = its frame count and its slice of mc_hint / mc_strength, FreeNoise included, and the result
matches MicroCinema Context Windows for the same schedule / length / overlap / fuse method. Where the hook is
missing (0.3.75) sampling stops with an error naming the stock node and pointing to ours.
"""
from __future__ import annotations

import logging

import pytest
import torch

from harness.graph import Graph
from harness.runner import GraphExecutionError
from pack_import import sub

STOCK = "ContextWindowsManual"
T, L, OVERLAP, SIZE = 8, 4, 1, 32


@pytest.fixture(scope="module")
def stock_cls(comfy_env):
    cls = comfy_env.nodes.NODE_CLASS_MAPPINGS.get(STOCK)
    if cls is None:
        pytest.skip("this ComfyUI has no 'Context Windows (Manual)' node")
    return cls


@pytest.fixture(scope="module")
def hooked(stock_cls):
    """Whether the running ComfyUI's stock windows can resize our conds (tests of the working path need it)."""
    return sub("stock_context").resize_hook() is not None


@pytest.fixture(scope="module")
def moving_module(comfy_env, comfy_dirs, tiny_sd_checkpoint) -> str:
    """A module with non-zero temporal and AppearNet weights, so that how frames are windowed changes the result."""
    import comfy.sd

    core = sub("patching"), sub("module"), sub("checkpoint")
    patching, module_lib, checkpoint = core
    model, *_ = comfy.sd.load_checkpoint_guess_config(str(comfy_dirs.models["checkpoints"] / tiny_sd_checkpoint),
                                                      output_vae=False, output_clip=False)
    torch.manual_seed(0)  # the temporal layers' initialisation (AppearNet's encoder is a copy)
    module = patching.new_module(model, module_lib.ModuleConfig())
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not name.startswith("appearnet.") or "hint_in" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    path = comfy_dirs.models["microcinema"] / "stock_windows_test.safetensors"
    checkpoint.save_module(module, str(path))
    return path.name


def _stock_inputs(stock_cls, **values) -> dict:
    """The stock node's inputs this ComfyUI has (0.3.75 lacks freenoise, causal_window_fix, ...)."""
    types = stock_cls.INPUT_TYPES()
    names = set(types.get("required", {})) | set(types.get("optional", {}))
    defaults = dict(context_length=L, context_overlap=OVERLAP, context_schedule="standard_static", context_stride=1,
                    closed_loop=False, fuse_method="pyramid", dim=0, freenoise=False, cond_retain_index_list="",
                    split_conds_to_windows=False, latent_retain_index_list="", causal_window_fix=False)
    defaults.update(values)
    return {k: v for k, v in defaults.items() if k in names}


class Video:
    """ckpt -> Apply Module -> (windows) -> KSampler, with an Image To Video of `videos` keyframes."""

    def __init__(self, ckpt_name: str, module_name: str, videos: int = 1, steps: int = 2, cfg: float = 1.0):
        self.g = g = Graph()
        ckpt = g.node("CheckpointLoaderSimple", ckpt_name=ckpt_name)
        self.mc = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=module_name, motion_module="none")
        pos = g.node("CLIPTextEncode", text="a ball rolling", clip=ckpt.out(1))
        neg = g.node("CLIPTextEncode", text="blurry", clip=ckpt.out(1))
        image = g.node("EmptyImage", width=SIZE, height=SIZE, batch_size=videos, color=0x80C040)
        self.i2v = g.node("MicroCinemaImageToVideo", positive=pos, negative=neg, vae=ckpt.out(2), image=image,
                          width=SIZE, height=SIZE, length=T, keyframe_position="first", keyframe_index=0,
                          appearance_strength=1.0, noise_prior_gamma=0.02, crop="center", frame_rate=8.0,
                          resize_method="bilinear")
        self.steps, self.cfg = steps, cfg

    def stock(self, stock_cls, model=None, **values):
        return self.g.node(STOCK, model=model or self.mc, **_stock_inputs(stock_cls, **values))

    def ours(self, model=None, schedule="standard_static", fuse="pyramid", keep_keyframe=False):
        return self.g.node("MicroCinemaContextWindows", model=model or self.mc, context_length=L,
                           context_overlap=OVERLAP, context_schedule=schedule, context_stride=1, closed_loop=False,
                           fuse_method=fuse, keep_keyframe=keep_keyframe)

    def sample(self, model):
        return self.g.node("KSampler", model=model, seed=3, steps=self.steps, cfg=self.cfg, sampler_name="euler",
                           scheduler="normal", positive=self.i2v.out(0), negative=self.i2v.out(1),
                           latent_image=self.i2v.out(2), denoise=1.0)


def _samples(run_graph, video: Video, runs: list) -> list[torch.Tensor]:
    result = run_graph(video.g, outputs=runs)
    return [result[r.id]["samples"].float() for r in runs]


@pytest.mark.graph
@pytest.mark.parametrize("schedule,fuse", [("standard_static", "pyramid"), ("standard_uniform", "relative"),
                                           ("looped_uniform", "overlap-linear")])
def test_stock_windows_match_ours(run_graph, tiny_sd_checkpoint, moving_module, stock_cls, hooked, schedule, fuse):
    """Same schedule, length, overlap and fuse method, ours without keep_keyframe and the stock node without
    causal_window_fix: the same windows with the same conds, fused with the same weights, so the same result up to
    float rounding (stock fuses per cond after the model call, ours inside it). Uniform schedules also check that
    both pick the same windows at every step."""
    if not hooked:
        pytest.skip("this ComfyUI's stock context windows have no RESIZE_COND_ITEM hook (see the refusal test)")
    v = Video(tiny_sd_checkpoint, moving_module)
    stock, ours, plain = _samples(run_graph, v, [v.sample(v.stock(stock_cls, context_schedule=schedule,
                                                                  fuse_method=fuse)),
                                                 v.sample(v.ours(schedule=schedule, fuse=fuse)), v.sample(v.mc)])
    scale = plain.abs().max().item()
    assert stock.shape == (T, 4, SIZE // 8, SIZE // 8) and torch.isfinite(stock).all()
    assert (ours - plain).abs().max().item() > 1e-3 * scale  # windows matter for this module
    gap = (stock - ours).abs().max().item()
    logging.getLogger(__name__).info("%s/%s: stock vs ours max |diff| %.3g (max |x| %.4g)", schedule, fuse, gap, scale)
    assert gap <= 1e-4 * scale, gap


@pytest.mark.graph
def test_stock_defaults_are_close_to_ours(run_graph, tiny_sd_checkpoint, moving_module, stock_cls, hooked):
    """The nodes' defaults differ in what each window holds besides its own frames: the stock causal_window_fix adds
    the frame before the window, ours (keep_keyframe) the keyframe frame. Both give close results, closer to each
    other than windows are to no windows at all."""
    if not hooked:
        pytest.skip("this ComfyUI's stock context windows have no RESIZE_COND_ITEM hook")
    v = Video(tiny_sd_checkpoint, moving_module)
    stock, ours, plain = _samples(run_graph, v, [v.sample(v.stock(stock_cls, causal_window_fix=True)),
                                                 v.sample(v.ours(keep_keyframe=True)), v.sample(v.mc)])
    gap, windowing = (stock - ours).abs().mean().item(), (ours - plain).abs().mean().item()
    logging.getLogger(__name__).info("stock defaults vs ours: mean |diff| %.4g; ours vs no windows %.4g; mean |x| %.4g",
                                     gap, windowing, plain.abs().mean().item())
    assert gap < 0.75 * windowing, (gap, windowing)


@pytest.mark.graph
def test_each_window_gets_its_own_conds(run_graph, tiny_sd_checkpoint, moving_module, stock_cls, hooked,
                                        monkeypatch):
    """What reaches the video model per window: mc_num_frames = the frames the window holds (the causal frame
    included), mc_hint / mc_strength sliced to them, every frame's offset channel its true place in the video,
    and the keyframe latent in every frame of every window. FreeNoise on (it only shuffles the start noise)."""
    if not hooked:
        pytest.skip("this ComfyUI's stock context windows have no RESIZE_COND_ITEM hook")
    video_unet = sub("video_unet")
    conditioning = sub("conditioning")
    seen = []
    original = video_unet.VideoUNet._forward

    def spy(self, x, timesteps=None, context=None, y=None, control=None, transformer_options={}, **kwargs):
        hint, strength = kwargs["mc_hint"], kwargs["mc_strength"]
        frames = kwargs["mc_num_frames"]
        offsets = conditioning.hint_offset(hint)[:, 0, 0, 0]
        seen.append(dict(batch=x.shape[0], frames=frames, hint=hint.shape[0], strength=strength.shape[0],
                         positions=[round(float(o) * T) for o in offsets[:frames]],
                         keyframe=conditioning.hint_keyframe(hint)))
        return original(self, x, timesteps, context, y, control, transformer_options, **kwargs)

    monkeypatch.setattr(video_unet.VideoUNet, "_forward", spy)
    v = Video(tiny_sd_checkpoint, moving_module, cfg=2.0)
    noisy, plain = _samples(run_graph, v, [v.sample(v.stock(stock_cls, causal_window_fix=True, freenoise=True)),
                                           v.sample(v.stock(stock_cls, causal_window_fix=True, freenoise=False))])
    assert torch.isfinite(noisy).all() and not torch.equal(noisy, plain)  # FreeNoise ran and changed the noise
    # windows 0-3, 3-6 and 4-7 (the last one ends on the last frame), each after the first with the frame before it
    expected = [[0, 1, 2, 3], [2, 3, 4, 5, 6], [3, 4, 5, 6, 7]]
    assert [s["positions"] for s in seen[:3]] == expected
    assert len(seen) == 2 * 2 * len(expected)  # two runs of two steps
    first_keyframe = seen[0]["keyframe"][0]
    for s in seen:
        assert s["hint"] == s["strength"] == s["batch"] == 2 * s["frames"]  # cond and uncond halves
        assert s["frames"] == len(s["positions"]) and s["positions"] in expected
        assert all(torch.equal(k, first_keyframe) for k in s["keyframe"])


@pytest.mark.graph
def test_several_videos_are_refused(run_graph, tiny_sd_checkpoint, moving_module, stock_cls, hooked):
    v = Video(tiny_sd_checkpoint, moving_module, videos=2, steps=1)
    run = v.sample(v.stock(stock_cls))
    with pytest.raises(GraphExecutionError) as info:
        run_graph(v.g, outputs=[run])
    message = info.value.exception_message
    assert "Context Windows (Manual)" in message and "MicroCinema Context Windows" in message
    if hooked:
        assert "2 MicroCinema videos" in message


@pytest.mark.graph
def test_other_dims_and_both_nodes_are_refused(run_graph, tiny_sd_checkpoint, moving_module, stock_cls):
    v = Video(tiny_sd_checkpoint, moving_module, steps=1)
    on_height = v.sample(v.stock(stock_cls, dim=2))
    with pytest.raises(GraphExecutionError, match="input 'dim' must be 0"):
        run_graph(v.g, outputs=[on_height])
    both = v.sample(v.stock(stock_cls, model=v.ours()))
    with pytest.raises(GraphExecutionError, match="Keep one of them"):
        run_graph(v.g, outputs=[both])


@pytest.mark.graph
def test_old_comfyui_refuses_clearly(run_graph, tiny_sd_checkpoint, moving_module, stock_cls, hooked):
    """0.3.75's stock windows cannot resize our conds (no RESIZE_COND_ITEM) and fail deep in torch on a batch of
    frames; sampling stops first with an error naming the stock node and pointing to ours. A video no longer than
    the window is not windowed at all and runs."""
    if hooked:
        pytest.skip("this ComfyUI's stock context windows can run the MicroCinema model")
    v = Video(tiny_sd_checkpoint, moving_module, steps=1)
    run = v.sample(v.stock(stock_cls))
    with pytest.raises(GraphExecutionError) as info:
        run_graph(v.g, outputs=[run])
    message = info.value.exception_message
    assert "Context Windows (Manual)" in message and "'MicroCinema Context Windows'" in message
    short = v.sample(v.stock(stock_cls, context_length=T))
    assert torch.isfinite(run_graph(v.g, outputs=[short])[short.id]["samples"]).all()


def test_memory_check_counts_one_stock_window(comfy_env):
    """Sized before sampling: under stock windows the UNet holds one window (+ the causal frame), not the video."""
    from types import SimpleNamespace

    memory_check = sub("memory_check")
    handler = SimpleNamespace(context_length=L, dim=0, causal_window_fix=True)
    assert memory_check.frames_held(SimpleNamespace(model_options={"context_handler": handler}), 64) == L + 1
    handler.causal_window_fix = False
    assert memory_check.frames_held(SimpleNamespace(model_options={"context_handler": handler}), 64) == L
    assert memory_check.frames_held(SimpleNamespace(model_options={"context_handler": handler}), 3) == 3
    assert memory_check.frames_held(SimpleNamespace(model_options={}), 64) == 64


@pytest.mark.graph
@pytest.mark.parametrize("causal", [False, True])
def test_prompt_travel_under_stock_windows(run_graph, tiny_sd_checkpoint, moving_module, stock_cls, hooked, causal):
    """A per-frame context (Prompt Travel) and a one-row negative under the stock windows: each window gets its
    frames' rows (also with the frame causal_window_fix adds), the same result as our windows."""
    if not hooked:
        pytest.skip("this ComfyUI's stock context windows have no RESIZE_COND_ITEM hook (see the refusal test)")
    if causal and "causal_window_fix" not in _stock_inputs(stock_cls, causal_window_fix=True):
        pytest.skip("this ComfyUI's stock node has no causal_window_fix")
    v = Video(tiny_sd_checkpoint, moving_module)
    ckpt_clip = v.i2v.graph[v.i2v.id]["inputs"]["positive"]  # the positive's CLIPTextEncode
    clip = v.g[ckpt_clip[0]]["inputs"]["clip"]
    travel = v.g.node("MicroCinemaPromptTravel", clip=clip, length=T, interpolation="linear",
                      schedule=f"0: a ball rolling left\n{T - 1}: a ball rolling right")
    v.i2v.set(positive=travel)
    runs = [v.sample(v.stock(stock_cls, causal_window_fix=causal)), v.sample(v.ours())]
    stock, ours = _samples(run_graph, v, runs)
    assert torch.isfinite(stock).all()
    if not causal:  # the same windows: the same result up to float rounding
        assert (stock - ours).abs().max().item() <= 1e-4 * ours.abs().max().item()
