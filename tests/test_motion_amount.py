"""MicroCinema Motion Amount (issue 18): a factor on what every temporal layer adds (and on the text sign's offset
cue), per clip or per frame.

- parity at 1: bitwise the model without the node (also an all-ones schedule);
- parity at 0: bitwise the same module file with every temporal layer's output zeroed (t1/t2 convs and motion
  proj_out, main UNet and AppearNet) and the text sign's hint_in columns zeroed: an independent construction of
  "the image model frame by frame + AppearNet", through KSampler, SamplerCustomAdvanced, a LoRA loader after the
  node and our context windows;
- per frame: each temporal residual is the unscaled residual times its frame's factor (hooks on every layer); the
  offset cue is the offset times the mean amount from the keyframe to the frame (numerical integral here);
  context windows hand each frame the values of its true index; every video of a batch gets the same schedule;
- schedule strings: parsing and interpolation against numpy.interp; bad strings, NaN/inf and a non-video MODEL
  give errors naming the node and the input.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from harness.graph import Graph
from harness.extra_models import lora_state_dict, save
from harness.runner import GraphExecutionError, GraphValidationError
from pack_import import randomize, single_thread_fixture, sub, tiny_unet

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread_fixture)

NODE, NODE_ID = "MicroCinema Motion Amount", "MicroCinemaMotionAmount"
FRAMES, SIZE = 4, 32
TRAINED, ZEROED = "motion_trained.safetensors", "motion_zeroed.safetensors"
# The temporal layers' output projections (zero-initialised in an untrained module), by their file keys.
TEMPORAL_OUTPUT = re.compile(r"(^|\.)temporal\..*\.(t[12]\.conv|motion\.proj_out)\.(weight|bias)$")
_trapezoid = getattr(np, "trapezoid", None) or getattr(np, "trapz")  # numpy 2 renamed trapz
HINT_SIGN_FROM = 4 + 1  # hint_in reads [keyframe latent (4), mask, offset x keyframe x sign_1..k]


def without_motion(state: dict) -> dict:
    """A module state dict with every motion signal's last weights zeroed: the temporal layers' outputs and the
    text sign's hint_in columns (written from the file layout, independently of the motion-amount code)."""
    out = {k: torch.zeros_like(v) if TEMPORAL_OUTPUT.search(k) else v.clone() for k, v in state.items()}
    out["appearnet.hint_in.weight"][:, HINT_SIGN_FROM:] = 0
    return out


# -- schedule strings --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,frames", [
    ("0:1.0, 8:0.2", 12), ("3:0.5", 6), (" 2 : 1.5 ,0:0,7:1 ", 10), ("0:0, 1:2, 2:0, 3:2", 4), ("", 5),
    ("5:0.25, 1:1", 8), ("20:0", 16),
])
def test_schedule_interpolation_matches_numpy(mc, text, frames):
    ma = sub("motion_amount")
    points = ma.parse_schedule(text)
    pairs = [p.split(":") for p in text.split(",") if p.strip()]
    if pairs:
        xs, ys = zip(*sorted((int(f), float(v)) for f, v in pairs))
        expected = np.interp(np.arange(frames), xs, ys)  # holds the end values outside, like ours
    else:
        expected = np.ones(frames)
    for amount in (1.0, 0.5):
        got = ma.MotionSettings(amount, points).frame_values(frames)
        assert np.allclose(got, amount * expected, rtol=0, atol=1e-12), (got, expected)


def test_frame_amounts_repeat_per_video(mc):
    """Batch = CFG halves x videos x frames: every video (and half) gets the same per-frame factors."""
    ma = sub("motion_amount")
    settings = ma.MotionSettings(2.0, ma.parse_schedule("0:0, 3:0.5"))
    amounts = ma.frame_amounts(settings, [0, 1, 2, 3], 4, 3 * 4)
    assert amounts.shape == (12,) and torch.allclose(amounts, torch.tensor([0.0, 1 / 3, 2 / 3, 1.0] * 3))


BAD_SCHEDULES = ["abc", "0:", ":1", "1:x", "-1:0.5", "0:1,0:2", "0:nan", "0:inf", "0:-0.5", "0:9", "1.5:1",
                 "0:1;4:0", "0:1,,4:0", "0=1"]


@pytest.mark.parametrize("text", BAD_SCHEDULES)
def test_bad_schedule_strings_are_refused(mc, text):
    with pytest.raises(sub("motion_amount").ScheduleError):
        sub("motion_amount").parse_schedule(text)


# -- the model, directly -------------------------------------------------------------------------------------------
def _video(k: int = 2):
    import comfy.ops

    module_lib, video_unet = sub("module"), sub("video_unet")
    unet = tiny_unet(seed=3)
    module = randomize(module_lib.build_module(unet, module_lib.ModuleConfig(motion_text_sign=k),
                                               comfy.ops.manual_cast), seed=11, std=0.05)
    return video_unet.VideoUNet(unet, module)


def _inputs(net, videos: int, frames: int, key: int, seed: int = 2):
    conditioning = sub("conditioning")
    g = torch.Generator().manual_seed(seed)
    n = videos * frames
    x = torch.randn(n, 4, 8, 8, generator=g)
    t = torch.rand(n, generator=g) * 999
    ctx = torch.randn(n, 5, net.layout.context_dim, generator=g)
    hint = conditioning.appearance_hint(torch.randn(videos, 4, 8, 8, generator=g), frames, key)
    return x, t, ctx, dict(mc_num_frames=frames, mc_hint=hint, mc_strength=torch.ones(n))


def _options(settings) -> dict:
    return {sub("motion_amount").MOTION_OPTION: settings}


@pytest.mark.parity
def test_each_temporal_residual_is_scaled_per_frame(mc):
    """Every temporal layer (main UNet and AppearNet) returns h + a_f * r(h), with r(h) recomputed here without
    the factor, a_f the schedule's value at the frame's index; two videos share the schedule."""
    temporal, ma = sub("temporal"), sub("motion_amount")
    net = _video()
    videos, frames = 2, 5
    x, t, ctx, kw = _inputs(net, videos, frames, key=2)
    settings = ma.MotionSettings(1.5, ma.parse_schedule("0:0, 4:1"))
    want = torch.tensor([1.5 * f / 4 for f in range(frames)] * videos).reshape(-1, 1, 1, 1)
    checked = {"conv": 0, "motion": 0, "appearnet": 0}
    appearnet_layers = {id(m) for m in net.microcinema.appearnet.modules()}

    def hook(layer, args, kwargs, out):
        h, num_frames = args[0], args[1]
        rest = list(args[2:])
        scale = kwargs.get("scale", rest.pop() if len(rest) in (1, 3) else None)
        assert scale is not None and not scale.zero
        with torch.no_grad():
            plain = layer.forward(h, num_frames, *rest)  # no factor
        expected = h + want * (plain - h)
        assert (out - expected).abs().max().item() <= 1e-5 * max(1.0, expected.abs().max().item())
        checked["motion" if isinstance(layer, temporal.TemporalTransformer) else "conv"] += 1
        checked["appearnet"] += id(layer) in appearnet_layers

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in net.modules()
               if isinstance(m, (temporal.TemporalConv, temporal.TemporalTransformer))]
    with torch.no_grad():
        net(x, t, ctx, transformer_options=_options(settings), **kw)
    for h in handles:
        h.remove()
    assert checked["conv"] >= 10 and checked["motion"] >= 5 and checked["appearnet"] >= 5, checked


@pytest.mark.parity
def test_one_and_zero_directly(mc):
    """1 (and an all-ones schedule): bitwise no setting. 0: bitwise the module with zeroed temporal outputs."""
    ma = sub("motion_amount")
    net = _video()
    x, t, ctx, kw = _inputs(net, 2, FRAMES, key=1)
    with torch.no_grad():
        plain = net(x, t, ctx, **kw)
        for s in (ma.MotionSettings(1.0), ma.MotionSettings(1.0, ma.parse_schedule("0:1, 9:1"))):
            assert torch.equal(net(x, t, ctx, transformer_options=_options(s), **kw), plain)
        off = net(x, t, ctx, transformer_options=_options(ma.MotionSettings(0.0)), **kw)
        half = net(x, t, ctx, transformer_options=_options(ma.MotionSettings(0.5)), **kw)
        net.microcinema.load_state_dict(without_motion(net.microcinema.state_dict()))
        zeroed = net(x, t, ctx, **kw)
    assert torch.equal(off, zeroed)
    assert (off - plain).abs().max() > 1e-3 and (half - plain).abs().max() > 1e-4 and (half - off).abs().max() > 1e-4


def test_offset_cue_is_the_offset_times_the_mean_amount_since_the_keyframe(mc):
    """Independent computation: the integral of the piecewise-linear amount between the keyframe and the frame
    (numpy trapezoid on a fine grid through the frames), over the distance; two videos, keyframe inside."""
    ma, conditioning = sub("motion_amount"), sub("conditioning")
    frames, key = 9, 3
    settings = ma.MotionSettings(1.2, ma.parse_schedule("1:0, 4:1.5, 7:0.25"))
    hint = conditioning.appearance_hint(torch.randn(2, 4, 2, 2), frames, key)
    got = conditioning.hint_offset(ma.scaled_offsets(hint, settings.frame_values(frames)))[:, 0, 0, 0]
    values = np.array(settings.frame_values(frames), dtype=np.float64)
    expected = []
    for f in list(range(frames)) * 2:
        if f == key:
            expected.append(0.0)
            continue
        grid = np.linspace(min(f, key), max(f, key), abs(f - key) * 64 + 1)
        integral = _trapezoid(np.interp(grid, np.arange(frames), values), grid)
        expected.append((f - key) / frames * integral / abs(f - key))
    assert np.allclose(got.numpy(), expected, rtol=0, atol=1e-6), (got, expected)
    assert torch.equal(ma.scaled_offsets(hint, [1.0] * frames), hint)  # 1 changes nothing
    constant = conditioning.hint_offset(ma.scaled_offsets(hint, [0.5] * frames))
    assert torch.allclose(constant, 0.5 * conditioning.hint_offset(hint))
    rest = ma.scaled_offsets(hint, values.tolist())[:, :-1]
    assert torch.equal(rest, hint[:, :-1])  # keyframe latent and mask untouched


def test_context_windows_give_each_frame_its_true_values(mc):
    """Windows slice frames (plus the keyframe); each window sees the factors and the scaled offsets of its frames'
    indices in the whole video (marked here in the latent itself)."""
    ma, cw, conditioning = sub("motion_amount"), sub("context_windows"), sub("conditioning")
    net = _video()
    frames, key = 10, 6
    x, t, ctx, kw = _inputs(net, 1, frames, key=key)
    x[:, 0, 0, 0] = torch.arange(frames) * 1000.0  # which frame is which, after slicing
    settings = ma.MotionSettings(1.0, ma.parse_schedule("0:0, 9:0.9"))
    whole = conditioning.hint_offset(ma.scaled_offsets(kw["mc_hint"], settings.frame_values(frames)))
    seen = []
    original = net._forward_clip

    def spy(x_, timesteps, context, y, control, options, num_frames, kwargs):
        index = torch.round(x_[:, 0, 0, 0] / 1000.0).long()
        assert torch.equal(conditioning.hint_offset(kwargs["mc_hint"]), whole[index])
        seen.append((index.tolist(), kwargs[ma.MOTION_KWARG].tolist()))
        return original(x_, timesteps, context, y, control, options, num_frames, kwargs)

    net._forward_clip = spy
    options = {**_options(settings), sub("video_unet").CONTEXT_OPTION: cw.ContextSettings(length=4, overlap=1)}
    with torch.no_grad():
        out = net(x, t, ctx, transformer_options=options, **kw)
    assert torch.isfinite(out).all() and len(seen) >= 3
    covered = set()
    for index, amounts in seen:
        assert np.allclose(amounts, [0.1 * f for f in index], atol=1e-6), (index, amounts)
        covered.update(index)
    assert covered == set(range(frames))


def test_stock_context_window_frames_are_located(mc):
    """ComfyUI's own windows (newer releases) call the model per window: each frame's index in the whole video is
    what the stock window's own slicing says (its prepended anchor frame and retained latent frames included)."""
    stock = pytest.importorskip("comfy.context_windows")
    if sub("stock_context").resize_hook() is None:
        pytest.skip("this ComfyUI's stock context windows cannot run the MicroCinema model (stock_context.py)")
    ma, conditioning = sub("motion_amount"), sub("conditioning")
    total, key = 12, 5
    hint = conditioning.appearance_hint(torch.randn(1, 4, 2, 2), total, key)
    for index_list, anchor, retain in (([4, 5, 6, 7], None, []), ([6, 7, 8, 9], 5, []), ([8, 9, 10, 11], 7, [0])):
        window = stock.IndexListContextWindow(index_list, dim=0, total_frames=total)
        if anchor is not None:
            window.causal_anchor_index = anchor
        frames = window.get_tensor(torch.arange(total), retain_index_list=retain).tolist()
        sliced = window.get_tensor(hint, retain_index_list=retain)  # the latent's frames, as stock_context slices
        positions, whole = ma.frame_positions({"context_window": window}, {"mc_hint": sliced}, len(frames))
        assert (positions, whole) == (frames, total)
    assert ma.frame_positions({}, {"mc_hint": hint}, total) == (list(range(total)), total)


# -- real graphs -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def module_files(comfy_env, comfy_dirs, tiny_sd_checkpoint) -> tuple[str, str]:
    """A module with every weight non-zero (as after training, text sign included) and the same file without its
    motion signals (``without_motion``)."""
    import importlib

    import comfy.sd

    core = importlib.import_module(comfy_env.pack_module + ".microcinema_core")
    model, *_ = comfy.sd.load_checkpoint_guess_config(str(comfy_dirs.models["checkpoints"] / tiny_sd_checkpoint),
                                                      output_vae=False, output_clip=False)
    module = core.patching.new_module(model, core.module.ModuleConfig(motion_text_sign=2))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen).to(p.dtype) * 0.03)
    folder = comfy_dirs.models["microcinema"]
    core.checkpoint.save_module(module, str(folder / TRAINED))
    zeroed = [k for k, _ in module.named_parameters() if TEMPORAL_OUTPUT.search(k)]
    assert len(zeroed) >= 40 and any(k.startswith("appearnet.") for k in zeroed)
    assert module.appearnet.hint_in.weight.shape[1] == HINT_SIGN_FROM + 2 * 4
    module.load_state_dict(without_motion(module.state_dict()))
    core.checkpoint.save_module(module, str(folder / ZEROED))
    return TRAINED, ZEROED


@pytest.fixture(scope="module")
def lora_file(comfy_env, comfy_dirs, tiny_sd_checkpoint) -> str:
    import comfy.sd

    model, *_ = comfy.sd.load_checkpoint_guess_config(str(comfy_dirs.models["checkpoints"] / tiny_sd_checkpoint),
                                                      output_vae=False, output_clip=False)
    return save(lora_state_dict(model, scale=0.2), comfy_dirs.models["loras"] / "motion_lora.safetensors").name


def _graph(ckpt_name: str, strength: float = 1.0):
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=ckpt_name)
    image = g.node("EmptyImage", width=SIZE, height=SIZE, batch_size=1, color=0x3060C0)
    pos = g.node("CLIPTextEncode", text="a ball moving right", clip=ckpt.out(1))
    neg = g.node("CLIPTextEncode", text="blurry", clip=ckpt.out(1))
    i2v = g.node("MicroCinemaImageToVideo", positive=pos, negative=neg, vae=ckpt.out(2), image=image, width=SIZE,
                 height=SIZE, length=FRAMES, keyframe_position="center", keyframe_index=0,
                 appearance_strength=strength, noise_prior_gamma=0.02, crop="center", frame_rate=8.0,
                 resize_method="bilinear")
    return g, ckpt, i2v


def _ksampler(g, model, i2v, cfg=3.0):
    return g.node("KSampler", model=model, seed=3, steps=2, cfg=cfg, sampler_name="euler", scheduler="normal",
                  positive=i2v.out(0), negative=i2v.out(1), latent_image=i2v.out(2), denoise=1.0)


def _custom(g, model, i2v):
    guider = g.node("CFGGuider", model=model, positive=i2v.out(0), negative=i2v.out(1), cfg=3.0)
    return g.node("SamplerCustomAdvanced", noise=g.node("RandomNoise", noise_seed=3), guider=guider,
                  sampler=g.node("KSamplerSelect", sampler_name="euler"),
                  sigmas=g.node("BasicScheduler", model=model, scheduler="normal", steps=2, denoise=1.0),
                  latent_image=i2v.out(2))


def _motion(g, model, amount, schedule=""):
    return g.node(NODE_ID, model=model, motion_amount=amount, schedule=schedule)


@pytest.mark.graph
@pytest.mark.parity
def test_amount_one_is_the_model_without_the_node(run_graph, tiny_sd_checkpoint, module_files):
    g, ckpt, i2v = _graph(tiny_sd_checkpoint)
    mc = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=module_files[0], motion_module="none")
    runs = [_ksampler(g, mc, i2v), _ksampler(g, _motion(g, mc, 1.0), i2v),
            _ksampler(g, _motion(g, mc, 1.0, "0:1, 3:1"), i2v), _ksampler(g, _motion(g, mc, 0.5), i2v)]
    result = run_graph(g, outputs=runs)
    plain, one, ones, half = (result[r.id]["samples"] for r in runs)
    assert torch.equal(one, plain) and torch.equal(ones, plain)
    assert (half - plain).abs().max() > 1e-4  # and the node does act


@pytest.mark.graph
@pytest.mark.parity
def test_amount_zero_is_the_module_without_temporal_outputs(run_graph, tiny_sd_checkpoint, module_files, lora_file):
    """Through KSampler, SamplerCustomAdvanced, a LoRA loader after the node and our context windows (before the
    node), each against the same chain on the zeroed module file; AppearNet stays on (strength 0 differs)."""
    trained, zeroed = module_files
    g, ckpt, i2v = _graph(tiny_sd_checkpoint)
    mc = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=trained, motion_module="none")
    ref = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=zeroed, motion_module="none")
    off = _motion(g, mc, 0.0)
    lora = lambda m: g.node("LoraLoaderModelOnly", model=m, lora_name=lora_file, strength_model=1.0)  # noqa: E731
    windows = lambda m: g.node("MicroCinemaContextWindows", model=m, context_length=2, context_overlap=1,  # noqa: E731
                               context_schedule="standard_static", context_stride=1, closed_loop=False,
                               fuse_method="pyramid", keep_keyframe=False)
    _, _, i2v_off = None, None, g.node("MicroCinemaImageToVideo", **{**g[i2v.id]["inputs"],
                                                                     "appearance_strength": 0.0})
    pairs = [(_ksampler(g, off, i2v), _ksampler(g, ref, i2v)),
             (_custom(g, off, i2v), _custom(g, ref, i2v)),
             (_ksampler(g, lora(off), i2v), _ksampler(g, lora(ref), i2v)),
             (_ksampler(g, _motion(g, windows(mc), 0.0), i2v), _ksampler(g, windows(ref), i2v))]
    trained_run, appearance_off = _ksampler(g, mc, i2v), _ksampler(g, off, i2v_off)
    result = run_graph(g, outputs=[n for pair in pairs for n in pair] + [trained_run, appearance_off])
    for a, b in pairs:
        x, y = result[a.id]["samples"], result[b.id]["samples"]
        assert x.shape == (FRAMES, 4, SIZE // 8, SIZE // 8)
        assert torch.equal(x, y), (a.class_type, (x - y).abs().max().item())
    zero = result[pairs[0][0].id]["samples"]
    assert (zero - result[trained_run.id]["samples"]).abs().max() > 1e-3
    assert (zero - result[appearance_off.id]["samples"]).abs().max() > 1e-4  # AppearNet still acts at 0


@pytest.mark.graph
@pytest.mark.parametrize("field,value", [("schedule", "0:1, x"), ("schedule", "0:nan"), ("schedule", "-2:1"),
                                         ("motion_amount", math.nan), ("motion_amount", math.inf),
                                         ("motion_amount", -0.5), ("motion_amount", 7.0)])
def test_bad_widget_values_name_the_node_and_the_input(run_graph, tiny_sd_checkpoint, field, value):
    g, ckpt, _ = _graph(tiny_sd_checkpoint)
    mc = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name="[new untrained module]",
                motion_module="none")
    node = _motion(g, mc, 1.0).set(**{field: value})
    with pytest.raises(GraphValidationError) as info:
        run_graph(g, outputs=[node])
    errors = info.value.node_errors[node.id]["errors"]
    assert [e["extra_info"].get("input_name") for e in errors] == [field], errors  # once, on that input
    assert field in str(errors[0]["details"])
    if field == "schedule":  # ours (ComfyUI's own range check reports motion_amount)
        assert NODE in str(errors[0]["details"]), errors


@pytest.mark.graph
def test_linked_nan_and_plain_models_are_execution_errors(run_graph, tiny_sd_checkpoint):
    g, ckpt, _ = _graph(tiny_sd_checkpoint)
    mc = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name="[new untrained module]",
                motion_module="none")
    nan = _motion(g, mc, 1.0).set(motion_amount=g.node("PrimitiveFloat", value=math.nan).out(0))
    with pytest.raises(GraphExecutionError) as info:
        run_graph(g, outputs=[nan])
    assert NODE in info.value.exception_message and "'motion_amount'" in info.value.exception_message
    g, ckpt, _ = _graph(tiny_sd_checkpoint)
    plain = _motion(g, ckpt.out(0), 0.5)
    with pytest.raises(GraphExecutionError) as info:
        run_graph(g, outputs=[plain])
    assert NODE in info.value.exception_message and "'model'" in info.value.exception_message


@pytest.mark.graph
def test_schedule_under_stock_and_our_context_windows_agree(run_graph, comfy_env, tiny_sd_checkpoint, module_files):
    """The same schedule through ComfyUI's own windows (where they run our model) and through ours (same windows,
    no keyframe in every window): the same result up to float rounding, unlike a constant amount."""
    stock_cls = comfy_env.nodes.NODE_CLASS_MAPPINGS.get("ContextWindowsManual")
    if stock_cls is None or sub("stock_context").resize_hook() is None:
        pytest.skip("this ComfyUI's stock context windows cannot run the MicroCinema model")
    frames = 6
    g, ckpt, i2v = _graph(tiny_sd_checkpoint)
    i2v.set(length=frames)
    mc = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=module_files[0], motion_module="none")
    names = set(stock_cls.INPUT_TYPES().get("required", {})) | set(stock_cls.INPUT_TYPES().get("optional", {}))
    values = dict(context_length=3, context_overlap=1, context_schedule="standard_static", context_stride=1,
                  closed_loop=False, fuse_method="pyramid", dim=0, freenoise=False, cond_retain_index_list="",
                  split_conds_to_windows=False, latent_retain_index_list="", causal_window_fix=False)
    values = {k: v for k, v in values.items() if k in names}  # the inputs this ComfyUI's node has
    stock = lambda m: g.node("ContextWindowsManual", model=m, **values)  # noqa: E731
    ours = lambda m: g.node("MicroCinemaContextWindows", model=m, context_length=3, context_overlap=1,  # noqa: E731
                            context_schedule="standard_static", context_stride=1, closed_loop=False,
                            fuse_method="pyramid", keep_keyframe=False)
    schedule = "0:1.5, 5:0"
    runs = [_ksampler(g, stock(_motion(g, mc, 1.0, schedule)), i2v, cfg=1.0),
            _ksampler(g, _motion(g, ours(mc), 1.0, schedule), i2v, cfg=1.0),
            _ksampler(g, _motion(g, ours(mc), 0.75), i2v, cfg=1.0)]
    a, b, c = (r.float() for r in (run_graph(g, outputs=runs)[n.id]["samples"] for n in runs))
    scale = b.abs().max().item()
    assert a.shape == (frames, 4, SIZE // 8, SIZE // 8)
    assert (a - b).abs().max().item() <= 1e-4 * scale, (a - b).abs().max().item()
    assert (b - c).abs().max().item() > 1e-3 * scale
