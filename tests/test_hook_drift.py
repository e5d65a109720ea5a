"""Hooks that cannot silently drift (issue 17, part 1).

VideoUNet re-implements UNetModel._forward, so every patch kind ComfyUI's UNet-level forward consults must be
honoured by hand. Two layers of protection:

* drift: the running ComfyUI's UNetModel.forward/_forward and forward_timestep_embed are read (inspect) and every
  patch kind, transformer_options entry and wrapper kind they use must be listed as honoured in video_unet.py,
  and every listed kind must actually appear in our forward's code;
* behaviour: each kind, registered the stock way (ModelPatcher.set_model_*, patcher_extension wrappers), is run
  on ComfyUI's own UNetModel and on a fresh VideoUNet over it (zero-initialised temporal layers: the video model
  equals the image model, see test_core_parity.py). The patch must be called, change the output, and give the
  same output on both models (where the running ComfyUI has the kind; otherwise an equivalent stock patch).
"""
from __future__ import annotations

import inspect
import re
from typing import Callable

import pytest
import torch

from pack_import import single_thread_fixture, sub, tiny_unet

pytestmark = pytest.mark.parity

TOL = 1e-5
FRAMES, SIZE = 2, 8

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread_fixture)

# The kinds the newest upstream UNetModel._forward consults (read 2025: middle_block_after_patch, output_block_patch
# returning hsp=None), pinned so that a ComfyUI older than that cannot make the drift check pass vacuously.
NEWEST_UPSTREAM_PATCHES = {"emb_patch", "input_block_patch", "input_block_patch_after_skip",
                           "middle_block_after_patch", "output_block_patch", "forward_timestep_embed_patch"}
_CONTAINERS = {"patches", "patches_replace"}


def _upstream_sources() -> dict[str, str]:
    from comfy.ldm.modules.diffusionmodules import openaimodel

    return {"UNetModel.forward": inspect.getsource(openaimodel.UNetModel.forward),
            "UNetModel._forward": inspect.getsource(openaimodel.UNetModel._forward),
            "forward_timestep_embed": inspect.getsource(openaimodel.forward_timestep_embed)}


def _patch_kinds(source: str) -> set[str]:
    """String literals naming a patch kind, however the code spells the lookup (`"k" in transformer_patches`,
    `transformer_patches["k"]`, `patches.get("k")`, `transformer_options["patches"]["k"]`...)."""
    return {name for name in re.findall(r"""["'](\w*patch\w*)["']""", source) if name not in _CONTAINERS}


def _written_options(source: str) -> set[str]:
    return set(re.findall(r"""transformer_options\[["'](\w+)["']\]\s*(?:=|\+=)""", source))


def test_upstream_patch_kinds_are_all_honoured(mc):
    video_unet = sub("video_unet")
    sources = _upstream_sources()
    found = {name: _patch_kinds(src) for name, src in sources.items()}
    assert found["UNetModel._forward"] and found["forward_timestep_embed"], \
        f"no patch kinds found in ComfyUI's forward: the extraction no longer matches its code ({found})"
    missing = {name: sorted(kinds - set(video_unet.HONOURED_PATCHES)) for name, kinds in found.items()}
    missing = {name: kinds for name, kinds in missing.items() if kinds}
    assert not missing, (f"ComfyUI's {', '.join(missing)} consult patch kinds VideoUNet does not honour: {missing}. "
                         "Implement them in microcinema_core/video_unet.py and list them in HONOURED_PATCHES.")
    assert NEWEST_UPSTREAM_PATCHES <= set(video_unet.HONOURED_PATCHES)
    replace = [name for name, src in sources.items() if "patches_replace" in src]
    assert not replace, f"ComfyUI's {replace} now consult patches_replace at UNet level: VideoUNet does not"


def test_upstream_options_and_wrappers_are_all_honoured(mc):
    video_unet = sub("video_unet")
    sources = _upstream_sources()
    written = _written_options(sources["UNetModel._forward"]) | _written_options(sources["forward_timestep_embed"])
    assert {"block", "transformer_index"} <= written, written
    assert not written - set(video_unet.HONOURED_OPTIONS), \
        f"ComfyUI's forward sets transformer_options {sorted(written - set(video_unet.HONOURED_OPTIONS))}: VideoUNet does not"
    wrappers = set(re.findall(r"WrappersMP\.(\w+)", sources["UNetModel.forward"] + sources["UNetModel._forward"]))
    assert wrappers and not wrappers - set(video_unet.HONOURED_WRAPPERS), wrappers


def test_honoured_lists_match_our_code(mc):
    """Every kind we claim to honour is looked up (or written) by the VideoUNet code itself."""
    video_unet = sub("video_unet")
    ours = inspect.getsource(video_unet.VideoUNet)
    for kind in video_unet.HONOURED_PATCHES:
        # forward_timestep_embed_patch is also honoured through ComfyUI's own per-layer dispatch
        assert f'"{kind}"' in ours, f"HONOURED_PATCHES lists {kind!r} but VideoUNet never looks it up"
    for option in video_unet.HONOURED_OPTIONS:
        assert re.search(rf'transformer_options\["{option}"\]\s*=', ours), option
    for kind in video_unet.HONOURED_WRAPPERS:
        assert f"WrappersMP.{kind}" in ours, kind


# -- behaviour ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def models(mc):
    import comfy.ops

    module_mod, video_unet = sub("module"), sub("video_unet")
    unet = tiny_unet(seed=3)
    with torch.no_grad():
        module = module_mod.build_module(unet, module_mod.ModuleConfig(), comfy.ops.manual_cast)
    video = video_unet.VideoUNet(unet, module)
    cfg = sub("configs").tiny_unet_config()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(FRAMES, 4, SIZE, SIZE, generator=g)
    t = torch.rand(FRAMES, generator=g) * 999
    context = torch.randn(FRAMES, 5, cfg["context_dim"], generator=g)
    hint = torch.randn(FRAMES, 6, SIZE, SIZE, generator=g)
    return unet, video, (x, t, context, hint)


def _patcher():
    """A ModelPatcher clone: the set_model_* methods only fill its model_options (no model needed)."""
    import comfy.model_patcher

    return comfy.model_patcher.ModelPatcher(torch.nn.Linear(1, 1), torch.device("cpu"), torch.device("cpu")).clone()


def _image(models, options: dict | None) -> torch.Tensor:
    """ComfyUI's UNetModel, with its own shallow copy of the options (as the sampler gives each call)."""
    unet, _, (x, t, context, _) = models
    with torch.no_grad():
        return unet(x, t, context, transformer_options=dict(options or {}))


def _video(models, options: dict | None) -> torch.Tensor:
    """Our VideoUNet over the same UNet at AppearNet strength 1 (AppearNet runs and injects zeros)."""
    _, video, (x, t, context, hint) = models
    with torch.no_grad():
        return video(x, t, context, transformer_options=dict(options or {}), mc_num_frames=FRAMES, mc_hint=hint,
                     mc_strength=torch.ones(FRAMES))


def _assert_same(image: torch.Tensor, frames: torch.Tensor, what: str):
    diff = (image - frames).abs().max().item()
    assert diff <= TOL, f"{what}: max |video - image| = {diff}"


@pytest.fixture(scope="module")
def clean(models):
    image = _image(models, None)
    _assert_same(image, _video(models, None), "no patch")
    return image


class Recorder:
    """Records what each call saw (block, block_index, transformer_index...) and applies ``change``."""

    def __init__(self, change: Callable):
        self.change, self.calls = change, []

    def __call__(self, *args, **kwargs):
        options = next((a for a in reversed(args) if isinstance(a, dict)), {})
        self.calls.append((options.get("block"), options.get("block_index"), options.get("transformer_index")))
        return self.change(*args, **kwargs)


def _case_attn1_patch(p):
    rec = Recorder(lambda n, c, v, extra: (n * 1.1, c, v))
    p.set_model_attn1_patch(rec)
    return rec


def _case_attn2_patch(p):
    rec = Recorder(lambda n, c, v, extra: (n, c * 0.8, v * 1.2))
    p.set_model_attn2_patch(rec)
    return rec


def _case_attn1_output_patch(p):
    rec = Recorder(lambda n, extra: n * 0.9)
    p.set_model_attn1_output_patch(rec)
    return rec


def _case_attn2_output_patch(p):
    rec = Recorder(lambda n, extra: n * 1.1)
    p.set_model_attn2_output_patch(rec)
    return rec


def _scaled_attention(q, k, v, extra):
    from comfy.ldm.modules.attention import optimized_attention

    return optimized_attention(q, k, v, extra["n_heads"]) * 0.5


def _case_attn2_replace(p):
    """As IPAdapter does: cross-attention of chosen blocks replaced (here input 1 and output 3, one transformer)."""
    rec = Recorder(_scaled_attention)
    p.set_model_attn2_replace(rec, "input", 1)
    p.set_model_attn2_replace(rec, "output", 3, 0)  # (block, number, transformer_index) form
    return rec


def _case_attn1_replace(p):
    rec = Recorder(_scaled_attention)
    p.set_model_attn1_replace(rec, "middle", 0)
    return rec


def _case_emb_patch(p):
    rec = Recorder(lambda emb, channels, options: emb * 1.3)
    p.set_model_emb_patch(rec)
    return rec


def _case_input_block_patch(p):
    rec = Recorder(lambda h, options: h * 1.05)
    p.set_model_input_block_patch(rec)
    return rec


def _case_input_block_patch_after_skip(p):
    rec = Recorder(lambda h, options: h * 0.95)
    p.set_model_input_block_patch_after_skip(rec)
    return rec


def _case_output_block_patch(p):
    rec = Recorder(lambda h, hsp, options: (h * 1.05, hsp * 0.9))
    p.set_model_output_block_patch(rec)
    return rec


def _case_forward_timestep_embed_patch(p):
    """Handlers for the layer kinds an SD block holds besides ResBlock/transformer; whether ComfyUI consults them
    for a kind is its forward_timestep_embed's business, and the video model must agree with it."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, Upsample

    def handler(layer, x, emb, context, options, output_shape, *rest):
        x = x * 1.1
        return layer(x, output_shape=output_shape) if isinstance(layer, Upsample) else layer(x)

    rec = Recorder(handler)
    p.set_model_forward_timestep_embed_patch((Upsample, rec))
    p.set_model_forward_timestep_embed_patch((Downsample, rec))
    return rec


def _case_diffusion_model_wrapper(p):
    import comfy.patcher_extension

    def wrapper(executor, x, *args, **kwargs):
        return executor(x * 0.9, *args, **kwargs) * 1.1

    rec = Recorder(wrapper)
    # into model_options' transformer_options, where the sampler also merges ModelPatcher.add_wrapper's wrappers
    comfy.patcher_extension.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL,
                                                 "hook_drift_test", rec, p.model_options, is_model_options=True)
    return rec


CASES = {name[len("_case_"):]: fn for name, fn in dict(globals()).items() if name.startswith("_case_")}
# forward_timestep_embed_patch for Upsample/Downsample may legitimately be ignored by the running ComfyUI (0.3.75
# consults it only for layers it does not dispatch itself); then both models must ignore it.
_MAY_BE_IGNORED = {"forward_timestep_embed_patch"}


@pytest.mark.parametrize("case", list(CASES))
def test_patch_kind_same_on_image_and_video_model(models, clean, case):
    patcher = _patcher()
    rec = CASES[case](patcher)
    options = patcher.model_options["transformer_options"]
    image = _image(models, options)
    image_calls, rec.calls = rec.calls, []
    frames = _video(models, options)
    _assert_same(image, frames, case)
    # called at the same places with the same block/index bookkeeping (AppearNet does not see the patches)
    assert rec.calls == image_calls, f"{case}: video model calls {rec.calls[:4]}..., image model {image_calls[:4]}..."
    if case in _MAY_BE_IGNORED and not image_calls:
        return
    assert image_calls, f"{case}: ComfyUI's UNetModel never called the patch"
    assert not torch.equal(image, clean), f"{case}: the patch did not change the output"


def test_foreign_layer_claim_runs_as_in_comfy(models, clean):
    """A layer ComfyUI does not dispatch itself (another pack's, in the block) runs through the claiming handler
    in both models with the same arguments."""
    unet, video, _ = models

    class Extra(torch.nn.Module):
        def forward(self, x):
            raise AssertionError("a claimed layer must run through its handler")

    seen = []

    def handler(layer, x, emb, context, options, output_shape, *rest):
        seen.append((options["block"], tuple(emb.shape), output_shape, rest))
        return x * 1.2

    patcher = _patcher()
    patcher.set_model_forward_timestep_embed_patch((Extra, handler))
    seq = unet.output_blocks[1]
    seq.append(Extra())
    try:
        image = _image(models, patcher.model_options["transformer_options"])
        image_seen, seen[:] = list(seen), []
        frames = _video(models, patcher.model_options["transformer_options"])
    finally:
        del seq[len(seq) - 1]
    _assert_same(image, frames, "claimed foreign layer")
    assert seen == image_seen and [s[0] for s in seen] == [("output", 1)]
    assert not torch.equal(image, clean)


def test_middle_block_after_patch(models, clean):
    """Called once after the middle block (and its ControlNet residual) with upstream's dict of arguments; its
    "h" replaces the hidden state. On a ComfyUI that has the kind, same output as its UNetModel; on one that does
    not (0.3.75), the same output as the equivalent stock output_block_patch on the first output block."""
    unet, video, (x, t, context, _) = models
    seen = []

    def after_middle(args):
        seen.append(dict(args, block=args["transformer_options"]["block"]))  # the options dict changes later
        return {"h": args["h"] * 1.07}

    patcher = _patcher()
    patcher.set_model_patch(after_middle, "middle_block_after_patch")
    frames = _video(models, patcher.model_options["transformer_options"])
    assert len(seen) == 1
    args = seen[0]
    assert set(args) == {"h", "x", "emb", "context", "y", "timesteps", "transformer_options", "block"}
    assert args["block"] == ("middle", 0) and args["y"] is None
    assert torch.equal(args["x"], x) and torch.equal(args["timesteps"], t) and torch.equal(args["context"], context)
    assert not torch.equal(frames, clean)

    if "middle_block_after_patch" in _upstream_sources()["UNetModel._forward"]:
        seen.clear()
        image = _image(models, patcher.model_options["transformer_options"])
        assert len(seen) == 1
    else:
        stock = _patcher()
        stock.set_model_output_block_patch(
            lambda h, hsp, options: (h * 1.07 if options["block"] == ("output", 0) else h, hsp))
        image = _image(models, stock.model_options["transformer_options"])
    _assert_same(image, frames, "middle_block_after_patch")


def test_output_block_patch_may_take_the_skip(models, clean):
    """Newer ComfyUI: an output_block_patch that merges the skip itself returns hsp=None and no concat follows.
    Merging it the way the concat does must give exactly the unpatched output."""
    calls = []

    def merge(h, hsp, options):
        calls.append(options["block"])
        return torch.cat([h, hsp], dim=1), None

    patcher = _patcher()
    patcher.set_model_output_block_patch(merge)
    frames = _video(models, patcher.model_options["transformer_options"])
    video = models[1]
    assert calls == [("output", i) for i in range(len(video.output_blocks))]
    assert torch.equal(frames, _video(models, None))
    upstream = _upstream_sources()["UNetModel._forward"]
    if re.search(r"if\s+hsp\s+is\s+not\s+None", upstream):
        _assert_same(_image(models, patcher.model_options["transformer_options"]), frames,
                     "output_block_patch hsp=None")


def test_claims_probe_matches_running_comfy(mc):
    """The probe that says whether a forward_timestep_embed_patch may claim a ResBlock agrees with the source of
    the running forward_timestep_embed (0.3.75: consulted only in its fall-through branch)."""
    video_unet = sub("video_unet")
    source = _upstream_sources()["forward_timestep_embed"]
    lookup = source.find("forward_timestep_embed_patch")
    first_dispatch = source.find("isinstance(layer, TimestepBlock)")
    assert lookup > 0 and first_dispatch > 0
    assert video_unet._claims_come_first() == (lookup < first_dispatch)
