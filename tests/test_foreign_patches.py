"""MicroCinema next to other packs on the same checkpoint (issue 17, part 8).

ComfyUI shares one UNet between every clone of a checkpoint's MODEL and leaves the last sampled clone patched.
Here a stand-in for another pack changes that UNet the stock ways: a ModelPatcher injection that inserts layers
into blocks (as AnimateDiff-Evolved inserts its motion modules) and a top-level child, object patches on
sub-modules, a LoRA. It samples with the stock sampler so its changes are live, then a MicroCinema module is
applied to the same checkpoint. The module must be exactly the one a clean UNet gives (keys and weights), and
the video model must sample exactly the same latents.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.extra_models import lora_state_dict
from pack_import import single_thread_fixture, sub, tiny_unet

pytestmark = pytest.mark.parity

FRAMES, SIZE, SEED, STEPS = 4, 32, 11, 2
TRAINED = "foreign_patches_trained.safetensors"
CASES = ("injection", "object_patches", "lora", "all")

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread_fixture)


class ForeignMotion(nn.Module):
    """Stands for another pack's motion module: a layer with weights of its own that changes its input."""

    def __init__(self, channels: int, seed: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, 1)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(self.proj.weight.shape, generator=gen) * 0.05)
            self.proj.bias.zero_()

    def forward(self, x, *args, **kwargs):
        return x + self.proj(x)


class ForeignWrapper(nn.Module):
    """An object patch's value: wraps the original sub-module and adds weights and a change of its own."""

    def __init__(self, inner: nn.Module, width: int):
        super().__init__()
        self.inner = inner
        self.extra = nn.Linear(width, width)
        nn.init.constant_(self.extra.weight, 0.01)
        nn.init.zeros_(self.extra.bias)

    def forward(self, x, *args, **kwargs):
        out = self.inner(x, *args, **kwargs)
        return out + (self.extra(x) if x.shape[-1] == self.extra.in_features else 0.1 * out)


def _foreign_injection():
    """A stock PatcherInjection that inserts ForeignMotion layers into three blocks and adds a top-level child,
    and removes exactly those on eject (what AnimateDiff-Evolved does with its motion modules)."""
    import comfy.patcher_extension

    inserted: list[tuple[nn.Module, nn.Module]] = []

    def inject(patcher):
        unet = patcher.model.diffusion_model
        channels = unet.model_channels
        # in the middle of an input block (shifts the transformer's index), at the end of the middle block and
        # of an output block
        for seq, position, seed in ((unet.input_blocks[1], 1, 1), (unet.middle_block, len(unet.middle_block), 2),
                                    (unet.output_blocks[1], len(unet.output_blocks[1]), 3)):
            layer = ForeignMotion(channels, seed)
            seq.insert(position, layer)
            inserted.append((seq, layer))
        unet.add_module("foreign_adapter", ForeignMotion(channels, 4))

    def eject(patcher):
        unet = patcher.model.diffusion_model
        while inserted:
            seq, layer = inserted.pop()
            del seq[next(i for i, m in enumerate(seq) if m is layer)]
        del unet._modules["foreign_adapter"]

    return comfy.patcher_extension.PatcherInjection(inject=inject, eject=eject)


OBJECT_PATCHES = ("diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1",  # inside an SD layer
                  "diffusion_model.input_blocks.0.0")  # a whole block layer (conv_in: the stock forward calls it)


def _dirty(model, case: str, lora_sd: dict):
    """A clone of ``model`` changed the ways ``case`` names."""
    import comfy.sd
    import comfy.utils

    dirty = model.clone()
    if case in ("lora", "all"):
        dirty, _ = comfy.sd.load_lora_for_models(dirty, None, lora_sd, 1.0, 0)
    if case in ("injection", "all"):
        dirty.set_injections("foreign_test_pack", [_foreign_injection()])
    if case in ("object_patches", "all"):
        for key in OBJECT_PATCHES:
            original = comfy.utils.get_attr(model.model, key)
            width = original.to_q.in_features if hasattr(original, "to_q") else 1
            dirty.add_object_patch(key, ForeignWrapper(original, width))
    return dirty


def _assert_live(model, case: str, base_weights: dict):
    """The other pack's changes are on the shared UNet now (as ComfyUI leaves them after sampling)."""
    unet = model.model.diffusion_model
    if case in ("injection", "all"):
        assert sum(isinstance(m, ForeignMotion) for m in unet.modules()) == 4
    if case in ("object_patches", "all"):
        # (by class: an injection that is live too has shifted the slots the keys name)
        assert sum(isinstance(m, ForeignWrapper) for m in unet.modules()) == len(OBJECT_PATCHES)
    if case in ("lora", "all"):
        live = dict(unet.named_parameters())
        assert any(not torch.equal(live[k], v) for k, v in base_weights.items() if k in live)


@pytest.fixture(scope="module")
def comfy_nodes(comfy_env):
    return comfy_env.nodes


@pytest.fixture(scope="module")
def setup(mc, comfy_env, comfy_dirs, tiny_sd_checkpoint, comfy_nodes):
    """Shared text encoder/VAE outputs, the clean references and a trained-like module file."""
    import comfy.sd

    path = str(comfy_dirs.models["checkpoints"] / tiny_sd_checkpoint)
    model, clip, vae, *_ = comfy.sd.load_checkpoint_guess_config(path, output_vae=True, output_clip=True)
    encode = comfy_nodes.CLIPTextEncode()
    pos, neg = encode.encode(clip, "a ball rolling")[0], encode.encode(clip, "blurry")[0]
    image = torch.full((1, 40, 48, 3), 0.4)
    image[:, 10:30, 12:36, 0] = 0.9
    i2v = comfy_env.node_class("MicroCinemaImageToVideo").execute(
        positive=pos, negative=neg, vae=vae, image=image, width=SIZE, height=SIZE, length=FRAMES,
        keyframe_position="center", keyframe_index=0, appearance_strength=1.0, noise_prior_gamma=0.02,
        crop="center", frame_rate=8.0, resize_method="bilinear").result
    lora = lora_state_dict(model)

    fresh = _fresh_module(mc, model)
    trained = _fresh_module(mc, model)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():  # as after training: every weight moves, the AppearNet encoder copy included
        for p in trained.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    mc.checkpoint.save_module(trained, str(comfy_dirs.models["microcinema"] / TRAINED))
    base_weights = {k: v.clone() for k, v in model.model.diffusion_model.state_dict().items()}
    ctx = dict(mc=mc, pos=pos, neg=neg, i2v=i2v, lora=lora, base_weights=base_weights, path=path,
               nodes=comfy_nodes, apply=comfy_env.node_class("MicroCinemaApplyModule"))
    ctx["fresh_sd"] = {k: v.clone() for k, v in fresh.state_dict().items()}
    ctx["video"] = _video_sample(ctx, _apply_trained(ctx, model))
    return ctx


def _fresh_module(mc, model):
    torch.manual_seed(0)  # the temporal layers' random init (AppearNet's encoder is a copy)
    return mc.patching.new_module(model, mc.module.ModuleConfig())


def _apply_trained(ctx, model):
    return ctx["apply"].execute(model, TRAINED, "none").result[0]


def _video_sample(ctx, model) -> torch.Tensor:
    pos, neg, latent, _fps = ctx["i2v"]
    return ctx["nodes"].common_ksampler(model, SEED, STEPS, 3.0, "euler", "normal", pos, neg, latent)[0]["samples"]


def _stock_sample(ctx, model) -> torch.Tensor:
    latent = {"samples": torch.zeros(1, 4, SIZE // 8, SIZE // 8)}
    return ctx["nodes"].common_ksampler(model, SEED, STEPS, 3.0, "euler", "normal", ctx["pos"], ctx["neg"],
                                        latent)[0]["samples"]


def _load_model(ctx):
    import comfy.sd

    return comfy.sd.load_checkpoint_guess_config(ctx["path"], output_vae=False, output_clip=False)[0]


def _assert_same_state(got: dict, want: dict):
    assert sorted(got) == sorted(want), sorted(set(got) ^ set(want))[:10]
    for key, tensor in want.items():
        assert torch.equal(got[key], tensor), key


@pytest.mark.graph
@pytest.mark.parametrize("case", CASES)
def test_module_ignores_what_other_packs_left_on_the_unet(setup, case):
    model = _load_model(setup)
    dirty = _dirty(model, case, setup["lora"])
    stock = _stock_sample(setup, dirty)
    assert torch.isfinite(stock).all()
    _assert_live(model, case, setup["base_weights"])

    # a new module: same keys and weights as on the clean UNet (LoRA or not: the checkpoint's weights)
    _assert_same_state(_fresh_module(setup["mc"], model).state_dict(), setup["fresh_sd"])
    # the live UNet still carries the other pack's changes (MicroCinema changed nothing on it)
    _assert_live(model, case, setup["base_weights"])

    # "MicroCinema Apply Module" with a module file on the same checkpoint samples exactly the clean video
    video = _video_sample(setup, _apply_trained(setup, model))
    assert torch.equal(video, setup["video"])


@pytest.mark.graph
def test_lora_before_apply_module_after_it_sampled(setup):
    """The MODEL given to Apply Module carries a LoRA that is live (it sampled): a new module still copies the
    checkpoint's weights, as it does when the LoRA comes after Apply Module (docs/architecture.md)."""
    model = _load_model(setup)
    lora_model = _dirty(model, "lora", setup["lora"])
    _stock_sample(setup, lora_model)
    _assert_live(model, "lora", setup["base_weights"])
    _assert_same_state(_fresh_module(setup["mc"], lora_model).state_dict(), setup["fresh_sd"])


def test_lowvram_weight_functions_stay_out_of_the_copy(mc):
    """A lowvram load hangs the patcher's LoRA on layers as weight functions: AppearNet's copy gets the layer
    with the checkpoint's weight and none of that state, and the live layer keeps it."""
    import comfy.model_patcher

    module_mod = sub("module")
    unet = tiny_unet(seed=7)
    want = module_mod.build_module(unet, module_mod.ModuleConfig(), sub("patching").MODULE_OPERATIONS)
    conv = unet.input_blocks[1][0].in_layers[2]
    key = "diffusion_model.input_blocks.1.0.in_layers.2.weight"
    patches = {key: [(1.0, torch.ones(conv.weight.shape), 1.0, None, None)]}
    conv.weight_function = [comfy.model_patcher.LowVramPatch(key, patches)]
    conv.prev_comfy_cast_weights, conv.comfy_cast_weights = conv.comfy_cast_weights, True
    got = module_mod.build_module(unet, module_mod.ModuleConfig(), sub("patching").MODULE_OPERATIONS)
    copied = got.appearnet.input_blocks[1][0].in_layers[2]
    assert copied.weight_function == [] and copied.comfy_cast_weights is False
    assert len(conv.weight_function) == 1 and conv.comfy_cast_weights is True
    assert torch.equal(copied.weight, conv.weight)
    assert sorted(got.state_dict()) == sorted(want.state_dict())


def _core_inputs(context_dim: int, frames: int = 3, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(frames, 4, 8, 8, generator=gen)
    timesteps = torch.rand(frames, generator=gen) * 999
    context = torch.randn(frames, 5, context_dim, generator=gen)
    hint = torch.randn(frames, 6, 8, 8, generator=gen)
    return x, timesteps, context, dict(mc_num_frames=frames, mc_hint=hint, mc_strength=torch.ones(frames))


def test_video_unet_walks_only_sd_layers_unless_claimed(mc):
    """A layer left in a live block by another model is not run; one the sampled model claims with a
    forward_timestep_embed_patch is (the stock way a pack asks the UNet to run its layer); a layer replaced in
    its SD slot (an object patch) runs as in ComfyUI's own forward."""
    from pack_import import randomize

    module_mod, video_unet = sub("module"), sub("video_unet")
    unet = tiny_unet(seed=9)
    module = randomize(module_mod.build_module(unet, module_mod.ModuleConfig(), sub("patching").MODULE_OPERATIONS),
                       seed=10, std=0.05)
    video = video_unet.VideoUNet(unet, module)
    x, t, context, kwargs = _core_inputs(module.layout.context_dim)
    with torch.no_grad():
        clean = video(x, t, context, **kwargs)
        seq = unet.input_blocks[1]
        foreign = ForeignMotion(seq[0].out_channels, 8)
        seq.insert(1, foreign)
        try:
            left_behind = video(x, t, context, **kwargs)
            calls = []

            def handler(layer, h, *args):
                calls.append(layer)
                return layer(h)

            options = {"patches": {"forward_timestep_embed_patch": [(ForeignMotion, handler)]}}
            claimed = video(x, t, context, transformer_options=options, **kwargs)
        finally:
            del seq[1]
        first = unet.input_blocks[0]
        conv_in = first[0]
        first[0] = ForeignWrapper(conv_in, 1)
        try:
            replaced = video(x, t, context, **kwargs)
        finally:
            first[0] = conv_in
    assert torch.equal(left_behind, clean)
    assert calls == [foreign] and not torch.equal(claimed, clean)
    assert not torch.equal(replaced, clean)
