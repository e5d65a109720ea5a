"""MicroCinema nodes in real ComfyUI graphs: stage 1 -> stage 2 with stock samplers, parity with the SD model at
strength 0, the two noise-prior routes, validation errors that name the input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from harness.extra_models import make_test_image
from harness.graph import Graph
from harness.runner import GraphExecutionError, GraphValidationError

NEW = "[new untrained module]"
FRAMES = 4
SIZE = 32  # pixels; latent 4x4


@pytest.fixture(scope="module")
def keyframe_png(comfy_dirs) -> str:
    """A 70x50 RGB picture in ComfyUI's input folder (not the video size: the node must resize/crop)."""
    image = (make_test_image(50, 70)[0].numpy() * 255).astype(np.uint8)
    Image.fromarray(image).save(comfy_dirs.input / "keyframe.png")
    return "keyframe.png"


def stage2(g: Graph, ckpt, image, *, strength=1.0, gamma=0.02, length=FRAMES, position="center", index=0,
           module=NEW, model=None):
    mc = g.node("MicroCinemaApplyModule", model=model or ckpt.out(0), module_name=module, motion_module="none")
    pos = g.node("CLIPTextEncode", text="a bright ball moving left", clip=ckpt.out(1))
    neg = g.node("CLIPTextEncode", text="", clip=ckpt.out(1))
    i2v = g.node("MicroCinemaImageToVideo", positive=pos, negative=neg, vae=ckpt.out(2), image=image,
                 width=SIZE, height=SIZE, length=length, keyframe_position=position, keyframe_index=index,
                 appearance_strength=strength, noise_prior_gamma=gamma, crop="center", frame_rate=8.0,
                 resize_method="bilinear")
    return mc, i2v


def ksampler(g: Graph, model, i2v, seed=3, steps=2, sampler="euler", scheduler="normal", cfg=4.0):
    return g.node("KSampler", model=model, seed=seed, steps=steps, cfg=cfg, sampler_name=sampler,
                  scheduler=scheduler, positive=i2v.out(0), negative=i2v.out(1), latent_image=i2v.out(2), denoise=1.0)


@pytest.mark.graph
def test_text_to_image_to_video_with_stock_ksampler(run_graph, tiny_sd_checkpoint):
    """Stage 1 is a plain SD txt2img; its decoded image feeds stage 2; frames come out of VAEDecode."""
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    t2i_pos = g.node("CLIPTextEncode", text="a bright ball", clip=ckpt.out(1))
    empty = g.node("EmptyLatentImage", width=SIZE, height=SIZE, batch_size=1)
    t2i = g.node("KSampler", model=ckpt.out(0), seed=1, steps=2, cfg=4.0, sampler_name="euler", scheduler="normal",
                 positive=t2i_pos, negative=t2i_pos, latent_image=empty, denoise=1.0)
    keyframe = g.node("VAEDecode", samples=t2i, vae=ckpt.out(2))
    mc, i2v = stage2(g, ckpt, keyframe)
    video = ksampler(g, mc, i2v)
    frames = g.node("VAEDecode", samples=video, vae=ckpt.out(2))
    result = run_graph(g, outputs=[frames, i2v])
    images = result[frames.id]
    assert images.shape == (FRAMES, SIZE, SIZE, 3)
    assert torch.isfinite(images).all()
    latent = result.output(i2v.id, 2)
    assert latent["samples"].shape == (FRAMES, 4, SIZE // 8, SIZE // 8)
    positive = result.output(i2v.id, 0)
    assert {"mc_hint", "mc_strength", "mc_num_frames"} <= set(positive[0][1]["model_conds"])


@pytest.mark.graph
@pytest.mark.parity
@pytest.mark.parametrize("strength", [0.0, 1.0])
def test_untrained_module_reproduces_sd_sampling(run_graph, tiny_sd_checkpoint, keyframe_png, strength):
    """A fresh module (zero temporal outputs, zero injection) gives the SD model's samples on the same latents."""
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    image = g.node("LoadImage", image=keyframe_png)
    mc, i2v = stage2(g, ckpt, image.out(0), strength=strength)
    video = ksampler(g, mc, i2v)
    plain = ksampler(g, ckpt.out(0), i2v)
    result = run_graph(g, outputs=[video, plain])
    a, b = result[video.id]["samples"], result[plain.id]["samples"]
    assert a.shape == (FRAMES, 4, 4, 4)
    assert (a - b).abs().max().item() <= 1e-5


@pytest.mark.graph
@pytest.mark.parity
def test_noise_prior_routes_start_identically(run_graph, comfy_env, tiny_sd_checkpoint, keyframe_png):
    """KSampler with the prior in latent_image and SamplerCustomAdvanced with MicroCinema Noise Prior (and a zero
    latent) give the model the same first input, and, with a deterministic sampler, the same result."""
    gamma, seed = 0.03, 11
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    raw = g.node("LoadImage", image=keyframe_png)
    image = g.node("ImageScale", image=raw.out(0), upscale_method="bilinear", width=SIZE, height=SIZE, crop="center")
    mc, i2v = stage2(g, ckpt, image.out(0), gamma=gamma)
    _, i2v_zero = stage2(g, ckpt, image.out(0), gamma=0.0)
    keyframe = g.node("VAEEncode", pixels=image.out(0), vae=ckpt.out(2))
    noise = g.node("MicroCinemaNoisePrior", noise_seed=seed, keyframe=keyframe, gamma=gamma)
    guider = g.node("CFGGuider", model=mc, positive=i2v_zero.out(0), negative=i2v_zero.out(1), cfg=4.0)
    sampler = g.node("KSamplerSelect", sampler_name="euler")
    sigmas = g.node("BasicScheduler", model=mc, scheduler="normal", steps=2, denoise=1.0)
    custom = g.node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                    latent_image=i2v_zero.out(2))
    stock = ksampler(g, mc, i2v, seed=seed)
    result = run_graph(g, outputs=[custom, stock, mc, i2v, i2v_zero, noise])
    a, b = result[custom.id]["samples"], result[stock.id]["samples"]
    # same start up to float rounding: (n + g z) * s versus n * s + g s z
    assert (a - b).abs().max().item() <= 1e-5 * b.abs().max().item()

    # First model input, captured through a unet wrapper on the same MODEL.
    import comfy.sample
    import nodes as comfy_nodes

    model = result[mc.id]
    firsts = []

    def capture(apply_model, args):
        if not firsts:
            firsts.append(args["input"].clone())
        return apply_model(args["input"], args["timestep"], **args["c"])

    probe = model.clone()
    probe.set_model_unet_function_wrapper(capture)
    pos, neg, latent = (result.output(i2v.id, k) for k in range(3))
    comfy_nodes.common_ksampler(probe, seed, 1, 4.0, "euler", "normal", pos, neg, latent, denoise=1.0)
    zero_latent = result.output(i2v_zero.id, 2)
    noise_obj = result[noise.id]
    start = noise_obj.generate_noise(zero_latent)
    # KSampler: x_T = n * sqrt(1 + s^2) + latent_image, model input x_T / sqrt(1 + s^2) = n + gamma z_c
    assert firsts[0].shape[0] == 2 * FRAMES  # cond + uncond
    sigma_max = float(probe.get_model_object("model_sampling").sigma_max)
    first_input = firsts[0] / (1.0 + sigma_max**2) ** 0.5  # calculate_input of EPS models
    for half in (first_input[:FRAMES], first_input[FRAMES:]):
        assert (half - start).abs().max().item() <= 1e-5 * start.abs().max().item()


@pytest.mark.graph
@pytest.mark.parametrize("position,index,expected", [("center", 0, 2), ("first", 0, 0), ("last", 0, 3),
                                                     ("index", 1, 1), ("index", -1, 3)])
def test_keyframe_position_reaches_the_model(run_graph, tiny_sd_checkpoint, keyframe_png, position, index, expected):
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    image = g.node("LoadImage", image=keyframe_png)
    _, i2v = stage2(g, ckpt, image.out(0), position=position, index=index)
    result = run_graph(g, outputs=[i2v])
    hint = result.output(i2v.id, 0)[0][1]["model_conds"]["mc_hint"].cond
    mask = hint[:, -2].flatten(1).amax(1)  # channels: keyframe latent, mask, offset
    assert mask.tolist() == [1.0 if t == expected else 0.0 for t in range(FRAMES)]


@pytest.mark.graph
def test_several_keyframes_make_several_videos(run_graph, comfy_env, tiny_sd_checkpoint):
    """An IMAGE batch of 2 keyframes gives 2 videos of `length` frames, each with its own keyframe."""
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    a = g.node("EmptyImage", width=SIZE, height=SIZE, batch_size=1, color=0xFF0000)
    b = g.node("EmptyImage", width=SIZE, height=SIZE, batch_size=1, color=0x0000FF)
    both = g.node("ImageBatch", image1=a, image2=b)
    mc, i2v = stage2(g, ckpt, both.out(0))
    video = ksampler(g, mc, i2v)
    result = run_graph(g, outputs=[video, i2v])
    assert result[video.id]["samples"].shape == (2 * FRAMES, 4, 4, 4)
    hint = result.output(i2v.id, 0)[0][1]["model_conds"]["mc_hint"].cond
    assert torch.equal(hint[0, :4], hint[FRAMES - 1, :4]) and not torch.equal(hint[0, :4], hint[FRAMES, :4])


@pytest.mark.graph
@pytest.mark.parametrize("channels", [1, 4])
def test_greyscale_and_rgba_keyframes(run_graph, comfy_dirs, tiny_sd_checkpoint, channels):
    image = (make_test_image(20, 30, channels=channels)[0].numpy() * 255).astype(np.uint8)
    mode = "L" if channels == 1 else "RGBA"
    Image.fromarray(image.squeeze(-1) if channels == 1 else image, mode).save(comfy_dirs.input / f"key{channels}.png")
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    img = g.node("LoadImage", image=f"key{channels}.png")
    _, i2v = stage2(g, ckpt, img.out(0))
    result = run_graph(g, outputs=[i2v])
    assert result.output(i2v.id, 2)["samples"].shape == (FRAMES, 4, 4, 4)


@pytest.mark.graph
@pytest.mark.parametrize("field,value,expected,refused", [
    ("length", 0, "length", "validation"), ("noise_prior_gamma", 5.0, "noise_prior_gamma", "validation"),
    ("appearance_strength", -1.0, "appearance_strength", "validation"),
    ("keyframe_position", "middle", "keyframe_position", "validation"),
    # rules ComfyUI has no per-input check for are refused when the node runs (nodes/inputs.py says why)
    ("keyframe_index", 9, "'keyframe_index'", "execution"), ("width", 30, "'width'", "execution"),
])
def test_bad_inputs_are_node_errors_naming_the_input(run_graph, tiny_sd_checkpoint, keyframe_png, field, value,
                                                     expected, refused):
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    image = g.node("LoadImage", image=keyframe_png)
    _, i2v = stage2(g, ckpt, image.out(0), position="index")
    i2v.set(**{field: value})
    with pytest.raises(GraphValidationError if refused == "validation" else GraphExecutionError) as info:
        run_graph(g, outputs=[i2v])
    assert expected in str(info.value)
    if refused == "execution":
        assert info.value.node_type == "MicroCinemaImageToVideo" and "MicroCinema Image To Video" in str(info.value)


@pytest.mark.graph
def test_negative_without_appearance_is_a_clear_error(run_graph, tiny_sd_checkpoint, keyframe_png):
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    image = g.node("LoadImage", image=keyframe_png)
    mc, i2v = stage2(g, ckpt, image.out(0))
    bare = g.node("CLIPTextEncode", text="", clip=ckpt.out(1))
    ks = g.node("KSampler", model=mc, seed=1, steps=1, cfg=4.0, sampler_name="euler", scheduler="normal",
                positive=i2v.out(0), negative=bare, latent_image=i2v.out(2), denoise=1.0)
    with pytest.raises(GraphExecutionError) as info:
        run_graph(g, outputs=[ks])
    assert "negative" in str(info.value) and "MicroCinema Image To Video" in str(info.value)


@pytest.mark.graph
@pytest.mark.parity
def test_convenience_sampler_equals_the_separate_nodes(run_graph, tiny_sd_checkpoint, keyframe_png):
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    image = g.node("LoadImage", image=keyframe_png)
    mc, i2v = stage2(g, ckpt, image.out(0))
    separate = ksampler(g, mc, i2v)
    frames = g.node("VAEDecode", samples=separate, vae=ckpt.out(2))
    one = g.node("MicroCinemaSampler", model=mc, positive=g[i2v.id]["inputs"]["positive"],
                 negative=g[i2v.id]["inputs"]["negative"], vae=ckpt.out(2), image=image.out(0), width=SIZE,
                 height=SIZE, length=FRAMES, seed=3, steps=2, cfg=4.0, sampler_name="euler", scheduler="normal",
                 keyframe_position="center", keyframe_index=0, appearance_strength=1.0, noise_prior_gamma=0.02,
                 frame_rate=8.0)
    result = run_graph(g, outputs=[frames, one])
    assert torch.equal(result.output(one.id, 0), result[frames.id])
    assert result.output(one.id, 2) == 8.0
