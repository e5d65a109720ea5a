"""Stock ComfyUI video helpers on MicroCinema's MODEL (issue 17, part 3): CFG-ramp nodes, SamplerCustomAdvanced with
the stock guiders, the LCM sampler, AnimateLCM-shaped motion modules and latent previews (TAESD and Latent2RGB).

Every test runs a real graph on the tiny SD1.5 checkpoint with the pack's new (untrained) module, or one whose
temporal weights are randomised so a loaded motion module is visible in the result.
"""
from __future__ import annotations

import pytest
import torch

from harness.graph import Graph
from harness.reliability import animatediff_from_module
from pack_import import single_thread_fixture, sub

pytestmark = pytest.mark.graph

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread_fixture)

NEW = "[new untrained module]"
FRAMES = 4
SIZE = 32


def video_graph(ckpt_name: str, *, videos: int = 1, frames: int = FRAMES, module: str = NEW, motion: str = "none",
                negative_text: str = "blurry"):
    """Checkpoint -> Apply Module -> prompts -> ``videos`` keyframes -> Image To Video. Returns (graph, checkpoint,
    MODEL, Image To Video); the latent holds videos * frames latent frames."""
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=ckpt_name)
    model = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=module, motion_module=motion)
    pos = g.node("CLIPTextEncode", text="a ball moving right", clip=ckpt.out(1))
    neg = g.node("CLIPTextEncode", text=negative_text, clip=ckpt.out(1))
    image = g.node("EmptyImage", width=SIZE, height=SIZE, batch_size=videos, color=0x3060C0)
    i2v = image_to_video(g, ckpt, pos, neg, image, frames)
    return g, ckpt, model, i2v


def image_to_video(g: Graph, ckpt, positive, negative, image, frames: int = FRAMES):
    return g.node("MicroCinemaImageToVideo", positive=positive, negative=negative, vae=ckpt.out(2), image=image,
                  width=SIZE, height=SIZE, length=frames, keyframe_position="center", keyframe_index=0,
                  appearance_strength=1.0, noise_prior_gamma=0.02, crop="center", frame_rate=8.0,
                  resize_method="bilinear")


def ksampler(g: Graph, model, i2v, *, sampler="euler", scheduler="normal", steps=2, cfg=3.0, seed=3):
    return g.node("KSampler", model=model, seed=seed, steps=steps, cfg=cfg, sampler_name=sampler,
                  scheduler=scheduler, positive=i2v.out(0), negative=i2v.out(1), latent_image=i2v.out(2),
                  denoise=1.0)


def assert_video(samples: torch.Tensor, frames: int, what) -> None:
    assert samples.shape == (frames, 4, SIZE // 8, SIZE // 8), what
    assert torch.isfinite(samples).all(), what


# -- 1. VideoLinearCFGGuidance / VideoTriangleCFGGuidance --------------------------------------------------------

CFG_RAMPS = ("VideoLinearCFGGuidance", "VideoTriangleCFGGuidance")


def per_frame_scale(model_patcher, frames: int, cond_scale: float = 5.0) -> torch.Tensor:
    """The cfg scale the model's sampler_cfg_function gives each frame: with uncond = 0 and cond = 1 its result is
    the scale itself (these stock functions return uncond + scale * (cond - uncond))."""
    fn = model_patcher.model_options["sampler_cfg_function"]
    x = torch.zeros(frames, 4, 2, 2)
    args = {"cond": torch.ones_like(x), "uncond": torch.zeros_like(x), "cond_scale": cond_scale, "input": x,
            "timestep": torch.ones(frames), "sigma": torch.ones(frames), "model_options": model_patcher.model_options}
    return fn(args)[:, 0, 0, 0]


def ramp(node: str, frames: int, min_cfg: float = 1.0, cfg: float = 5.0) -> torch.Tensor:
    """The ramp over ONE video of ``frames`` frames: linear from min_cfg to cfg, or a triangle that peaks mid-video
    (the stock formulas, written out)."""
    v = torch.linspace(0, 1, frames)
    shape = v if node == "VideoLinearCFGGuidance" else 1 - (2 * v - 1).abs()
    return min_cfg + (cfg - min_cfg) * shape


@pytest.mark.parametrize("node", CFG_RAMPS)
def test_cfg_ramp_node_on_one_video(run_graph, tiny_sd_checkpoint, node):
    """One video: the ramp covers its frames (min_cfg ... cfg), and sampling gives finite frames."""
    g, _ckpt, model, i2v = video_graph(tiny_sd_checkpoint)
    ramped = g.node(node, model=model, min_cfg=1.0)
    sample = ksampler(g, ramped, i2v, cfg=5.0)
    result = run_graph(g, outputs=[ramped, sample])
    assert_video(result[sample.id]["samples"], FRAMES, node)
    assert torch.allclose(per_frame_scale(result[ramped.id], FRAMES), ramp(node, FRAMES))


@pytest.mark.parametrize("node", CFG_RAMPS)
def test_cfg_ramp_node_on_two_videos_samples(run_graph, tiny_sd_checkpoint, node):
    """Two videos in one batch (2 keyframes -> 2 x T frames) sample without error and give finite frames; which
    scale each frame gets is the next test's business."""
    g, _ckpt, model, i2v = video_graph(tiny_sd_checkpoint, videos=2)
    sample = ksampler(g, g.node(node, model=model, min_cfg=1.0), i2v, cfg=5.0)
    assert_video(run_graph(g, outputs=[sample])[sample.id]["samples"], 2 * FRAMES, node)


def ramp_per_video(node: str, videos: int, frames: int = FRAMES, min_cfg: float = 1.0, cfg: float = 5.0):
    return torch.cat([ramp(node, frames, min_cfg, cfg)] * videos).reshape(-1, 1, 1, 1)


@pytest.fixture
def cfg_spy(monkeypatch):
    """Every call of ComfyUI's cfg_function while sampling: (cond_pred, uncond_pred, cond_scale, result). The
    sampler hands it the whole batch (all videos' frames); the result is what the step uses."""
    import comfy.samplers

    calls: list = []
    real = comfy.samplers.cfg_function

    def spy(model, cond_pred, uncond_pred, cond_scale, x, timestep, model_options={}, cond=None, uncond=None):
        out = real(model, cond_pred, uncond_pred, cond_scale, x, timestep, model_options=model_options, cond=cond,
                   uncond=uncond)
        calls.append((cond_pred, uncond_pred, cond_scale, out))
        return out

    monkeypatch.setattr(comfy.samplers, "cfg_function", spy)
    return calls


@pytest.mark.parametrize("node", CFG_RAMPS)
def test_cfg_ramp_node_is_per_video(run_graph, tiny_sd_checkpoint, cfg_spy, node):
    """Two videos in one batch: frame t of each video gets the ramp's scale for frame t of ONE video. Checked on
    what the sampler actually computes (denoised = uncond + scale * (cond - uncond), in x0 space) against the
    stock formula written out for T frames."""
    g, _ckpt, model, i2v = video_graph(tiny_sd_checkpoint, videos=2)
    sample = ksampler(g, g.node(node, model=model, min_cfg=1.0), i2v, cfg=5.0, steps=2)
    assert_video(run_graph(g, outputs=[sample], fresh=True)[sample.id]["samples"], 2 * FRAMES, node)
    assert len(cfg_spy) == 2, "one cfg call per step"
    scale = ramp_per_video(node, videos=2)
    for cond_pred, uncond_pred, cond_scale, out in cfg_spy:
        assert cond_scale == 5.0
        assert (cond_pred - uncond_pred).abs().amin(dim=(1, 2, 3)).max() > 0, "the prompts differ"
        torch.testing.assert_close(out, uncond_pred + scale * (cond_pred - uncond_pred), rtol=1e-5, atol=1e-5)


def _sample_graph_outputs(run_graph, tiny_sd_checkpoint, videos: int, patch: str | None, **patch_inputs):
    """(MODEL after the optional stock patch node, Image To Video's outputs) from a real graph."""
    g, _ckpt, model, i2v = video_graph(tiny_sd_checkpoint, videos=videos)
    patched = g.node(patch, model=model, **patch_inputs) if patch else model
    result = run_graph(g, outputs=[patched, i2v])
    return result[patched.id], [result.output(i2v.id, k) for k in range(3)]


def _without_per_video(mc, model):
    """The same MODEL without the pack's per-video wrappers: what stock ComfyUI computes."""
    import comfy.patcher_extension

    bare = model.clone()
    for kind in ("PREDICT_NOISE", "CALC_COND_BATCH", "APPLY_MODEL"):
        bare.remove_wrappers_with_key(getattr(comfy.patcher_extension.WrappersMP, kind),
                                      sub("per_video_cfg", mc).WRAPPER_KEY)
    return bare


def _ksample(model, conds, cfg: float = 5.0) -> torch.Tensor:
    import nodes as comfy_nodes

    positive, negative, latent = conds
    return comfy_nodes.common_ksampler(model, 3, 2, cfg, "euler", "normal", positive, negative, latent,
                                       denoise=1.0)[0]["samples"]


@pytest.mark.parametrize("node", CFG_RAMPS)
def test_cfg_ramp_on_one_video_is_exactly_comfyui(mc, run_graph, tiny_sd_checkpoint, node):
    """Exact parity: with one video the per-video wrapper hands ComfyUI its own options, bit for bit."""
    model, conds = _sample_graph_outputs(run_graph, tiny_sd_checkpoint, 1, node, min_cfg=1.0)
    assert torch.equal(_ksample(model, conds), _ksample(_without_per_video(mc, model), conds))


def test_elementwise_cfg_on_two_videos_is_exactly_comfyui(mc, run_graph, tiny_sd_checkpoint):
    """Exact parity: a cfg function that does not look along the batch (here the linear ramp with min_cfg = cfg,
    a constant scale) gives bitwise the same video split per video or not."""
    model, conds = _sample_graph_outputs(run_graph, tiny_sd_checkpoint, 2, "VideoLinearCFGGuidance", min_cfg=5.0)
    assert torch.equal(_ksample(model, conds), _ksample(_without_per_video(mc, model), conds))


def test_guidance_that_runs_the_model_gets_the_whole_batch(mc, run_graph, tiny_sd_checkpoint):
    """Perturbed-Attention Guidance's post-cfg function runs the model on the batch's conds (per-frame hint and
    strength): a per-video slice would give video 2 video 1's conds, so it is called on the whole batch, exactly
    as stock ComfyUI calls it, and remembered as such."""
    model, conds = _sample_graph_outputs(run_graph, tiny_sd_checkpoint, 2, "PerturbedAttentionGuidance", scale=2.0)
    per_video_cfg = sub("per_video_cfg", mc)
    (fn,) = model.model_options["sampler_post_cfg_function"]
    ours = _ksample(model, conds)
    assert fn in per_video_cfg._whole_batch_functions
    assert torch.equal(ours, _ksample(_without_per_video(mc, model), conds))


# Functions of the stock nodes, called directly on a batch of 3 videos x T frames (no sampling needed).

def _cfg_args(videos: int = 3, frames: int = FRAMES, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    shape = (videos * frames, 4, 3, 3)
    x = torch.randn(shape, generator=gen)
    cond_d, uncond_d = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    sigma = torch.full((shape[0],), 2.5)
    return {"cond": x - cond_d, "uncond": x - uncond_d, "cond_scale": 4.0, "timestep": sigma, "input": x,
            "sigma": sigma, "cond_denoised": cond_d, "uncond_denoised": uncond_d, "model": None,
            "model_options": {}, "input_cond": None, "input_uncond": None,
            "denoised": uncond_d + 4.0 * (cond_d - uncond_d)}


def _stock_functions(run_graph, tiny_sd_checkpoint) -> dict:
    g, _ckpt, model, _i2v = video_graph(tiny_sd_checkpoint)
    patches = {"ramp": g.node("VideoTriangleCFGGuidance", model=model, min_cfg=2.0),
               "rescale": g.node("RescaleCFG", model=model, multiplier=0.7),
               "mahiro": g.node("Mahiro", model=model),
               "epsilon": g.node("Epsilon Scaling", model=model, scaling_factor=1.005)}
    result = run_graph(g, outputs=list(patches.values()))
    options = {name: result[node.id].model_options for name, node in patches.items()}
    return {"ramp": options["ramp"]["sampler_cfg_function"],
            "rescale": options["rescale"]["sampler_cfg_function"],
            "mahiro": options["mahiro"]["sampler_post_cfg_function"][0],
            "epsilon": options["epsilon"]["sampler_post_cfg_function"][0]}


def test_stock_cfg_functions_per_video(mc, run_graph, tiny_sd_checkpoint):
    """Per video = the stock function applied to each video alone, then concatenated:
    - batch-level ones (the triangle ramp; Mahiro's similarity is a mean over the batch) change, and each video's
      part equals the stock function on that video (and the ramp equals the written-out formula);
    - elementwise ones (Epsilon Scaling) and per-sample ones (RescaleCFG) are bitwise unchanged."""
    per_video_cfg = sub("per_video_cfg", mc)
    fns = _stock_functions(run_graph, tiny_sd_checkpoint)
    args = _cfg_args()
    batch = args["input"].shape[0]
    for name, fn in fns.items():
        split = per_video_cfg.per_video(fn, FRAMES)(args)
        alone = torch.cat([fn(per_video_cfg.slice_args(args, slice(v * FRAMES, (v + 1) * FRAMES), batch))
                           for v in range(3)])
        assert torch.equal(split, alone), name
        if name in ("epsilon", "rescale"):
            assert torch.equal(split, fn(args)), name
        else:
            assert not torch.allclose(split, fn(args)), f"{name} looks along the batch"
    scale = ramp_per_video("VideoTriangleCFGGuidance", videos=3, min_cfg=2.0, cfg=4.0)
    expected = args["uncond"] + scale * (args["cond"] - args["uncond"])
    torch.testing.assert_close(per_video_cfg.per_video(fns["ramp"], FRAMES)(args), expected)


def test_options_per_video_leaves_one_video_and_odd_batches_alone(mc):
    per_video_cfg = sub("per_video_cfg", mc)

    def fn(args):
        return args["uncond"]

    options = {"sampler_cfg_function": fn, "sampler_post_cfg_function": [fn], "transformer_options": {}}
    for frames, batch in ((FRAMES, FRAMES), (None, 2 * FRAMES), (FRAMES, 2 * FRAMES + 1), (0, 8)):
        assert per_video_cfg.options_per_video(options, frames, batch) is options
    split = per_video_cfg.options_per_video(options, FRAMES, 2 * FRAMES)
    assert split is not options and split["transformer_options"] is options["transformer_options"]
    assert split["sampler_cfg_function"].microcinema_per_video is fn
    assert [f.microcinema_per_video for f in split["sampler_post_cfg_function"]] == [fn]
    assert options["sampler_cfg_function"] is fn, "the MODEL's own options are never changed"


# -- 2. SamplerCustomAdvanced with the stock guiders ---------------------------------------------------------------

def test_stock_guiders_with_sampler_custom_advanced(run_graph, tiny_sd_checkpoint):
    """CFGGuider, DualCFGGuider (regular and nested) and PerpNegGuider on Image To Video's conds and latent.

    Every conditioning a guider evaluates reaches the video model, which needs the video settings Image To
    Video attaches (frames per video, keyframe hint, strength). DualCFGGuider's cond2 and PerpNegGuider's
    empty_conditioning are therefore routed through a second Image To Video on the same keyframe and length
    (only its conditioning outputs are used; the latent comes from the first one)."""
    g, ckpt, model, i2v = video_graph(tiny_sd_checkpoint)
    style = g.node("CLIPTextEncode", text="watercolour", clip=ckpt.out(1))
    empty = g.node("CLIPTextEncode", text="", clip=ckpt.out(1))
    image = g.node("EmptyImage", width=SIZE, height=SIZE, batch_size=1, color=0x3060C0)
    second = image_to_video(g, ckpt, style, empty, image)
    guiders = {
        "CFGGuider": g.node("CFGGuider", model=model, positive=i2v.out(0), negative=i2v.out(1), cfg=3.0),
        "DualCFGGuider regular": g.node("DualCFGGuider", model=model, cond1=i2v.out(0), cond2=second.out(0),
                                        negative=i2v.out(1), cfg_conds=3.0, cfg_cond2_negative=2.0,
                                        style="regular"),
        "DualCFGGuider nested": g.node("DualCFGGuider", model=model, cond1=i2v.out(0), cond2=second.out(0),
                                       negative=i2v.out(1), cfg_conds=3.0, cfg_cond2_negative=2.0,
                                       style="nested"),
        "PerpNegGuider": g.node("PerpNegGuider", model=model, positive=i2v.out(0), negative=i2v.out(1),
                                empty_conditioning=second.out(1), cfg=3.0, neg_scale=1.0),
    }
    runs = {name: g.node("SamplerCustomAdvanced", noise=g.node("RandomNoise", noise_seed=5), guider=guider,
                         sampler=g.node("KSamplerSelect", sampler_name="euler"),
                         sigmas=g.node("BasicScheduler", model=model, scheduler="normal", steps=2, denoise=1.0),
                         latent_image=i2v.out(2))
            for name, guider in guiders.items()}
    result = run_graph(g, outputs=list(runs.values()))
    outs = {name: result[node.id]["samples"] for name, node in runs.items()}
    for name, samples in outs.items():
        assert_video(samples, FRAMES, name)
    # The second prompt matters, so DualCFG is not silently plain CFG.
    assert (outs["DualCFGGuider regular"] - outs["CFGGuider"]).abs().max() > 1e-4


# -- 3. The LCM sampler ------------------------------------------------------------------------------------------

def test_lcm_sampler_and_lcm_model_sampling(run_graph, tiny_sd_checkpoint):
    """KSampler 'lcm' on the MODEL as is, and after ModelSamplingDiscrete(sampling='lcm') (either order)."""
    g, _ckpt, model, i2v = video_graph(tiny_sd_checkpoint)
    lcm_after = g.node("ModelSamplingDiscrete", model=model, sampling="lcm", zsnr=False)
    runs = {"lcm sampler": ksampler(g, model, i2v, sampler="lcm", steps=3, cfg=1.5),
            "lcm sampling after module": ksampler(g, lcm_after, i2v, sampler="lcm", steps=3, cfg=1.5,
                                                  scheduler="sgm_uniform")}
    result = run_graph(g, outputs=list(runs.values()))
    for name, node in runs.items():
        assert_video(result[node.id]["samples"], FRAMES, name)


# -- 4. AnimateLCM motion modules ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def animatelcm_file(mc, comfy_dirs, tiny_sd_checkpoint) -> tuple[str, dict]:
    """An AnimateLCM-shaped motion module for the tiny UNet, in models/animatediff_models.

    AnimateLCM's t2v motion module (AnimateLCM_sd15_t2v) uses AnimateDiff v2's key layout, mid block included,
    but stores no ``pos_encoder.pe`` tables at all (ComfyUI-AnimateDiff-Evolved recognises AnimateLCM files by the
    absence of every pos_encoder key and loads them non-strictly for that reason). The weights are random and
    non-zero so that loading them changes the video."""
    import comfy.sd

    model, *_ = comfy.sd.load_checkpoint_guess_config(str(comfy_dirs.models["checkpoints"] / tiny_sd_checkpoint),
                                                      output_vae=False, output_clip=False)
    module = sub("patching", mc).new_module(model, sub("module", mc).ModuleConfig())
    gen = torch.Generator().manual_seed(17)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if ".motion." in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    sd = animatediff_from_module(module, sub("animatediff", mc))
    sd = {k: v for k, v in sd.items() if "pos_encoder" not in k}
    assert any(k.startswith("mid_block.motion_modules.0.") for k in sd), "v2 layout has a mid block"
    from safetensors.torch import save_file

    path = comfy_dirs.models["animatediff_models"] / "AnimateLCM_sd15_t2v_tiny.safetensors"
    save_file(sd, str(path))
    return path.name, sd


def test_animatelcm_motion_module_loads_and_samples_with_lcm(run_graph, tiny_sd_checkpoint, animatelcm_file):
    name, sd = animatelcm_file
    g, ckpt, model, i2v = video_graph(tiny_sd_checkpoint, motion=name)
    plain = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=NEW, motion_module="none")
    lcm = g.node("ModelSamplingDiscrete", model=model, sampling="lcm", zsnr=False)
    lcm_plain = g.node("ModelSamplingDiscrete", model=plain, sampling="lcm", zsnr=False)
    video = ksampler(g, lcm, i2v, sampler="lcm", scheduler="sgm_uniform", steps=3, cfg=1.5)
    without = ksampler(g, lcm_plain, i2v, sampler="lcm", scheduler="sgm_uniform", steps=3, cfg=1.5)
    result = run_graph(g, outputs=[model, video, without])
    loaded = result[model.id].get_model_object("diffusion_model").microcinema.state_dict()
    # Every tensor of the file landed: its mid-block and up-block weights among them.
    for key in ("mid_block.motion_modules.0.temporal_transformer.proj_out.weight",
                "up_blocks.0.motion_modules.0.temporal_transformer.proj_out.weight"):
        assert any(torch.equal(v, sd[key]) for k, v in loaded.items() if ".motion." in k), key
    a, b = result[video.id]["samples"], result[without.id]["samples"]
    assert_video(a, FRAMES, "AnimateLCM + lcm")
    assert (a - b).abs().max() > 1e-4, "the motion module changes the video"


# -- 5. Latent previews ------------------------------------------------------------------------------------------

@pytest.fixture
def preview_capture(monkeypatch, tmp_path):
    """Previews ComfyUI's progress hook receives while sampling, with models/vae_approx pointed at a temp folder
    (so a user's real TAESD files are never read) and args.preview_method set by the test."""
    import comfy.utils
    import folder_paths
    from comfy.cli_args import args

    previews: list = []
    real_hook = comfy.utils.PROGRESS_BAR_HOOK

    def hook(value, total, preview, *a, **kw):
        previews.append((value, total, preview))
        if real_hook is not None:
            return real_hook(value, total, preview, *a, **kw)

    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", hook)
    folder = tmp_path / "vae_approx"
    folder.mkdir()
    _paths, extensions = folder_paths.folder_names_and_paths["vae_approx"]
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "vae_approx", ([str(folder)], extensions))
    cache = getattr(folder_paths, "filename_list_cache", None)
    if isinstance(cache, dict):
        monkeypatch.setattr(folder_paths, "filename_list_cache", {})

    def use(method: str):
        from comfy.cli_args import LatentPreviewMethod

        monkeypatch.setattr(args, "preview_method", LatentPreviewMethod(method))
        import latent_preview

        # newer ComfyUI (0.33) resets args.preview_method to this start-up value at the start of every prompt
        if hasattr(latent_preview, "default_preview_method"):
            monkeypatch.setattr(latent_preview, "default_preview_method", LatentPreviewMethod(method))

    return previews, folder, use


def _preview_run(run_graph, tiny_sd_checkpoint, steps: int, seed: int):
    g, _ckpt, model, i2v = video_graph(tiny_sd_checkpoint, videos=2)
    sample = ksampler(g, model, i2v, steps=steps, seed=seed)
    # fresh: a cached KSampler would not sample, so no previews would come
    return run_graph(g, outputs=[sample], fresh=True)[sample.id]["samples"]


def _assert_previews(previews, steps: int, size: int) -> None:
    images = [p for _v, _t, p in previews if p is not None]
    assert len(images) == steps, previews
    for fmt, image, _max_size in images:
        assert fmt == "JPEG" and image.size == (size, size)
        assert image.mode == "RGB"


def test_taesd_previews_of_frames_in_batch(run_graph, tiny_sd_checkpoint, preview_capture):
    """TAESD previewer (models/vae_approx/taesd_decoder.safetensors, here a random one with TAESD's keys) on a
    2-video latent: one preview image per step, decoded from the first frame at 8x the latent size."""
    from comfy.taesd.taesd import Decoder
    from safetensors.torch import save_file

    previews, folder, use = preview_capture
    decoder = Decoder(latent_channels=4)
    gen = torch.Generator().manual_seed(2)
    state = {k: torch.randn(v.shape, generator=gen) * 0.05 for k, v in decoder.state_dict().items()}
    save_file(state, str(folder / "taesd_decoder.safetensors"))
    use("taesd")
    steps = 3
    assert_video(_preview_run(run_graph, tiny_sd_checkpoint, steps, seed=41), 2 * FRAMES, "taesd previews")
    _assert_previews(previews, steps, SIZE)


def test_latent2rgb_previews_when_taesd_is_absent(run_graph, tiny_sd_checkpoint, preview_capture):
    """TAESD asked for but no decoder file: ComfyUI falls back to Latent2RGB (latent-sized previews)."""
    previews, _folder, use = preview_capture
    use("taesd")
    steps = 2
    assert_video(_preview_run(run_graph, tiny_sd_checkpoint, steps, seed=42), 2 * FRAMES, "latent2rgb previews")
    _assert_previews(previews, steps, SIZE // 8)
