"""Helpers for the reliability tests (tests/test_reliability_*.py): fault counters with a session summary, an
in-process test node that makes IMAGE tensors of any shape, and generated "wrong" model files (never downloaded):

    KOALA-700M-shaped UNet     an SDXL-family UNet (ComfyUI detects it as KOALA_700M: latent format SDXL, ADM
                               2816, context 2048) with random weights, as a checkpoint CheckpointLoaderSimple loads
    9-channel SD1.5 UNet       an SD1.5 inpainting-shaped UNet (same tiny layout as the tiny SD1.5 checkpoint)
    16-channel TAESD VAE       what ComfyUI builds for taesd3/taef1 files: a VAE the stock VAELoader accepts with
                               16 latent channels (Flux/SD3 family)
    malicious pickle           a .ckpt whose unpickling would run code (writes a marker file)

Big files are cached in .cache/test_models/ like the tiny SD1.5 checkpoint.
"""
from __future__ import annotations

import json
import logging
import pickle
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from .locations import MODEL_CACHE
from .tiny_models import TINY_SD15_UNET, _cache_name, _meta_shapes, random_state_dict, save_atomically, unet_shapes

log = logging.getLogger("microcinema.tests.reliability")

# -- counts ---------------------------------------------------------------------------------------------------


class Tally:
    """Counts of what the reliability tests tried, per category:
    inputs   bad or random inputs sent through a node (graph or HTTP)
    faults   faults injected (corrupted files, interruptions, crashes during writes)
    prompts  good prompts run to check that the runtime is still healthy
    failures outcomes that were not a clean node error / success (tests also fail on these)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter = Counter()
        self.by_test: dict[str, Counter] = {}
        self.timings: dict[str, float] = {}
        self.notes: dict[str, str] = {}

    def add(self, kind: str, n: int = 1, test: str | None = None) -> None:
        with self._lock:
            self.counts[kind] += n
            if test:
                self.by_test.setdefault(test, Counter())[kind] += n

    def lines(self) -> list[str]:
        total = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "nothing recorded"
        out = [f"reliability totals: {total}"]
        for test, counts in sorted(self.by_test.items()):
            out.append(f"  {test}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        for name, seconds in sorted(self.timings.items()):
            out.append(f"  timing {name}: {seconds:.1f} s")
        for name, text in sorted(self.notes.items()):
            out.append(f"  {name}: {text}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"totals": dict(self.counts), "by_test": {k: dict(v) for k, v in self.by_test.items()},
                "timings": self.timings, "notes": self.notes}


TALLY = Tally()


class _SummaryPlugin:
    """Registered at run time by the ``reliability_tally`` fixture: prints the counts in pytest's summary."""

    def __init__(self, report_path: Path | None) -> None:
        self.report_path = report_path

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not TALLY.counts:
            return
        terminalreporter.section("MicroCinema reliability counts")
        for line in TALLY.lines():
            terminalreporter.write_line(line)
        if self.report_path is not None:
            self.report_path.parent.mkdir(parents=True, exist_ok=True)
            self.report_path.write_text(json.dumps(TALLY.as_dict(), indent=1))
            terminalreporter.write_line(f"  (also in {self.report_path})")


def install_summary(config, report_path: Path | None = None) -> None:
    name = "microcinema-reliability-summary"
    if config.pluginmanager.get_plugin(name) is None:
        config.pluginmanager.register(_SummaryPlugin(report_path), name)


# -- an IMAGE of any shape, for in-process graphs -------------------------------------------------------------

TEST_IMAGE_NODE = "ReliabilityTestImage"


class ReliabilityTestImage:
    """IMAGE [batch, height, width, channels] (channels 1..5, batch 0 allowed): the shapes stock nodes never
    produce (LoadImage always gives RGB), to feed the pack's nodes directly."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 32, "min": 1, "max": 4096}),
            "height": ("INT", {"default": 32, "min": 1, "max": 4096}),
            "batch": ("INT", {"default": 1, "min": 0, "max": 64}),
            "channels": ("INT", {"default": 3, "min": 1, "max": 8}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, width, height, batch, channels, seed):
        import torch

        gen = torch.Generator().manual_seed(seed)
        return (torch.rand(batch, height, width, channels, generator=gen),)


def register_test_nodes(nodes_module) -> None:
    nodes_module.NODE_CLASS_MAPPINGS.setdefault(TEST_IMAGE_NODE, ReliabilityTestImage)
    nodes_module.NODE_DISPLAY_NAME_MAPPINGS.setdefault(TEST_IMAGE_NODE, "Reliability Test Image")


# -- wrong model files ---------------------------------------------------------------------------------------

# A KOALA-700M-shaped UNet (an SDXL-family model ComfyUI supports) at the smallest size its detection allows:
# one level, three ResBlocks with 0/2/5 transformer blocks, no middle block, no decoder attention (50 M params).
KOALA_UNET: dict[str, Any] = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "adm_in_channels": 2816, "num_classes": "sequential", "in_channels": 4, "model_channels": 320,
    "num_res_blocks": [3], "transformer_depth": [0, 2, 5], "transformer_depth_output": [0, 0, 0, 0],
    "channel_mult": [1], "transformer_depth_middle": -2, "use_linear_in_transformer": True, "context_dim": 2048,
    "num_heads": -1, "num_head_channels": 64, "use_temporal_resblock": False, "use_temporal_attention": False,
}

INPAINT_SD15_UNET: dict[str, Any] = {**TINY_SD15_UNET, "in_channels": 9}


def ensure_unet_checkpoint(kind: str, unet_config: dict[str, Any], seed: int = 0,
                           cache_dir: Path = MODEL_CACHE) -> Path:
    """A checkpoint with only ``model.diffusion_model.*`` (CheckpointLoaderSimple loads it: no CLIP, no VAE)."""
    path = cache_dir / _cache_name(kind, {"unet": unet_config, "seed": seed})
    if path.is_file():
        return path
    log.info("generating %s (once; cached afterwards)", path)
    sd = random_state_dict(unet_shapes(unet_config), seed, prefix="model.diffusion_model.")
    return save_atomically(sd, path, metadata={"generator": "ComfyUI-MicroCinema reliability tests"})


def detected_model_config(path: Path):
    """The model config class ComfyUI's detection picks for a checkpoint (shapes only, on the meta device)."""
    import comfy.model_detection
    import safetensors
    import torch

    with safetensors.safe_open(str(path), framework="pt", device="cpu") as f:
        sd = {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
    unet_config = comfy.model_detection.detect_unet_config(sd, "model.diffusion_model.")
    return comfy.model_detection.model_config_from_unet_config(unet_config, sd)


def taesd_state_dict(latent_channels: int = 16, seed: int = 0):
    """A TAESD VAE with ``latent_channels`` (16: the taesd3/taef1 layout) with random weights."""
    import torch
    from comfy.taesd.taesd import TAESD

    shapes = _meta_shapes(lambda: TAESD(latent_channels=latent_channels))
    sd = random_state_dict({k: v for k, v in shapes.items() if k not in ("vae_scale", "vae_shift")}, seed,
                           dtype=torch.float32, std=0.05)
    sd["vae_scale"] = torch.tensor(1.5305)
    sd["vae_shift"] = torch.tensor(0.0609)
    return sd


def ensure_taesd_vae(latent_channels: int = 16, cache_dir: Path = MODEL_CACHE) -> Path:
    path = cache_dir / _cache_name("taesd", {"latent_channels": latent_channels})
    if not path.is_file():
        save_atomically(taesd_state_dict(latent_channels), path)
    return path


class _RunsCodeWhenUnpickled:
    """Unpickling this calls exec() on a payload that writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('unpickled: code ran')",))


def write_malicious_pickle(path: Path, marker: Path) -> Path:
    """A torch.save file (zip + pickle) that holds real tensors and an object whose unpickling runs code."""
    import torch

    torch.save({"temporal.input.1.res.0.t1.conv.weight": torch.zeros(2), "payload": _RunsCodeWhenUnpickled(marker)},
               str(path))
    return path


def write_raw_malicious_pickle(path: Path, marker: Path) -> Path:
    """The same payload as a bare pickle stream (the legacy non-zip .ckpt form)."""
    with open(path, "wb") as f:
        pickle.dump({"payload": _RunsCodeWhenUnpickled(marker)}, f, protocol=2)
    return path


def animatediff_from_module(module, animatediff) -> dict:
    """An AnimateDiff v2-format motion module built from a MicroCinema module's temporal transformers (the inverse
    of ``animatediff.convert_animatediff`` for this module's layout)."""
    out = {}
    sd = module.state_dict()
    for (part, level, j), target in animatediff._targets(module.layout).items():
        prefix = f"mid_block.motion_modules.{j}." if part == "mid_block" else f"{part}.{level}.motion_modules.{j}."
        for key, tensor in sd.items():
            if key.startswith(target):
                out[prefix + "temporal_transformer." + key[len(target):]] = tensor.detach().clone().contiguous()
    return out


def rss_bytes(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


# -- the graph every reliability test varies -------------------------------------------------------------------

NEW_MODULE = "[new untrained module]"
I2V_DEFAULTS: dict[str, Any] = dict(width=32, height=32, length=2, keyframe_position="center", keyframe_index=0,
                                    appearance_strength=1.0, noise_prior_gamma=0.02, crop="center", frame_rate=8.0,
                                    resize_method="bilinear")


def video_graph(ckpt_name: str, *, image: dict | None = None, steps: int = 1, seed: int = 1, cfg: float = 2.0,
                module_name: str = NEW_MODULE, base=None, vae=None, negative=None, latent=None, decode: bool = False,
                output: str | None = None, **i2v_inputs):
    """Checkpoint -> Apply Module -> prompts -> keyframe IMAGE -> Image To Video -> KSampler [-> VAEDecode [->
    output node]]. ``image``: inputs of ReliabilityTestImage (in-process only), or None for a stock EmptyImage.
    ``base``/``vae``/``negative``/``latent``: replacements (Output or NodeRef) for the usual links.
    Returns (graph, refs) with refs ckpt, model, pos, neg, image, i2v, ksampler, decode, out."""
    from .graph import Graph

    g = Graph()
    refs: dict[str, Any] = {}
    refs["ckpt"] = ckpt = g.node("CheckpointLoaderSimple", ckpt_name=ckpt_name)
    refs["model"] = g.node("MicroCinemaApplyModule", model=base if base is not None else ckpt.out(0),
                           module_name=module_name, motion_module="none")
    refs["pos"] = g.node("CLIPTextEncode", text="a ball moving left", clip=ckpt.out(1))
    refs["neg"] = g.node("CLIPTextEncode", text="blurry", clip=ckpt.out(1))
    if image is None:
        refs["image"] = g.node("EmptyImage", width=32, height=32, batch_size=1, color=0xC03020)
    else:
        refs["image"] = g.node(TEST_IMAGE_NODE, **{"width": 32, "height": 32, "batch": 1, "channels": 3, "seed": 0,
                                                   **image})
    inputs = {**I2V_DEFAULTS, **i2v_inputs}
    refs["i2v"] = i2v = g.node("MicroCinemaImageToVideo", positive=refs["pos"], negative=refs["neg"],
                               vae=vae if vae is not None else ckpt.out(2), image=refs["image"], **inputs)
    refs["ksampler"] = g.node("KSampler", model=refs["model"], seed=seed, steps=steps, cfg=cfg, sampler_name="euler",
                              scheduler="normal", positive=i2v.out(0),
                              negative=negative if negative is not None else i2v.out(1),
                              latent_image=latent if latent is not None else i2v.out(2), denoise=1.0)
    refs["decode"] = refs["out"] = None
    if decode or output:
        refs["decode"] = g.node("VAEDecode", samples=refs["ksampler"], vae=ckpt.out(2))
    if output == "preview":
        refs["out"] = g.node("PreviewImage", images=refs["decode"])
    elif output == "webp":
        refs["out"] = g.node("SaveAnimatedWEBP", images=refs["decode"], filename_prefix="reliability",
                             fps=i2v.out(3), lossless=False, quality=50, method="fastest")
    return g, refs
