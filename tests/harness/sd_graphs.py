"""Reusable API graphs built from stock SD nodes (plus ours), shared by in-process and server tests."""
from __future__ import annotations

from dataclasses import dataclass

from .graph import Graph, NodeRef


@dataclass
class VideoGraph:
    graph: Graph
    checkpoint: NodeRef
    keyframe_latent: NodeRef
    empty_latent: NodeRef
    noise: NodeRef
    sampler: NodeRef
    decode: NodeRef
    save: NodeRef | None


def load_image_batch(g: Graph, names: list[str]):
    """LoadImage per file, joined by stock Batch Images into one IMAGE batch (portable across ComfyUI versions,
    unlike multi-page files: 0.33's LoadImage reads a multi-page TIFF as one image through PyAV)."""
    image = g.node("LoadImage", image=names[0]).out(0)
    for name in names[1:]:
        image = g.node("ImageBatch", image1=image, image2=g.node("LoadImage", image=name).out(0)).out(0)
    return image


def noise_prior_video_graph(checkpoint: str, keyframe_images: list[str], *, frames: int = 8, size: int = 32,
                            seed: int = 42, gamma: float = 0.02, steps: int = 3, cfg: float = 3.0,
                            use_random_noise: bool = False, save_prefix: str | None = None) -> VideoGraph:
    """Checkpoint -> prompts -> keyframe(s) VAE-encoded -> MicroCinemaNoisePrior (or stock RandomNoise) ->
    SamplerCustomAdvanced over an empty video latent (frames in the batch) -> VAEDecode [-> SaveImage].
    ``frames`` latent frames are split evenly into len(keyframe_images) videos."""
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=checkpoint)
    positive = g.node("CLIPTextEncode", text="a red ball bouncing on a wooden floor", clip=ckpt.out(1))
    negative = g.node("CLIPTextEncode", text="", clip=ckpt.out(1))
    empty = g.node("EmptyLatentImage", width=size, height=size, batch_size=frames)
    keyframe = g.node("VAEEncode", pixels=load_image_batch(g, keyframe_images), vae=ckpt.out(2))
    if use_random_noise:
        noise = g.node("RandomNoise", noise_seed=seed)
    else:
        noise = g.node("MicroCinemaNoisePrior", noise_seed=seed, keyframe=keyframe.out(0), gamma=gamma)
    guider = g.node("CFGGuider", model=ckpt.out(0), positive=positive.out(0), negative=negative.out(0), cfg=cfg)
    sampler_select = g.node("KSamplerSelect", sampler_name="euler")
    sigmas = g.node("BasicScheduler", model=ckpt.out(0), scheduler="normal", steps=steps, denoise=1.0)
    sampler = g.node("SamplerCustomAdvanced", noise=noise.out(0), guider=guider.out(0),
                     sampler=sampler_select.out(0), sigmas=sigmas.out(0), latent_image=empty.out(0))
    decode = g.node("VAEDecode", samples=sampler.out(0), vae=ckpt.out(2))
    save = g.node("SaveImage", images=decode.out(0), filename_prefix=save_prefix) if save_prefix else None
    return VideoGraph(g, ckpt, keyframe, empty, noise, sampler, decode, save)


def trained_module_graph(checkpoint: str, module_name: str, *, size: int = 32, length: int = 4):
    """Checkpoint -> MicroCinema Apply Module (a module file a training run wrote) -> Image To Video on a red
    keyframe -> one KSampler step: does the file load and sample in ComfyUI. Returns (graph, KSampler node)."""
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=checkpoint)
    model = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=module_name, motion_module="none")
    pos = g.node("CLIPTextEncode", text="a red circle moving left", clip=ckpt.out(1))
    image = g.node("EmptyImage", width=size, height=size, batch_size=1, color=0xFF0000)
    i2v = g.node("MicroCinemaImageToVideo", positive=pos, negative=pos, vae=ckpt.out(2), image=image, width=size,
                 height=size, length=length, keyframe_position="center", keyframe_index=0, appearance_strength=1.0,
                 noise_prior_gamma=0.02, crop="center", frame_rate=8.0, resize_method="bilinear")
    ks = g.node("KSampler", model=model, seed=1, steps=1, cfg=1.0, sampler_name="euler", scheduler="normal",
                positive=i2v.out(0), negative=i2v.out(1), latent_image=i2v.out(2), denoise=1.0)
    return g, ks
