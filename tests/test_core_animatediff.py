"""AnimateDiff v1/v2/v3 motion modules initialise MicroCinema's temporal transformers (method.md section 2).

Synthetic motion-module files with the PUBLIC key names and shapes (mm_sd_v15_v2 / v3_sd15_mm layout):
    down_blocks.<L>.motion_modules.<j>.temporal_transformer.<rest>   j-th motion module of down level L
    mid_block.motion_modules.0.temporal_transformer.<rest>           v2 only
    up_blocks.<L>.motion_modules.<0..2>.temporal_transformer.<rest>  up level L counted from the deepest
The expected block of every module is written out here by hand (not computed by the pack's mapping).
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from pack_import import module_operations, randomize, single_thread_fixture, sub, tiny_unet


_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread_fixture)


def true_pe(length: int, channels: int) -> torch.Tensor:
    """AnimateDiff's PositionalEncoding buffer [1, max_len, C] (its own formula, written out)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, channels, 2, dtype=torch.float32) * (-torch.log(torch.tensor(10000.0))
                                                                             / channels))
    pe = torch.zeros(1, length, channels)
    pe[0, :, 0::2] = torch.sin(position * div_term)
    pe[0, :, 1::2] = torch.cos(position * div_term)
    return pe


def motion_module_tensors(channels: int, gen: torch.Generator | None, pe_len: int = 32, pe_mode: str = "sin",
                          device=None) -> dict[str, torch.Tensor]:
    """<rest> -> tensor of one AnimateDiff TemporalTransformer3DModel (two temporal self-attentions, GEGLU x4)."""
    c = channels

    def t(*shape):
        if device == "meta":
            return torch.empty(*shape, device="meta")
        return 0.1 * torch.randn(*shape, generator=gen)

    out = {"norm.weight": t(c), "norm.bias": t(c), "proj_in.weight": t(c, c), "proj_in.bias": t(c),
           "proj_out.weight": t(c, c), "proj_out.bias": t(c)}
    block = "transformer_blocks.0."
    for a in (0, 1):
        attn = f"{block}attention_blocks.{a}."
        for name in ("to_q", "to_k", "to_v"):
            out[f"{attn}{name}.weight"] = t(c, c)
        out[f"{attn}to_out.0.weight"] = t(c, c)
        out[f"{attn}to_out.0.bias"] = t(c)
        if pe_mode == "sin":
            out[f"{attn}pos_encoder.pe"] = true_pe(pe_len, c)
        elif pe_mode == "zeros":
            out[f"{attn}pos_encoder.pe"] = torch.zeros(1, pe_len, c)
        elif pe_mode == "learned":
            out[f"{attn}pos_encoder.pe"] = true_pe(pe_len, c) + 0.05 * torch.randn(1, pe_len, c, generator=gen)
        out[f"{block}norms.{a}.weight"] = t(c)
        out[f"{block}norms.{a}.bias"] = t(c)
    out[f"{block}ff.net.0.proj.weight"] = t(8 * c, c)
    out[f"{block}ff.net.0.proj.bias"] = t(8 * c)
    out[f"{block}ff.net.2.weight"] = t(c, 4 * c)
    out[f"{block}ff.net.2.bias"] = t(c)
    out[f"{block}ff_norm.weight"] = t(c)
    out[f"{block}ff_norm.bias"] = t(c)
    return out


def animatediff_file(down: list[int], up: list[int], mid: int | None, down_per_level: int = 2,
                     up_per_level: int = 3, seed: int = 0, prefix: str = "", **kw) -> dict[str, torch.Tensor]:
    """down/up: channels per level (up counted from the deepest); mid: mid-block channels (None for v3)."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}

    def add(name, channels):
        for rest, tensor in motion_module_tensors(channels, gen, **kw).items():
            sd[f"{prefix}{name}.temporal_transformer.{rest}"] = tensor

    for level, channels in enumerate(down):
        for j in range(down_per_level):
            add(f"down_blocks.{level}.motion_modules.{j}", channels)
    for level, channels in enumerate(up):
        for j in range(up_per_level):
            add(f"up_blocks.{level}.motion_modules.{j}", channels)
    if mid is not None:
        add("mid_block.motion_modules.0", mid)
    return sd


# The tiny config (32/64 channels, 2 levels): input blocks 1, 2 (level 0) and 4, 5 (level 1) hold ResBlocks;
# output blocks 0-2 are the deepest level (64), 3-5 the full-resolution one (32).
TINY_DOWN, TINY_UP, TINY_MID = [32, 64], [64, 32], 64
TINY_TARGETS = {
    "down_blocks.0.motion_modules.0": "temporal.input.1.motion",
    "down_blocks.0.motion_modules.1": "temporal.input.2.motion",
    "down_blocks.1.motion_modules.0": "temporal.input.4.motion",
    "down_blocks.1.motion_modules.1": "temporal.input.5.motion",
    "up_blocks.0.motion_modules.0": "temporal.output.0.motion",
    "up_blocks.0.motion_modules.1": "temporal.output.1.motion",
    "up_blocks.0.motion_modules.2": "temporal.output.2.motion",
    "up_blocks.1.motion_modules.0": "temporal.output.3.motion",
    "up_blocks.1.motion_modules.1": "temporal.output.4.motion",
    "up_blocks.1.motion_modules.2": "temporal.output.5.motion",
    "mid_block.motion_modules.0": "temporal.middle.motion",
}


def expected_target(key: str) -> str | None:
    """Module-format key for a public key, from the hand-written table (None for pe tables)."""
    if key.endswith("pos_encoder.pe"):
        return None
    source, rest = key.split(".temporal_transformer.")
    for name, target in TINY_TARGETS.items():
        if source == name or source.endswith("." + name):
            return f"{target}.{rest}"
    raise AssertionError(f"no hand-written target for {key}")


@pytest.fixture(scope="module")
def unet(mc):
    return tiny_unet(seed=70)


def _fresh_module(unet, **cfg):
    module_mod = sub("module")
    module = module_mod.build_module(unet, module_mod.ModuleConfig(**cfg), module_operations())
    return randomize(module, seed=71, std=0.1)  # non-zero everywhere, so "unchanged" is meaningful


def _write(tmp_path, name: str, sd: dict) -> str:
    path = tmp_path / name
    save_file(sd, str(path))
    return str(path)


@pytest.mark.parametrize("version", ["v2", "v3", "v1", "v3_prefixed"])
def test_motion_module_lands_in_the_right_blocks(mc, unet, tmp_path, version):
    loading = sub("loading")
    mid = TINY_MID if version in ("v1", "v2") else None
    pe_len = 24 if version == "v1" else 32
    prefix = "motion_module." if version.endswith("prefixed") else ""
    sd = animatediff_file(TINY_DOWN, TINY_UP, mid, seed=72, pe_len=pe_len, prefix=prefix)
    module = _fresh_module(unet)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    loading.load_motion_module(module, _write(tmp_path, f"{version}.safetensors", sd))
    after = module.state_dict()

    written = {}
    for key, tensor in sd.items():
        target = expected_target(key)
        if target is not None:
            written[target] = tensor
    assert len(written) == len(sd) - sum(k.endswith(".pe") for k in sd)
    for target, tensor in written.items():
        assert torch.equal(after[target], tensor), target
    for key, tensor in after.items():
        if key not in written:
            assert torch.equal(tensor, before[key]), f"{key} changed but no file tensor goes there"
    # Every temporal transformer of the module got weights, except the mid block for v3.
    motion_keys = {k for k in after if k.startswith("temporal.") and ".motion." in k}
    missing = motion_keys - set(written)
    if mid is None:
        assert missing and all(k.startswith("temporal.middle.motion.") for k in missing)
    else:
        assert not missing, sorted(missing)[:5]


def test_convert_reports_mid_block(mc, unet):
    animatediff = sub("animatediff")
    layout = sub("layout").read_layout(unet)
    v2 = animatediff_file(TINY_DOWN, TINY_UP, TINY_MID, seed=73)
    v3 = animatediff_file(TINY_DOWN, TINY_UP, None, seed=73)
    converted, has_mid = animatediff.convert_animatediff(v2, layout)
    assert has_mid and set(converted) == {expected_target(k) for k in v2 if not k.endswith(".pe")}
    converted, has_mid = animatediff.convert_animatediff(v3, layout)
    assert not has_mid and not any(k.startswith("temporal.middle.") for k in converted)
    assert animatediff.is_animatediff(v2) and not animatediff.is_animatediff({"model.diffusion_model.x": None})


def test_loaded_motion_module_changes_the_video_model(mc, unet, tmp_path):
    """After loading, the motion modules are live in the forward: frames are mixed, unlike the fresh module."""
    loading, video_unet = sub("loading"), sub("video_unet")
    module = sub("module").build_module(unet, sub("module").ModuleConfig(appearnet=False, temporal_convs=False),
                                        module_operations())
    model = video_unet.VideoUNet(unet, module)
    g = torch.Generator().manual_seed(74)
    x = torch.randn(4, 4, 8, 8, generator=g)
    ts = torch.full((4,), 500.0)
    ctx = torch.randn(4, 3, 64, generator=g)
    with torch.no_grad():
        plain = unet(x, ts, ctx)
        assert (model(x, ts, ctx, mc_num_frames=4) - plain).abs().max() <= 1e-5
        loading.load_motion_module(module, _write(tmp_path, "v2.safetensors",
                                                  animatediff_file(TINY_DOWN, TINY_UP, TINY_MID, seed=75)))
        assert (model(x, ts, ctx, mc_num_frames=4) - plain).abs().max() > 1e-3


def _load_error(module, tmp_path, sd, name="bad.safetensors", names_file=True) -> str:
    checkpoint, loading = sub("checkpoint"), sub("loading")
    with pytest.raises(checkpoint.MicroCinemaCheckpointError) as info:
        loading.load_motion_module(module, _write(tmp_path, name, sd))
    if names_file:
        assert name in str(info.value)
    return str(info.value)


@pytest.mark.reliability
def test_other_channel_width_refused(mc, unet, tmp_path):
    module = _fresh_module(unet)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    message = _load_error(module, tmp_path, animatediff_file([48, 96], [96, 48], 96, seed=76))
    assert "does not fit" in message and "temporal.input.1.motion." in message and "(48," in message
    after = module.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before), "a refused file must not half-load"


@pytest.mark.reliability
def test_more_levels_than_the_unet_refused(mc, unet, tmp_path):
    """An SD1.5 file (4 levels) on a 2-level UNet: no matching block for down level 2."""
    message = _load_error(_fresh_module(unet), tmp_path, animatediff_file([32, 64, 64, 64], [64, 64, 64, 32], 64))
    assert "no matching block" in message


@pytest.mark.reliability
def test_non_sinusoidal_positions_refused(mc, unet, tmp_path):
    message = _load_error(_fresh_module(unet), tmp_path,
                          animatediff_file(TINY_DOWN, TINY_UP, TINY_MID, seed=77, pe_mode="learned"))
    assert "positional encoding differs" in message


def test_zero_positions_accepted(mc, unet, tmp_path):
    """Some converted files store an all-zero table (the buffer was not saved): our sinusoid is used."""
    loading = sub("loading")
    module = _fresh_module(unet)
    loading.load_motion_module(module, _write(tmp_path, "zeros.safetensors",
                                              animatediff_file(TINY_DOWN, TINY_UP, TINY_MID, seed=78, pe_mode="zeros")))


@pytest.mark.reliability
def test_wrong_files_refused(mc, unet, tmp_path):
    module = _fresh_module(unet)
    assert "not an AnimateDiff motion module" in _load_error(module, tmp_path,
                                                             {"model.diffusion_model.x": torch.ones(1)})
    no_motion = _fresh_module(unet, motion_modules=False)
    assert "no temporal transformers" in _load_error(no_motion, tmp_path,
                                                     animatediff_file(TINY_DOWN, TINY_UP, TINY_MID, seed=79),
                                                     names_file=False)  # the module is at fault, not the file
    no_mid = _fresh_module(unet, motion_mid_block=False)
    message = _load_error(no_mid, tmp_path, animatediff_file(TINY_DOWN, TINY_UP, TINY_MID, seed=80))
    assert "temporal.middle.motion." in message
    bad_pe = animatediff_file(TINY_DOWN, TINY_UP, None, seed=81)
    key = next(k for k in bad_pe if k.endswith(".pe"))
    bad_pe[key] = bad_pe[key][0]
    assert "positional table shape" in _load_error(module, tmp_path, bad_pe)


# SD1.5: input blocks with ResBlocks 1,2 | 4,5 | 7,8 | 10,11 (320 | 640 | 1280 | 1280); output blocks 3u..3u+2
# for up level u (1280 | 1280 | 640 | 320); the middle block 1280.
SD15_DOWN, SD15_UP, SD15_MID = [320, 640, 1280, 1280], [1280, 1280, 640, 320], 1280
SD15_INPUT = {(0, 0): 1, (0, 1): 2, (1, 0): 4, (1, 1): 5, (2, 0): 7, (2, 1): 8, (3, 0): 10, (3, 1): 11}


def test_sd15_layout_maps_all_21_modules(mc):
    """SD1.5 widths on the meta device (shapes only): a v2 file's 8 down + 12 up + 1 mid modules land on every
    temporal transformer of the module, each with the module's own shape."""
    animatediff = sub("animatediff")
    unet = tiny_unet(sub("configs").reference_unet_config(), device="meta")
    module = sub("module").build_module(unet, sub("module").ModuleConfig(), module_operations(), device="meta")
    sd = animatediff_file(SD15_DOWN, SD15_UP, SD15_MID, device="meta")
    converted, has_mid = animatediff.convert_animatediff(sd, module.layout)
    assert has_mid
    expected = module.state_dict()
    motion = {k: v for k, v in expected.items() if k.startswith("temporal.") and ".motion." in k}
    assert set(converted) == set(motion)
    for key, tensor in converted.items():
        assert tensor.shape == motion[key].shape, (key, tensor.shape, motion[key].shape)
    modules = {k.split(".motion.")[0] for k in converted}
    assert len(modules) == 21
    for (level, j), block in SD15_INPUT.items():
        key = f"temporal.input.{block}.motion.proj_in.weight"
        assert converted[key].shape == (SD15_DOWN[level], SD15_DOWN[level])
        assert converted[key] is sd[f"down_blocks.{level}.motion_modules.{j}.temporal_transformer.proj_in.weight"]
    for up_level, channels in enumerate(SD15_UP):
        for j in range(3):
            key = f"temporal.output.{3 * up_level + j}.motion.transformer_blocks.0.ff.net.2.weight"
            assert converted[key].shape == (channels, 4 * channels)
            assert converted[key] is sd[f"up_blocks.{up_level}.motion_modules.{j}.temporal_transformer"
                                        f".transformer_blocks.0.ff.net.2.weight"]
    assert converted["temporal.middle.motion.proj_out.weight"].shape == (1280, 1280)
