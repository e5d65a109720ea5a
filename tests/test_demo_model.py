"""The demo model: its exact construction (narrow twin -> SD1.5 shapes, pooling VAE) and what training gave it.

Construction (parity): the narrow twin the demo is trained as must compute what the widened SD1.5-shaped model
computes in ComfyUI's own UNetModel + our VideoUNet; the TAESD-format VAE ComfyUI builds from the checkpoint must
be exact 8x8 pooling / nearest upsampling.

Behaviour (training, issue 6), through real ComfyUI graphs with the shipped demo files (stock loader, Apply
Module, Image To Video, KSampler, VAE Decode):
- motion follows the prompt: the object's centroid path goes in the prompted direction for >= 16 of 20 samples;
- the keyframe is kept: SSIM(frame at the keyframe position, keyframe) >= 0.8 on average over the 20 samples;
- stage 1 follows the prompt's colour.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from harness.demo_models import DEMO_FILES, place_demo_models
from harness.graph import Graph
from harness.sd_graphs import load_image_batch
from pack_import import single_thread_fixture, sub

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread_fixture)

SIZE, LENGTH = 64, 8
STEPS, CFG, GAMMA = 8, 5.0, 0.02  # 8 steps (the workflows use 12): CI time
# One colour/shape per direction, five keyframes each (start, background, texture differ): 20 samples.
CASES = {"left": ("red", "circle"), "right": ("blue", "square"), "up": ("green", "square"),
         "down": ("white", "circle")}
PER_DIRECTION = 5


# -- construction --------------------------------------------------------------------------------------------
@pytest.mark.parity
def test_narrow_twin_equals_the_widened_sd15_model(mc):
    """Training happens on the narrow twin; what ships is ``narrow.widen`` of it in SD1.5 shapes. Both must
    give the same video prediction (UNet + temporal layers + AppearNet), with every weight non-zero."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    narrow, tiny, module_lib = sub("narrow"), sub("tiny_models"), sub("module")
    video_unet, conditioning = sub("video_unet"), sub("conditioning")
    patching = sub("patching")
    wide_cfg = tiny.TINY_SD15_UNET
    twin = narrow.build_narrow_unet(wide_cfg, seed=3)
    cfg = module_lib.ModuleConfig()
    twin_module = narrow.build_narrow_module(twin, cfg)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():  # the zero-initialised layers too: parity must not rest on zeros
        for p in list(twin.parameters()) + list(twin_module.parameters()):
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    wide = UNetModel(**wide_cfg, operations=comfy.ops.disable_weight_init)
    wide.load_state_dict(narrow.widen(twin.state_dict(), {k: s for k, (s, _) in tiny.unet_shapes(wide_cfg).items()}))
    wide_module = module_lib.build_module(wide, cfg, patching.MODULE_OPERATIONS, fresh=False)
    wide_module.load_state_dict(narrow.widen(twin_module.state_dict(), narrow.wide_module_shapes(wide_cfg, cfg)))

    videos, frames = 2, 4
    x = torch.randn(videos * frames, 4, 8, 8, generator=gen)
    t = torch.rand(videos * frames, generator=gen) * 999
    context = torch.randn(videos * frames, 77, 768, generator=gen)
    hint = torch.cat([conditioning.appearance_hint(x[i * frames:i * frames + 1], frames, 1) for i in range(videos)])
    kwargs = dict(mc_num_frames=frames, mc_hint=hint, mc_strength=torch.ones(videos * frames))
    with torch.no_grad():
        image_twin, image_wide = twin(x, t, context), wide(x, t, context)
        video_twin = video_unet.VideoUNet(twin, twin_module)(x, t, context, **kwargs)
        video_wide = video_unet.VideoUNet(wide, wide_module)(x, t, context, **kwargs)
    for a, b in ((image_twin, image_wide), (video_twin, video_wide)):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max(), (a - b).abs().max()
    assert (video_twin - image_twin).abs().max() > 0.1  # the module really acts


def test_virtual_norms_are_the_wide_norms_restricted(mc):
    """Independent computation: torch's own GroupNorm/LayerNorm on the zero-padded tensor."""
    narrow = sub("narrow")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64, 3, 3, generator=gen)
    kept = narrow.kept_channels(64)
    padded = torch.zeros(2, 320, 3, 3).index_copy_(1, kept, x)
    ref = torch.nn.functional.group_norm(padded, 32, eps=1e-5)[:, kept]
    ours = narrow.virtual_group_norm(x, 32, None, None, 1e-5, narrow.RATIO)
    assert torch.allclose(ours, ref, atol=1e-5)
    y = torch.randn(5, 64, generator=gen)
    padded = torch.zeros(5, 320).index_copy_(1, kept, y)
    ref = torch.nn.functional.layer_norm(padded, (320,), eps=1e-5)[:, kept]
    assert torch.allclose(narrow.virtual_layer_norm(y, None, None, 1e-5, narrow.RATIO), ref, atol=1e-5)


def test_demo_vae_is_exact_pooling_in_comfyui(mc):
    import comfy.sd

    demo_vae = sub("demo_vae")
    vae = comfy.sd.VAE(sd=demo_vae.taesd_state_dict(prefix=""))
    assert type(vae.first_stage_model).__name__ == "TAESD"
    images = torch.rand(3, 64, 48, 3, generator=torch.Generator().manual_seed(1)) * 0.6 + 0.2
    latents = vae.encode(images)
    assert torch.allclose(latents * demo_vae.SD15_SCALE, demo_vae.model_space_latents(images), atol=1e-5)
    pooled = torch.nn.functional.avg_pool2d(images.permute(0, 3, 1, 2), 8)
    expected = torch.nn.functional.interpolate(pooled, scale_factor=8, mode="nearest").permute(0, 2, 3, 1)
    # the decoder's soft clamp (tanh(x/3)*3) bends colours far from mid-grey by < 1 %
    assert (vae.decode(latents) - expected).abs().max() < 0.01


def test_metrics_against_independent_computations():
    """The centroid finds the renderer's known centre; the Frechet distance matches scipy's matrix square root."""
    synthetic, metrics = sub("training.synthetic"), sub("training.video_metrics")
    spec = synthetic.ClipSpec("square", "red", "right", (0.4, 0.55), 0.03, 0.15, (30, 30, 40), 0)
    frame = synthetic.render_frame(spec, 0, 64).astype(np.float32) / 255.0
    x, y = metrics.object_centroid(frame, synthetic.COLOURS["red"])
    assert abs(x - 0.4 * 64) < 0.6 and abs(y - 0.55 * 64) < 0.6
    clip = np.stack([synthetic.render_frame(spec, t, 64) for t in range(8)]).astype(np.float32) / 255.0
    along, across = metrics.displacement(clip, synthetic.COLOURS["red"], (1, 0))
    assert along == pytest.approx(7 * 0.03 * 64, abs=1.0) and across < 0.5
    assert metrics.keyframe_ssim(frame, frame) == pytest.approx(1.0, abs=1e-4)
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 4)), rng.normal(1.0, 2.0, size=(30, 4)) @ rng.normal(size=(4, 4))
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    cross = np.real(scipy_linalg.sqrtm(s_a @ s_b))
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s_a + s_b - 2 * cross)
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


# -- behaviour of the trained demo ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(comfy_dirs) -> dict[str, str]:
    demo_lib = sub("demo")
    assert demo_lib.NARROW_UNET.is_file() and demo_lib.NARROW_MODULE.is_file(), "the trained demo weights are missing"
    return place_demo_models(comfy_dirs)


def _keyframes(direction: str, seed: int) -> tuple[list[np.ndarray], list]:
    """Keyframes as the demo VAE represents them exactly (rendered, pooled 8x8, upsampled)."""
    synthetic = sub("training.synthetic")
    colour, shape = CASES[direction]
    rng = random.Random(seed)
    images, specs = [], []
    while len(images) < PER_DIRECTION:
        spec = synthetic.random_spec(rng, LENGTH)
        if spec.direction != direction:
            continue
        spec.colour, spec.shape = colour, shape
        centre = synthetic.ClipSpec(**{**spec.__dict__, "start": _position(spec, LENGTH // 2)})
        frame = synthetic.render_frame(centre, 0, SIZE).astype(np.float32) / 255.0
        pooled = frame.reshape(SIZE // 8, 8, SIZE // 8, 8, 3).mean(axis=(1, 3))
        images.append(np.repeat(np.repeat(pooled, 8, axis=0), 8, axis=1))
        specs.append(spec)
    return images, specs


def _position(spec, t: int) -> tuple[float, float]:
    dx, dy = sub("training.synthetic").DIRECTIONS[spec.direction]
    return spec.start[0] + dx * spec.speed * t, spec.start[1] + dy * spec.speed * t


def _save_pngs(images: list[np.ndarray], folder, stem: str) -> list[str]:
    """One lossless PNG per keyframe (for load_image_batch)."""
    names = []
    for i, image in enumerate(images):
        names.append(f"{stem}_{i}.png")
        Image.fromarray(np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)).save(folder / names[-1])
    return names


def _video_graph(prompt: str, image_names: list[str], seed: int, position: str = "center") -> tuple[Graph, object]:
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=DEMO_FILES["checkpoints"])
    model = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=DEMO_FILES["microcinema"],
                   motion_module="none")
    pos = g.node("CLIPTextEncode", text=prompt, clip=ckpt.out(1))
    neg = g.node("CLIPTextEncode", text="", clip=ckpt.out(1))
    # one graph animates every keyframe, as a batch of videos
    i2v = g.node("MicroCinemaImageToVideo", positive=pos, negative=neg, vae=ckpt.out(2),
                 image=load_image_batch(g, image_names),
                 width=SIZE, height=SIZE, length=LENGTH, keyframe_position=position, keyframe_index=0,
                 appearance_strength=1.0, noise_prior_gamma=GAMMA, crop="center", frame_rate=8.0,
                 resize_method="nearest-exact")
    sampler = g.node("KSampler", model=model, positive=i2v.out(0), negative=i2v.out(1), latent_image=i2v.out(2),
                     seed=seed, steps=STEPS, cfg=CFG, sampler_name="euler", scheduler="normal", denoise=1.0)
    frames = g.node("VAEDecode", samples=sampler, vae=ckpt.out(2))
    return g, frames


@pytest.fixture(scope="module")
def demo_videos(demo, run_graph, comfy_dirs) -> dict[str, tuple[np.ndarray, list[np.ndarray], list]]:
    """direction -> (frames [PER_DIRECTION * LENGTH, H, W, 3], keyframes, specs): one graph per direction."""
    out = {}
    for n, direction in enumerate(CASES):
        keyframes, specs = _keyframes(direction, seed=100 + n)
        names = _save_pngs(keyframes, comfy_dirs.input, f"demo_keyframes_{direction}")
        colour, shape = CASES[direction]
        g, frames = _video_graph(f"a {colour} {shape} moving {direction}", names, seed=11 + n)
        result = run_graph(g, outputs=[frames])
        video = result.output(frames).numpy()
        assert video.shape == (PER_DIRECTION * LENGTH, SIZE, SIZE, 3)
        out[direction] = (video, keyframes, specs)
    return out


@pytest.mark.training
def test_motion_follows_the_prompt(demo_videos):
    synthetic, metrics = sub("training.synthetic"), sub("training.video_metrics")
    good, report = 0, []
    for direction, (video, _, _) in demo_videos.items():
        colour = synthetic.COLOURS[CASES[direction][0]]
        for i in range(PER_DIRECTION):
            clip = video[i * LENGTH:(i + 1) * LENGTH]
            moved = metrics.displacement(clip, colour, synthetic.DIRECTIONS[direction])
            ok = metrics.moves_as_prompted(clip, colour, synthetic.DIRECTIONS[direction])
            good += ok
            report.append(f"{direction}#{i}: " + ("object lost" if moved is None else
                          f"along {moved[0]:+.1f}px across {moved[1]:.1f}px {'ok' if ok else 'WRONG'}"))
    print("\n".join(report))
    assert good >= 16, f"motion follows the prompt in {good}/20 samples:\n" + "\n".join(report)


@pytest.mark.training
def test_keyframe_is_kept(demo_videos):
    scores = []
    for video, keyframes, _ in demo_videos.values():
        for i, keyframe in enumerate(keyframes):
            scores.append(sub("training.video_metrics").keyframe_ssim(video[i * LENGTH + LENGTH // 2], keyframe))
    print("keyframe SSIM:", " ".join(f"{s:.3f}" for s in scores))
    assert float(np.mean(scores)) >= 0.8, f"mean keyframe SSIM {np.mean(scores):.3f} over {len(scores)}: {scores}"


@pytest.mark.training
def test_stage1_follows_the_colour_in_the_prompt(demo, run_graph):
    colours = sub("training.synthetic").COLOURS
    hits = []
    for colour, shape in (("red", "circle"), ("blue", "square"), ("yellow", "triangle"), ("green", "circle")):
        g = Graph()
        ckpt = g.node("CheckpointLoaderSimple", ckpt_name=DEMO_FILES["checkpoints"])
        pos = g.node("CLIPTextEncode", text=f"a {colour} {shape} moving left", clip=ckpt.out(1))
        neg = g.node("CLIPTextEncode", text="", clip=ckpt.out(1))
        latent = g.node("EmptyLatentImage", width=SIZE, height=SIZE, batch_size=4)
        sampler = g.node("KSampler", model=ckpt.out(0), positive=pos, negative=neg, latent_image=latent, seed=5,
                         steps=STEPS, cfg=CFG, sampler_name="euler", scheduler="normal", denoise=1.0)
        images = g.node("VAEDecode", samples=sampler, vae=ckpt.out(2))
        batch = run_graph(g, outputs=[images]).output(images).numpy()
        for image in batch:
            # the palette colour with the most pixels close to it
            counts = {name: (np.linalg.norm(image - np.asarray(rgb) / 255.0, axis=-1) < 0.2).sum()
                      for name, rgb in colours.items()}
            hits.append(max(counts, key=counts.get) == colour)
    assert sum(hits) >= 12, f"{sum(hits)}/16 keyframes show the prompted colour"
