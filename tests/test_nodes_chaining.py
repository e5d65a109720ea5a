"""MicroCinema with the stock nodes users chain it with: ControlNet per frame, LoRAs, upscalers, video savers,
every sampler and scheduler through KSampler / KSamplerAdvanced / SamplerCustomAdvanced."""
from __future__ import annotations

import json

import pytest
import torch

from harness.extra_models import controlnet_state_dict, lora_state_dict, save, upscaler_state_dict
from harness.graph import Graph

NEW = "[new untrained module]"
FRAMES = 4
SIZE = 32


def base_graph(ckpt_name: str, model_override=None, strength=1.0, frames=FRAMES, cfg_neg=True):
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=ckpt_name)
    image = g.node("EmptyImage", width=48, height=40, batch_size=1, color=0x3060C0)
    pos = g.node("CLIPTextEncode", text="a ball moving right", clip=ckpt.out(1))
    neg = g.node("CLIPTextEncode", text="blurry", clip=ckpt.out(1))
    i2v = g.node("MicroCinemaImageToVideo", positive=pos, negative=neg, vae=ckpt.out(2), image=image, width=SIZE,
                 height=SIZE, length=frames, keyframe_position="center", keyframe_index=0,
                 appearance_strength=strength, noise_prior_gamma=0.02, crop="center", frame_rate=12.0,
                 resize_method="bilinear")
    return g, ckpt, i2v


def ks(g, model, i2v, positive=None, negative=None, seed=5, steps=2, sampler="euler", scheduler="normal", cfg=4.0):
    return g.node("KSampler", model=model, seed=seed, steps=steps, cfg=cfg, sampler_name=sampler, scheduler=scheduler,
                  positive=positive or i2v.out(0), negative=negative or i2v.out(1), latent_image=i2v.out(2),
                  denoise=1.0)


@pytest.fixture(scope="module")
def trained_like_module(comfy_env, comfy_dirs, tiny_sd_checkpoint) -> str:
    """A module with non-zero temporal and AppearNet weights (as after training), saved in models/microcinema."""
    import importlib

    core = importlib.import_module(comfy_env.pack_module + ".microcinema_core")
    import comfy.sd

    model, *_ = comfy.sd.load_checkpoint_guess_config(str(comfy_dirs.models["checkpoints"] / tiny_sd_checkpoint),
                                                      output_vae=False, output_clip=False)
    module = core.patching.new_module(model, core.module.ModuleConfig())
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not name.startswith("appearnet.") or "hint_in" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    path = comfy_dirs.models["microcinema"] / "trained_like.safetensors"
    core.checkpoint.save_module(module, str(path))
    return path.name


@pytest.fixture(scope="module")
def tiny_controlnet(comfy_env, comfy_dirs) -> str:
    return save(controlnet_state_dict(), comfy_dirs.models["controlnet"] / "tiny_cn.safetensors").name


@pytest.fixture(scope="module")
def tiny_lora(comfy_env, comfy_dirs, tiny_sd_checkpoint) -> str:
    import comfy.sd

    model, *_ = comfy.sd.load_checkpoint_guess_config(str(comfy_dirs.models["checkpoints"] / tiny_sd_checkpoint),
                                                      output_vae=False, output_clip=False)
    return save(lora_state_dict(model), comfy_dirs.models["loras"] / "tiny_lora.safetensors").name


@pytest.fixture(scope="module")
def tiny_upscaler(comfy_env, comfy_dirs) -> str:
    return save(upscaler_state_dict(), comfy_dirs.models["upscale_models"] / "tiny_x2.safetensors").name


@pytest.mark.graph
def test_trained_module_animates_and_strength_zero_is_appearnet_off(run_graph, tiny_sd_checkpoint,
                                                                     trained_like_module):
    """A module with trained (non-zero) weights changes the result; AppearNet strength 0 differs from 1."""
    g, ckpt, i2v = base_graph(tiny_sd_checkpoint)
    mc = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=trained_like_module, motion_module="none")
    _, _, i2v0 = None, None, g.node("MicroCinemaImageToVideo", **{**g[i2v.id]["inputs"], "appearance_strength": 0.0})
    video, plain, off = ks(g, mc, i2v), ks(g, ckpt.out(0), i2v), ks(g, mc, i2v0)
    result = run_graph(g, outputs=[video, plain, off])
    a, b, c = (result[n.id]["samples"] for n in (video, plain, off))
    assert torch.isfinite(a).all()
    assert (a - b).abs().max() > 1e-3 and (a - c).abs().max() > 1e-4


@pytest.mark.graph
def test_controlnet_with_one_hint_per_frame(run_graph, tiny_sd_checkpoint, tiny_controlnet):
    g, ckpt, i2v = base_graph(tiny_sd_checkpoint)
    mc = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=NEW, motion_module="none")
    colours = [g.node("EmptyImage", width=SIZE, height=SIZE, batch_size=1, color=c)
               for c in (0x000000, 0x404040, 0x808080, 0xFFFFFF)]
    hint = colours[0]
    for nxt in colours[1:]:
        hint = g.node("ImageBatch", image1=hint, image2=nxt)
    cn = g.node("ControlNetLoader", control_net_name=tiny_controlnet)
    applied = g.node("ControlNetApplyAdvanced", positive=i2v.out(0), negative=i2v.out(1), control_net=cn,
                     image=hint, strength=1.0, start_percent=0.0, end_percent=1.0)
    zero = g.node("ControlNetApplyAdvanced", positive=i2v.out(0), negative=i2v.out(1), control_net=cn,
                  image=hint, strength=0.0, start_percent=0.0, end_percent=1.0)
    with_cn = ks(g, mc, i2v, positive=applied.out(0), negative=applied.out(1))
    cn_zero = ks(g, mc, i2v, positive=zero.out(0), negative=zero.out(1))
    without = ks(g, mc, i2v)
    result = run_graph(g, outputs=[with_cn, cn_zero, without])
    a, z, b = (result[n.id]["samples"] for n in (with_cn, cn_zero, without))
    assert a.shape == (FRAMES, 4, 4, 4)
    assert (a - b).abs().max() > 1e-3
    assert (z - b).abs().max() <= 1e-5


@pytest.mark.graph
def test_lora_before_and_after_applying_the_module(run_graph, tiny_sd_checkpoint, tiny_lora):
    g, ckpt, i2v = base_graph(tiny_sd_checkpoint)
    lora_first = g.node("LoraLoaderModelOnly", model=ckpt.out(0), lora_name=tiny_lora, strength_model=1.0)
    mc_after_lora = g.node("MicroCinemaApplyModule", model=lora_first, module_name=NEW, motion_module="none")
    mc = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=NEW, motion_module="none")
    lora_after = g.node("LoraLoaderModelOnly", model=mc, lora_name=tiny_lora, strength_model=1.0)
    a, b, c = ks(g, mc_after_lora, i2v), ks(g, lora_after, i2v), ks(g, mc, i2v)
    result = run_graph(g, outputs=[a, b, c])
    la, lb, plain = (result[n.id]["samples"] for n in (a, b, c))
    assert (la - lb).abs().max() <= 1e-5 * plain.abs().max()
    assert (la - plain).abs().max() > 1e-3


@pytest.mark.graph
def test_decode_upscale_and_save_webp_and_mp4_with_workflow(run_graph, comfy_dirs, tiny_sd_checkpoint, tiny_upscaler):
    import av

    g, ckpt, i2v = base_graph(tiny_sd_checkpoint)
    mc = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=NEW, motion_module="none")
    video = ks(g, mc, i2v)
    frames = g.node("VAEDecode", samples=video, vae=ckpt.out(2))
    scaled = g.node("ImageScaleBy", image=frames, upscale_method="bilinear", scale_by=1.5)
    up_model = g.node("UpscaleModelLoader", model_name=tiny_upscaler)
    upscaled = g.node("ImageUpscaleWithModel", upscale_model=up_model, image=scaled)
    webp = g.node("SaveAnimatedWEBP", images=upscaled, filename_prefix="mc_test", fps=i2v.out(3), lossless=False,
                  quality=80, method="fastest")
    clip = g.node("CreateVideo", images=upscaled, fps=i2v.out(3))
    mp4 = g.node("SaveVideo", video=clip, filename_prefix="video/mc_test", format="mp4", codec="h264")
    workflow = {"nodes": [], "links": [], "version": 0.4, "extra": {"note": "microcinema test"}}
    result = run_graph(g, outputs=[webp, mp4, upscaled], extra_data={"extra_pnginfo": {"workflow": workflow}})
    assert result[upscaled.id].shape == (FRAMES, 96, 96, 3)  # 32 * 1.5 * 2
    webps = list(comfy_dirs.output.glob("mc_test*.webp"))
    mp4s = list(comfy_dirs.output.glob("video/mc_test*.mp4"))
    assert webps and mp4s
    with av.open(str(mp4s[-1])) as container:
        stream = container.streams.video[0]
        assert float(stream.average_rate) == pytest.approx(12.0)
        assert sum(1 for _ in container.decode(stream)) == FRAMES
        metadata = dict(container.metadata)
    assert "prompt" in metadata and "MicroCinemaImageToVideo" in metadata["prompt"]
    assert json.loads(metadata["workflow"])["extra"]["note"] == "microcinema test"


def _samplers_and_schedulers():
    import comfy.samplers

    return list(comfy.samplers.KSampler.SAMPLERS), list(comfy.samplers.KSampler.SCHEDULERS)


REPRESENTATIVE_SAMPLERS = ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_sde", "uni_pc", "lcm", "ddim"]
REPRESENTATIVE_SCHEDULERS = ["normal", "karras", "exponential", "sgm_uniform", "simple", "beta"]


@pytest.mark.graph
@pytest.mark.slow
def test_every_sampler_and_scheduler_with_stock_samplers(run_graph, comfy_env, tiny_sd_checkpoint):
    """Every sampler (scheduler 'normal') and every scheduler (sampler 'euler'): see _sampler_sweep."""
    _sampler_sweep(run_graph, tiny_sd_checkpoint, *_samplers_and_schedulers())


@pytest.mark.graph
def test_representative_samplers_and_schedulers(run_graph, comfy_env, tiny_sd_checkpoint):
    """The default run's cut of the sweep: one sampler of each family, the common schedulers."""
    samplers, schedulers = _samplers_and_schedulers()
    _sampler_sweep(run_graph, tiny_sd_checkpoint, [s for s in REPRESENTATIVE_SAMPLERS if s in samplers],
                   [s for s in REPRESENTATIVE_SCHEDULERS if s in schedulers])


def _sampler_sweep(run_graph, tiny_sd_checkpoint, samplers, schedulers):
    """One graph: the samplers (scheduler 'normal') and the schedulers (sampler 'euler') through KSampler,
    plus KSamplerAdvanced and SamplerCustomAdvanced; 2 frames, cfg 1 keeps it cheap."""
    g, ckpt, i2v = base_graph(tiny_sd_checkpoint, frames=2)
    mc = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=NEW, motion_module="none")
    runs = [ks(g, mc, i2v, sampler=s, steps=3, cfg=1.0) for s in samplers]
    runs += [ks(g, mc, i2v, scheduler=s, steps=3, cfg=1.0) for s in schedulers]
    runs.append(g.node("KSamplerAdvanced", model=mc, add_noise="enable", noise_seed=5, steps=3, cfg=2.0,
                       sampler_name="euler", scheduler="karras", positive=i2v.out(0), negative=i2v.out(1),
                       latent_image=i2v.out(2), start_at_step=0, end_at_step=10000,
                       return_with_leftover_noise="disable"))
    guider = g.node("CFGGuider", model=mc, positive=i2v.out(0), negative=i2v.out(1), cfg=2.0)
    runs.append(g.node("SamplerCustomAdvanced", noise=g.node("RandomNoise", noise_seed=5), guider=guider,
                       sampler=g.node("KSamplerSelect", sampler_name="dpmpp_2m"),
                       sigmas=g.node("BasicScheduler", model=mc, scheduler="simple", steps=3, denoise=1.0),
                       latent_image=i2v.out(2)))
    result = run_graph(g, outputs=runs)
    for node in runs:
        samples = result[node.id]["samples"]
        assert samples.shape == (2, 4, 4, 4), node.class_type
        assert torch.isfinite(samples).all(), g[node.id]
