"""Does-nothing-at-zero: a fresh MicroCinema module over an SD UNet is the image model applied frame by frame.

method.md section 2/3 (our choices): temporal convs end in a zero-initialised conv, motion modules in a
zero-initialised proj_out, AppearNet's hint conv and every injection (SPADE gamma/beta, attention projector)
start at zero. So a fresh VideoUNet must equal ComfyUI's own UNetModel on the same frames, at AppearNet
strength 0 (AppearNet skipped) and 1 (AppearNet runs, injects zeros), for SD1.x and SD2.x-style UNets.
"""
from __future__ import annotations

import pytest
import torch

from pack_import import randomize, single_thread_fixture, sub, tiny_unet

pytestmark = pytest.mark.parity

TOL = 1e-5
VIDEOS, FRAMES, SIZE = 2, 3, 8


_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread_fixture)


def _inputs(cfg: dict, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    n = VIDEOS * FRAMES
    x = torch.randn(n, 4, SIZE, SIZE, generator=g)
    timesteps = torch.rand(n, generator=g) * 999
    context = torch.randn(n, 5, cfg["context_dim"], generator=g)
    hint = torch.randn(n, 6, SIZE, SIZE, generator=g)  # keyframe latent, mask, frame offset
    return x, timesteps, context, hint


def _video_out(video, x, timesteps, context, hint, strength: float):
    return video(x, timesteps, context, mc_num_frames=FRAMES, mc_hint=hint,
                 mc_strength=torch.full((x.shape[0],), strength))


def _configs():
    configs = sub("configs")
    return {
        # SD1.x structure at test size: conv-attention transformers, 2 levels.
        "sd15_tiny": configs.tiny_unet_config(),
        # SD1.5's full block structure (4 levels, no attention at the deepest, pure Downsample blocks).
        "sd15_4level": configs.sd_unet_config(model_channels=32, channel_mult=(1, 2, 2, 2), context_dim=64,
                                              num_heads=4),
        # SD2.x: linear proj_in/out in the transformers, fixed head width (64 -> 8), wider context (1024 -> 96).
        "sd21_tiny": configs.sd_unet_config(model_channels=32, channel_mult=(1, 2), attention_levels=(True, True),
                                            context_dim=96, num_heads=-1, num_head_channels=8,
                                            linear_in_transformer=True),
    }


@pytest.fixture(scope="module", params=list(_configs()))
def base(request, mc):
    cfg = _configs()[request.param]
    unet = tiny_unet(cfg, seed=3)
    x, timesteps, context, hint = _inputs(cfg)
    with torch.no_grad():
        reference = unet(x, timesteps, context)
    return request.param, cfg, unet, (x, timesteps, context, hint), reference


MODULE_CONFIGS = {
    "full": {},
    "text_sign": {"motion_text_sign": 2},
    "no_appearnet": {"appearnet": False},
    "convs_only": {"motion_modules": False, "appearnet": False},
    "motion_only": {"temporal_convs": False, "appearnet": False},
}


@pytest.mark.parametrize("module_cfg", list(MODULE_CONFIGS))
def test_fresh_module_equals_image_model(mc, base, module_cfg):
    import comfy.ops

    module_mod, video_unet = sub("module"), sub("video_unet")
    name, cfg, unet, (x, timesteps, context, hint), reference = base
    with torch.no_grad():
        module = module_mod.build_module(unet, module_mod.ModuleConfig(**MODULE_CONFIGS[module_cfg]),
                                         comfy.ops.manual_cast)
        video = video_unet.VideoUNet(unet, module)
        for strength in (0.0, 1.0):
            out = _video_out(video, x, timesteps, context, hint, strength)
            diff = (out - reference).abs().max().item()
            assert diff <= TOL, f"{name}/{module_cfg} strength {strength}: max |video - image| = {diff}"


def test_zero_init_layers_alone_give_parity(mc, base):
    """Every other new weight random (norms, temporal attention, AppearNet, projector convs): only the
    zero-initialised layers keep the model equal to the image model."""
    import comfy.ops

    module_mod, video_unet = sub("module"), sub("video_unet")
    name, cfg, unet, (x, timesteps, context, hint), reference = base
    with torch.no_grad():
        module = module_mod.build_module(unet, module_mod.ModuleConfig(motion_text_sign=2), comfy.ops.manual_cast)
        randomize(module, seed=11, std=0.1, skip_zero_init=True)
        video = video_unet.VideoUNet(unet, module)
        for strength in (0.0, 1.0, 2.5):
            out = _video_out(video, x, timesteps, context, hint, strength)
            diff = (out - reference).abs().max().item()
            assert diff <= TOL, f"{name} strength {strength}: max |video - image| = {diff}"


def test_fresh_module_state(mc):
    """The layers the design zero-initialises are zero, everything else is not, and AppearNet starts as a
    bitwise copy of the UNet's encoder and middle block (ControlNet-style)."""
    import comfy.ops

    module_mod = sub("module")
    unet = tiny_unet(seed=5)
    module = module_mod.build_module(unet, module_mod.ModuleConfig(), comfy.ops.manual_cast)
    zero = set()
    for prefix, layer in module.named_modules():
        for child in getattr(type(layer), "zero_init", ()):
            zero.update(f"{prefix}.{child}.{n}" if prefix else f"{child}.{n}"
                        for n, _ in getattr(layer, child).named_parameters())
    assert zero, "no zero-initialised layers found"
    kinds = {k.split(".")[-2] for k in zero}
    assert {"conv", "proj_out", "to_gamma", "to_beta", "proj", "hint_in"} <= kinds, kinds
    for key, tensor in module.state_dict().items():
        if key in zero:
            assert not tensor.any(), f"{key} should start at zero"
        elif key.endswith("weight"):
            assert tensor.abs().sum() > 0, f"{key} was left uninitialised (all zero)"
    unet_sd = unet.state_dict()
    copied = {k: v for k, v in module.appearnet.state_dict().items()
              if k.startswith(("time_embed.", "input_blocks.", "middle_block."))}
    assert copied and set(copied) == {k for k in unet_sd if k.startswith(("time_embed.", "input_blocks.",
                                                                          "middle_block."))}
    for key, tensor in copied.items():
        assert torch.equal(tensor, unet_sd[key]), key
        assert tensor.data_ptr() != unet_sd[key].data_ptr(), f"{key} shares storage with the UNet"
