"""Weight storage in fp16 / bf16 / fp8 with compute casting, ComfyUI offloading, chunked/tiled VAE decode."""
from __future__ import annotations

import pytest
import torch

from harness.graph import Graph
from pack_import import sub


def _sample(model, comfy_env, frames=2):
    import comfy.sd
    import nodes as comfy_nodes

    conditioning = sub("conditioning")
    noise_prior = sub("noise_prior")
    keys = torch.randn(1, 4, 4, 4)
    conds = conditioning.appearance_model_conds(keys, frames, frames // 2, 1.0)
    text = [[torch.zeros(1, 77, 768), {}]]
    positive = conditioning.attach(text, conds)
    latent = {"samples": noise_prior.ksampler_prior_latent(keys, frames, 0.02, noise_prior.sd_sigma_max())}
    return comfy_nodes.common_ksampler(model, 1, 2, 1.0, "euler", "normal", positive, positive, latent)[0]["samples"]


@pytest.mark.graph
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float8_e4m3fn])
def test_module_stored_in_low_precision_samples(comfy_env, comfy_dirs, tiny_sd_checkpoint, dtype):
    import comfy.sd

    path = str(comfy_dirs.models["checkpoints"] / tiny_sd_checkpoint)
    model, *_ = comfy.sd.load_checkpoint_guess_config(path, output_vae=False, output_clip=False,
                                                      model_options={"dtype": dtype})
    assert model.model.get_dtype() == dtype
    video = sub("loading").microcinema_model(model, None)
    module = video.get_model_object("diffusion_model").microcinema
    assert {p.dtype for p in module.parameters()} == {dtype}
    out = _sample(video, comfy_env)
    assert out.shape == (2, 4, 4, 4) and torch.isfinite(out).all()


@pytest.mark.graph
def test_module_is_offloaded_with_the_model(comfy_env, comfy_dirs, tiny_sd_checkpoint):
    """ComfyUI's model management loads and unloads the module with the UNet (it is in the patched tree),
    and the patcher's size counts it."""
    import comfy.model_management
    import comfy.sd

    path = str(comfy_dirs.models["checkpoints"] / tiny_sd_checkpoint)
    model, *_ = comfy.sd.load_checkpoint_guess_config(path, output_vae=False, output_clip=False)
    video = sub("loading").microcinema_model(model, None)
    module = video.get_model_object("diffusion_model").microcinema
    assert video.model_size() >= model.model_size() + comfy.model_management.module_size(module)
    _sample(video, comfy_env)
    assert any(m.model is video for m in comfy.model_management.current_loaded_models)
    comfy.model_management.unload_all_models()
    # unpatched again: the BaseModel's diffusion_model is the plain SD UNet (stage-1 samplers see SD)
    assert type(model.model.diffusion_model).__name__ == "UNetModel"


@pytest.mark.graph
@pytest.mark.slow
def test_tiled_vae_decode_of_a_video(run_graph, tiny_sd_checkpoint):
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    pos = g.node("CLIPTextEncode", text="x", clip=ckpt.out(1))
    image = g.node("EmptyImage", width=64, height=64, batch_size=1, color=0x204080)
    i2v = g.node("MicroCinemaImageToVideo", positive=pos, negative=pos, vae=ckpt.out(2), image=image, width=64,
                 height=64, length=3, keyframe_position="center", keyframe_index=0, appearance_strength=1.0,
                 noise_prior_gamma=0.02, crop="center", frame_rate=8.0, resize_method="bilinear")
    tiled = g.node("VAEDecodeTiled", samples=i2v.out(2), vae=ckpt.out(2), tile_size=64, overlap=0,
                   temporal_size=64, temporal_overlap=8)
    plain = g.node("VAEDecode", samples=i2v.out(2), vae=ckpt.out(2))
    result = run_graph(g, outputs=[tiled, plain])
    assert result[tiled.id].shape == result[plain.id].shape == (3, 64, 64, 3)


@pytest.mark.graph
def test_video_decodes_in_frame_chunks_with_the_stock_vae_decode(comfy_env, comfy_dirs, tiny_sd_checkpoint,
                                                                 monkeypatch):
    """Frames travel in the batch, so the stock VAE Decode splits a long video into as many frames as free memory
    allows per decoder call; told each frame needs more than is free, it decodes one frame per call, and the
    frames are the same as in one call."""
    import comfy.sd
    import nodes as comfy_nodes

    path = str(comfy_dirs.models["checkpoints"] / tiny_sd_checkpoint)
    _, _, vae, *_ = comfy.sd.load_checkpoint_guess_config(path, output_vae=True, output_clip=False)
    latent = {"samples": torch.randn(12, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
    whole = comfy_nodes.VAEDecode().decode(vae, latent)[0]
    calls: list[int] = []
    decode = vae.first_stage_model.decode

    def counting_decode(samples, *args, **kwargs):
        calls.append(samples.shape[0])
        return decode(samples, *args, **kwargs)

    monkeypatch.setattr(vae.first_stage_model, "decode", counting_decode)
    monkeypatch.setattr(vae, "memory_used_decode", lambda *args, **kwargs: 2.0 ** 50)  # more than any machine has
    chunked = comfy_nodes.VAEDecode().decode(vae, latent)[0]
    assert calls == [1] * 12
    assert chunked.shape == whole.shape == (12, 64, 64, 3)
    assert torch.allclose(chunked, whole, atol=1e-5)


def _estimates_passed_to_comfy(monkeypatch) -> list[float]:
    """A spy on ComfyUI's real loader: the memory figure each sampling run asks it to free."""
    import comfy.model_management

    seen: list[float] = []
    real = comfy.model_management.load_models_gpu

    def spy(models, memory_required=0, *args, **kwargs):
        seen.append(memory_required)
        return real(models, memory_required, *args, **kwargs)

    monkeypatch.setattr(comfy.model_management, "load_models_gpu", spy)
    return seen


@pytest.mark.graph
def test_memory_estimate_uses_the_video_factor_on_the_first_run(comfy_env, comfy_dirs, tiny_sd_checkpoint,
                                                                 monkeypatch):
    """ComfyUI estimates a run before it applies object patches, so the first run of a fresh video model used to
    be sized with plain SD's factor; now the first and later runs ask for the same memory, SD's times ours."""
    import comfy.model_management
    import comfy.sd

    patching = sub("patching")
    path = str(comfy_dirs.models["checkpoints"] / tiny_sd_checkpoint)
    model, *_ = comfy.sd.load_checkpoint_guess_config(path, output_vae=False, output_clip=False)
    comfy.model_management.unload_all_models()
    sd_factor = model.model.memory_usage_factor
    video = sub("loading").microcinema_model(model, None)
    frames = 8
    sd_figure = model.model.memory_required([2 * frames, 4, 4, 4])  # cond + uncond, plain SD factor
    seen = _estimates_passed_to_comfy(monkeypatch)
    _sample(video, comfy_env, frames=frames)
    _sample(video, comfy_env, frames=frames)  # now loaded: the factor is patched in already
    first, second = seen
    assert first >= sd_figure * patching.MEMORY_FACTOR_APPEARNET * 0.999
    assert second >= sd_figure * patching.MEMORY_FACTOR_APPEARNET * 0.999
    assert first <= second * 1.15  # the same figure (up to rounding the frame count up)
    comfy.model_management.unload_all_models()
    assert model.model.memory_usage_factor == sd_factor  # unpatched: stage-1 samplers are sized as SD again
    assert type(model.model.diffusion_model).__name__ == "UNetModel"


@pytest.mark.graph
def test_memory_estimate_with_context_windows_is_per_window(comfy_env, comfy_dirs, tiny_sd_checkpoint, monkeypatch):
    """With windows of 4 frames (+ the keyframe) over 16, the UNet holds 5 frames at a time: the estimate follows."""
    import comfy.model_management
    import comfy.sd

    path = str(comfy_dirs.models["checkpoints"] / tiny_sd_checkpoint)
    model, *_ = comfy.sd.load_checkpoint_guess_config(path, output_vae=False, output_clip=False)
    video = sub("loading").microcinema_model(model, None)
    windowed = video.clone()
    settings = sub("context_windows").ContextSettings(length=4, overlap=1)
    windowed.model_options.setdefault("transformer_options", {})[sub("video_unet").CONTEXT_OPTION] = settings
    seen = _estimates_passed_to_comfy(monkeypatch)
    _sample(video, comfy_env, frames=16)
    _sample(windowed, comfy_env, frames=16)
    whole, per_window = seen
    assert per_window == pytest.approx(whole * 5 / 16, rel=0.1)
    comfy.model_management.unload_all_models()
