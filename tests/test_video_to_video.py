"""MicroCinema Video To Video in real ComfyUI graphs: the noise prior at partial denoise is what the stock KSampler's
first model input holds (checked against an independently computed schedule), exact parity with Image To Video at
denoise 1 and with the source at denoise 0, the NOISE route, the keyframe default, Load Video, and errors that name
the input."""
from __future__ import annotations

import math

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
SD_SCALE = 0.18215  # SD1.x latent scale (model space = scale * raw VAE latent)


@pytest.fixture(scope="module")
def clip_png(comfy_dirs) -> str:
    """A 4-frame animated PNG at 32x32 (LoadImage returns its frames as one IMAGE batch)."""
    frames = [Image.fromarray((make_test_image(SIZE, SIZE, seed=s)[0].numpy() * 255).astype(np.uint8))
              for s in range(FRAMES)]
    frames[0].save(comfy_dirs.input / "v2v_clip.png", save_all=True, append_images=frames[1:], duration=125)
    return "v2v_clip.png"


@pytest.fixture(scope="module")
def keyframe_png(comfy_dirs) -> str:
    """A 70x50 picture: not the clip's size, so the node must resize and crop it."""
    image = (make_test_image(50, 70, seed=9)[0].numpy() * 255).astype(np.uint8)
    Image.fromarray(image).save(comfy_dirs.input / "v2v_keyframe.png")
    return "v2v_keyframe.png"


def base(g: Graph, ckpt):
    mc = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=NEW, motion_module="none")
    pos = g.node("CLIPTextEncode", text="a bright ball moving left", clip=ckpt.out(1))
    neg = g.node("CLIPTextEncode", text="", clip=ckpt.out(1))
    return mc, pos, neg


def v2v(g: Graph, ckpt, mc, pos, neg, *, video=None, video_latent=None, keyframe=None, length=0, position="first",
        index=0, strength=1.0, gamma=0.02, steps=4, denoise=0.5, sampler="euler", scheduler="normal"):
    sources = {k: v for k, v in (("video", video), ("video_latent", video_latent), ("keyframe", keyframe))
               if v is not None}
    return g.node("MicroCinemaVideoToVideo", positive=pos, negative=neg, model=mc, vae=ckpt.out(2), length=length,
                  keyframe_position=position, keyframe_index=index, appearance_strength=strength,
                  noise_prior_gamma=gamma, steps=steps, denoise=denoise, sampler_name=sampler, scheduler=scheduler,
                  crop="center", resize_method="bilinear", **sources)


def ksampler(g: Graph, model, cond, *, seed=3, steps=4, denoise=0.5, sampler="euler", scheduler="normal"):
    return g.node("KSampler", model=model, seed=seed, steps=steps, cfg=4.0, sampler_name=sampler,
                  scheduler=scheduler, positive=cond.out(0), negative=cond.out(1), latent_image=cond.out(2),
                  denoise=denoise)


def sd_normal_schedule_start(steps: int, denoise: float) -> float:
    """First sigma of the KSampler's 'normal' schedule on SD's scaled-linear betas, computed here in float64
    from the DDPM definition (not with ComfyUI's code): the shortened run covers the last steps+1 of
    int(steps / denoise) + 1 sigmas, timesteps spaced evenly from 999 to 0, log-sigma interpolated."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, 0)
    log_sigmas = (((1 - abar) / abar) ** 0.5).log()
    total = int(steps / denoise)
    t = np.linspace(999.0, 0.0, total)[total - steps]  # index of sigmas[-(steps + 1)] among total + 1 sigmas
    low = math.floor(t)
    frac = t - low
    high = min(low + 1, 999)
    return float(math.exp((1 - frac) * log_sigmas[low] + frac * log_sigmas[high]))


def first_model_input(model, seed, steps, denoise, pos, neg, latent, sampler="euler", scheduler="normal"):
    """(x, sigma) the diffusion model receives first when the stock KSampler code runs (a unet wrapper spy)."""
    import nodes as comfy_nodes

    seen = []

    def capture(apply_model, args):
        if not seen:
            seen.append((args["input"].clone(), float(args["timestep"].flatten()[0])))
        return apply_model(args["input"], args["timestep"], **args["c"])

    probe = model.clone()
    probe.set_model_unet_function_wrapper(capture)
    comfy_nodes.common_ksampler(probe, seed, steps, 4.0, sampler, scheduler, pos, neg, latent, denoise=denoise)
    return seen[0]


@pytest.mark.graph
@pytest.mark.parity
def test_prior_at_partial_denoise_is_the_sampler_start(run_graph, tiny_sd_checkpoint, clip_png, keyframe_png):
    """KSampler(denoise 0.5) on the node's LATENT hands the model x = z_video + s * (eps + gamma * z_c), with s the
    independently computed first sigma and z_video, z_c, eps from VAE Encode nodes and ComfyUI's seeded noise."""
    gamma, seed, steps, denoise = 0.05, 5, 4, 0.5
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    mc, pos, neg = base(g, ckpt)
    clip = g.node("LoadImage", image=clip_png)
    key = g.node("LoadImage", image=keyframe_png)
    cond = v2v(g, ckpt, mc, pos, neg, video=clip.out(0), keyframe=key.out(0), gamma=gamma, steps=steps,
               denoise=denoise)
    z_video = g.node("VAEEncode", pixels=clip.out(0), vae=ckpt.out(2))
    key_scaled = g.node("ImageScale", image=key.out(0), upscale_method="bilinear", width=SIZE, height=SIZE,
                        crop="center")
    z_key = g.node("VAEEncode", pixels=key_scaled, vae=ckpt.out(2))
    sampled = ksampler(g, mc, cond, seed=seed, steps=steps, denoise=denoise)
    result = run_graph(g, outputs=[cond, z_video, z_key, sampled, mc])
    assert result.output(clip.id, 0).shape[0] == FRAMES
    assert torch.isfinite(result[sampled.id]["samples"]).all()

    import comfy.sample

    pos_c, neg_c, latent = (result.output(cond.id, k) for k in range(3))
    x, sigma = first_model_input(result[mc.id], seed, steps, denoise, pos_c, neg_c, latent)
    expected_sigma = sd_normal_schedule_start(steps, denoise)
    assert sigma == pytest.approx(expected_sigma, rel=1e-4)
    assert sigma < 0.9 * 14.6  # a partial start: the plain sigma, not sqrt(1 + sigma^2)
    assert latent["microcinema"]["prior_sigma"] == pytest.approx(sigma, rel=1e-6)

    video_m = SD_SCALE * result[z_video.id]["samples"]
    key_m = SD_SCALE * result[z_key.id]["samples"]
    eps = comfy.sample.prepare_noise(latent["samples"], seed)
    expected = video_m + expected_sigma * (eps + gamma * key_m.expand(FRAMES, -1, -1, -1))
    for half in (x[:FRAMES], x[FRAMES:]):  # cond and uncond halves
        assert (half - expected).abs().max().item() <= 1e-4 * expected.abs().max().item()
    # the prior is really there: without it the start differs by far more than the tolerance
    without = video_m + expected_sigma * eps
    assert (x[:FRAMES] - without).abs().max().item() > 100 * (x[:FRAMES] - expected).abs().max().item()


@pytest.mark.graph
@pytest.mark.parametrize("field,value", [("denoise", 0.7), ("steps", 6), ("scheduler", "karras")])
def test_sampler_set_otherwise_is_refused(run_graph, tiny_sd_checkpoint, clip_png, field, value):
    """The prior was scaled for the first sigma of the KSampler the node was told about; a KSampler set otherwise
    starts elsewhere and is refused before the first step, naming the node and its inputs."""
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    mc, pos, neg = base(g, ckpt)
    clip = g.node("LoadImage", image=clip_png)
    cond = v2v(g, ckpt, mc, pos, neg, video=clip.out(0))
    sampled = ksampler(g, mc, cond, **{"denoise": 0.5, "steps": 4, "scheduler": "normal", field: value})
    with pytest.raises(GraphExecutionError) as info:
        run_graph(g, outputs=[sampled])
    message = info.value.exception_message or ""
    assert info.value.node_type == "KSampler"
    for word in ("MicroCinema Video To Video", "'steps'", "'denoise'", "'scheduler'", "noise level"):
        assert word in message, message
    # gamma 0: no prior, nothing to mismatch
    cond.set(noise_prior_gamma=0.0)
    assert torch.isfinite(run_graph(g, outputs=[sampled])[sampled.id]["samples"]).all()


@pytest.mark.graph
@pytest.mark.parity
def test_denoise_one_from_an_empty_latent_is_image_to_video(run_graph, tiny_sd_checkpoint, keyframe_png):
    """Where both are defined the same (a zero source latent, denoise 1), Video To Video gives bitwise Image To
    Video's conds, latent and sampled result."""
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    mc, pos, neg = base(g, ckpt)
    key = g.node("LoadImage", image=keyframe_png)
    empty = g.node("EmptyLatentImage", width=SIZE, height=SIZE, batch_size=FRAMES)
    cond = v2v(g, ckpt, mc, pos, neg, video_latent=empty, keyframe=key.out(0), position="center", gamma=0.03,
               steps=2, denoise=1.0)
    i2v = g.node("MicroCinemaImageToVideo", positive=pos, negative=neg, vae=ckpt.out(2), image=key.out(0),
                 width=SIZE, height=SIZE, length=FRAMES, keyframe_position="center", keyframe_index=0,
                 appearance_strength=1.0, noise_prior_gamma=0.03, crop="center", frame_rate=8.0,
                 resize_method="bilinear")
    a = ksampler(g, mc, cond, steps=2, denoise=1.0)
    b = ksampler(g, mc, i2v, steps=2, denoise=1.0)
    result = run_graph(g, outputs=[a, b, cond, i2v])
    assert torch.equal(result.output(cond.id, 2)["samples"], result.output(i2v.id, 2)["samples"])
    for k in (0, 1):
        mine, theirs = result.output(cond.id, k)[0][1]["model_conds"], result.output(i2v.id, k)[0][1]["model_conds"]
        assert torch.equal(mine["mc_hint"].cond, theirs["mc_hint"].cond)
        assert torch.equal(mine["mc_strength"].cond, theirs["mc_strength"].cond)
        assert mine["mc_num_frames"].cond == theirs["mc_num_frames"].cond == FRAMES
    assert torch.equal(result[a.id]["samples"], result[b.id]["samples"])


@pytest.mark.graph
@pytest.mark.parity
def test_denoise_zero_returns_the_source(run_graph, tiny_sd_checkpoint, clip_png):
    """At denoise 0 the KSampler takes no step: the prior is 0 and the output is the source's VAE Encode."""
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    mc, pos, neg = base(g, ckpt)
    clip = g.node("LoadImage", image=clip_png)
    cond = v2v(g, ckpt, mc, pos, neg, video=clip.out(0), gamma=0.5, denoise=0.0)
    z_video = g.node("VAEEncode", pixels=clip.out(0), vae=ckpt.out(2))
    sampled = ksampler(g, mc, cond, denoise=0.0)
    result = run_graph(g, outputs=[sampled, z_video, cond])
    assert result.output(cond.id, 2)["microcinema"]["prior_sigma"] is None
    assert torch.equal(result[sampled.id]["samples"], result[z_video.id]["samples"])


@pytest.mark.graph
@pytest.mark.parity
def test_noise_route_gives_the_same_start_at_partial_denoise(run_graph, tiny_sd_checkpoint, clip_png, keyframe_png):
    """SamplerCustomAdvanced with MicroCinema Noise Prior (no sigma needed) and the source latent (gamma 0 on the
    node) samples what the KSampler route samples."""
    gamma, seed, steps, denoise = 0.05, 7, 4, 0.5
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    mc, pos, neg = base(g, ckpt)
    clip = g.node("LoadImage", image=clip_png)
    key = g.node("ImageScale", image=g.node("LoadImage", image=keyframe_png).out(0), upscale_method="bilinear",
                 width=SIZE, height=SIZE, crop="center")
    with_prior = v2v(g, ckpt, mc, pos, neg, video=clip.out(0), keyframe=key.out(0), gamma=gamma, steps=steps,
                     denoise=denoise)
    plain = v2v(g, ckpt, mc, pos, neg, video=clip.out(0), keyframe=key.out(0), gamma=0.0, steps=steps,
                denoise=denoise)
    noise = g.node("MicroCinemaNoisePrior", noise_seed=seed,
                   keyframe=g.node("VAEEncode", pixels=key.out(0), vae=ckpt.out(2)), gamma=gamma)
    guider = g.node("CFGGuider", model=mc, positive=plain.out(0), negative=plain.out(1), cfg=4.0)
    sigmas = g.node("BasicScheduler", model=mc, scheduler="normal", steps=steps, denoise=denoise)
    custom = g.node("SamplerCustomAdvanced", noise=noise, guider=guider,
                    sampler=g.node("KSamplerSelect", sampler_name="euler"), sigmas=sigmas,
                    latent_image=plain.out(2))
    stock = ksampler(g, mc, with_prior, seed=seed, steps=steps, denoise=denoise)
    result = run_graph(g, outputs=[custom, stock])
    a, b = result[custom.id]["samples"], result[stock.id]["samples"]
    assert (a - b).abs().max().item() <= 1e-5 * b.abs().max().item()


@pytest.mark.graph
@pytest.mark.parametrize("source", ["video", "video_latent"])
def test_keyframe_defaults_to_each_videos_own_frame(run_graph, tiny_sd_checkpoint, clip_png, source):
    """Without a keyframe, each video's frame at the keyframe position is its appearance (2 videos of 2 frames)."""
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    mc, pos, neg = base(g, ckpt)
    clip = g.node("LoadImage", image=clip_png)
    z_video = g.node("VAEEncode", pixels=clip.out(0), vae=ckpt.out(2))
    src = {"video": clip.out(0)} if source == "video" else {"video_latent": z_video.out(0)}
    cond = v2v(g, ckpt, mc, pos, neg, length=2, position="last", **src)
    result = run_graph(g, outputs=[cond, z_video])
    hint = result.output(cond.id, 0)[0][1]["model_conds"]["mc_hint"].cond
    frames_m = SD_SCALE * result[z_video.id]["samples"]
    for t in range(FRAMES):
        own = frames_m[1] if t < 2 else frames_m[3]  # the last frame of video 0, of video 1
        assert torch.allclose(hint[t, :4], own, rtol=0, atol=1e-6)
    assert hint[:, 4].flatten(1).amax(1).tolist() == [0.0, 1.0, 0.0, 1.0]  # keyframe mask: last of each video


@pytest.mark.graph
@pytest.mark.parametrize("case,expected", [
    ("length_not_dividing", "'length'"),
    ("keyframes_vs_videos", "'keyframe'"),
    ("keyframes_vs_frames", "'video'"),
    ("size_not_multiple_of_8", "'video'"),
    ("both_sources", "'video_latent'"),
    ("no_source", "'video'"),
    ("index_outside_clip", "'keyframe_index'"),
    ("wrong_latent_channels", "'video_latent'"),
])
def test_mismatches_are_errors_naming_the_input(run_graph, tiny_sd_checkpoint, clip_png, keyframe_png, case,
                                                 expected):
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    mc, pos, neg = base(g, ckpt)
    clip = g.node("LoadImage", image=clip_png).out(0)  # 4 frames
    key = g.node("LoadImage", image=keyframe_png).out(0)
    three_keys = g.node("RepeatImageBatch", image=key, amount=3)
    kwargs = {
        "length_not_dividing": dict(video=clip, length=3),
        "keyframes_vs_videos": dict(video=clip, keyframe=three_keys, length=2),
        "keyframes_vs_frames": dict(video=clip, keyframe=three_keys),
        "size_not_multiple_of_8": dict(video=g.node("ImageScale", image=clip, upscale_method="bilinear", width=36,
                                                    height=SIZE, crop="disabled").out(0)),
        "both_sources": dict(video=clip, video_latent=g.node("EmptyLatentImage", width=SIZE, height=SIZE,
                                                             batch_size=FRAMES).out(0)),
        "no_source": dict(keyframe=key),
        "index_outside_clip": dict(video=clip, position="index", index=FRAMES),
        "wrong_latent_channels": dict(video_latent=g.node("EmptyHunyuanLatentVideo", width=SIZE, height=SIZE,
                                                          length=1, batch_size=1).out(0)),
    }[case]
    cond = v2v(g, ckpt, mc, pos, neg, **kwargs)
    with pytest.raises(GraphExecutionError) as info:
        run_graph(g, outputs=[cond])
    message = str(info.value.exception_message)
    assert "MicroCinema Video To Video" in message and expected in message, message


@pytest.mark.graph
@pytest.mark.parametrize("field,value", [("denoise", 1.5), ("steps", 0), ("length", -1),
                                         ("sampler_name", "no_such_sampler"), ("noise_prior_gamma", float("nan"))])
def test_bad_widgets_are_refused_before_the_run(run_graph, tiny_sd_checkpoint, clip_png, field, value):
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    mc, pos, neg = base(g, ckpt)
    cond = v2v(g, ckpt, mc, pos, neg, video=g.node("LoadImage", image=clip_png).out(0))
    cond.set(**{field: value})
    with pytest.raises(GraphValidationError) as info:
        run_graph(g, outputs=[cond])
    assert field in info.value.input_names() and field in str(info.value)


def _write_video(path, frames: torch.Tensor, fps: int = 8) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            image = av.VideoFrame.from_ndarray((frame.numpy() * 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(image):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.graph
def test_stock_load_video_feeds_the_node(run_graph, comfy_env, comfy_dirs, tiny_sd_checkpoint):
    """Load Video -> Get Video Components -> Video To Video -> KSampler -> VAE Decode: the clip's frame count
    comes back."""
    import nodes as comfy_nodes

    if not {"LoadVideo", "GetVideoComponents"} <= set(comfy_nodes.NODE_CLASS_MAPPINGS):
        pytest.skip("this ComfyUI version has no stock Load Video / Get Video Components")
    pytest.importorskip("av")
    frames = make_test_image(SIZE, SIZE, batch=6, seed=3)
    _write_video(comfy_dirs.input / "v2v_source.mp4", frames)
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    mc, pos, neg = base(g, ckpt)
    video = g.node("LoadVideo", file="v2v_source.mp4")
    parts = g.node("GetVideoComponents", video=video)
    cond = v2v(g, ckpt, mc, pos, neg, video=parts.out(0), steps=2, denoise=0.5)
    decoded = g.node("VAEDecode", samples=ksampler(g, mc, cond, steps=2, denoise=0.5), vae=ckpt.out(2))
    result = run_graph(g, outputs=[decoded, parts])
    assert result.output(parts.id, 0).shape == (6, SIZE, SIZE, 3)
    assert result[decoded.id].shape == (6, SIZE, SIZE, 3)
    assert torch.isfinite(result[decoded.id]).all()


def test_noise_scale_formula(mc):
    """c(s): sqrt(1 + s^2) at the schedule's sigma_max (ComfyUI's relative tolerance), s below it, 0 without a
    step; the prior leaves the source latent untouched when it is zero."""
    np_ = mc.noise_prior
    assert np_.sampler_noise_scale(None, 14.6) == 0.0
    assert np_.sampler_noise_scale(14.6, 14.6) == pytest.approx(math.sqrt(1 + 14.6**2))
    assert np_.sampler_noise_scale(14.6 * (1 - 5e-6), 14.6) == pytest.approx(math.sqrt(1 + (14.6 * (1 - 5e-6))**2))
    assert np_.sampler_noise_scale(7.0, 14.6) == 7.0
    z = torch.randn(6, 4, 2, 2)
    keys = torch.randn(2, 4, 2, 2)
    assert np_.video_prior_latent(z, keys, 0.0, 3.0) is z
    out = np_.video_prior_latent(z, keys, 0.1, 3.0)
    assert torch.allclose(out[4], z[4] + 0.3 * keys[1]) and torch.allclose(out[0], z[0] + 0.3 * keys[0])


@pytest.mark.graph
@pytest.mark.parametrize("node_type", ["MicroCinemaVideoToVideo", "MicroCinemaLastFrame", "MicroCinemaExtendVideo"])
def test_every_input_has_a_tooltip(comfy_env, node_type):
    import nodes

    spec = nodes.NODE_CLASS_MAPPINGS[node_type].INPUT_TYPES()
    inputs = {**spec.get("required", {}), **spec.get("optional", {})}
    assert inputs and all(options.get("tooltip") for _, options in inputs.values()), node_type
    if node_type == "MicroCinemaVideoToVideo":
        assert set(spec["optional"]) == {"video", "video_latent", "keyframe"}
