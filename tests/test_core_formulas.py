"""Every formula of the method against an independent computation written here (method.md sections 2-4).

The references below never call the pack's helpers: group norms are explicit means/variances, the temporal
conv is a real F.conv3d with kernel (3, 1, 1), attention is softmax(QK^T / sqrt(d)) V per head and per spatial
location over frames, the position table is built with loops. Zero-initialised weights are replaced by random
ones first, so the formulas are actually exercised. References run in float64, the pack in float32.
"""
from __future__ import annotations

import math

import pytest
import torch

from pack_import import module_operations, randomize, single_thread_fixture, sub, tiny_unet

TOL = 2e-5


_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread_fixture)


def _d(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float64)


def _close(ours: torch.Tensor, ref: torch.Tensor, tol: float = TOL):
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    diff = (ours.to(torch.float64) - ref).abs().max().item()
    scale = max(1.0, ref.abs().max().item())
    assert diff <= tol * scale, f"max abs diff {diff} (reference magnitude {scale})"


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# -- references ------------------------------------------------------------------------------------------------

def ref_group_norm(x: torch.Tensor, groups: int, weight, bias, eps: float) -> torch.Tensor:
    """x [N, C, ...]: normalise over (C/groups, all trailing dims) with explicit mean and biased variance."""
    n, c = x.shape[:2]
    grouped = x.reshape(n, groups, -1)
    mean = grouped.mean(dim=2, keepdim=True)
    var = ((grouped - mean) ** 2).mean(dim=2, keepdim=True)
    normed = ((grouped - mean) / torch.sqrt(var + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return normed * _d(weight).reshape(shape) + _d(bias).reshape(shape)


def ref_layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * _d(weight) + _d(bias)


def ref_silu(x):
    return x / (1.0 + torch.exp(-x))


def ref_gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def ref_linear(x, layer):
    out = x @ _d(layer.weight).T
    return out + _d(layer.bias) if layer.bias is not None else out


def ref_conv1x1(x, layer):
    """x [N, C, H, W], a 1x1 Conv2d as an einsum."""
    w = _d(layer.weight)[:, :, 0, 0]
    return torch.einsum("oc,nchw->nohw", w, x) + _d(layer.bias).reshape(1, -1, 1, 1)


def to_video(x, t):
    """[(b t), c, h, w] -> [b, c, t, h, w]"""
    bt, c, h, w = x.shape
    return x.reshape(bt // t, t, c, h, w).permute(0, 2, 1, 3, 4)


def from_video(x):
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)


def ref_temporal_conv(layer, h, t, gamma=None, beta=None):
    """h + Conv3d_(3,1,1)(SiLU((1 + gamma) * GroupNorm_(C/g, T, H, W)(h) + beta))"""
    x = to_video(_d(h), t)
    x = ref_group_norm(x, layer.norm.num_groups, layer.norm.weight, layer.norm.bias, layer.norm.eps)
    if gamma is not None:
        x = x * (1 + to_video(_d(gamma), t)) + to_video(_d(beta), t)
    x = ref_silu(x)
    weight = _d(layer.conv.weight)  # [C, C, 3, 1]
    assert weight.shape[2:] == (3, 1)
    x = torch.nn.functional.conv3d(x, weight.unsqueeze(-1), _d(layer.conv.bias), padding=(1, 0, 0))
    return _d(h) + from_video(x)


def ref_positions(t: int, c: int) -> torch.Tensor:
    """AnimateDiff's PositionalEncoding table, element by element."""
    pe = torch.zeros(t, c, dtype=torch.float64)
    for pos in range(t):
        for i in range(0, c, 2):
            freq = 1.0 / (10000.0 ** (i / c))
            pe[pos, i] = math.sin(pos * freq)
            if i + 1 < c:
                pe[pos, i + 1] = math.cos(pos * freq)
    return pe


def ref_attention(x, attn, heads):
    """x [N, T, C] (N = videos * spatial positions): positions added, then per head softmax(QK^T/sqrt(d))V."""
    n, t, c = x.shape
    x = x + ref_positions(t, c)[None]
    q, k, v = (x @ _d(w.weight).T for w in (attn.to_q, attn.to_k, attn.to_v))
    d = c // heads
    out = torch.zeros_like(q)
    for head in range(heads):
        sl = slice(head * d, (head + 1) * d)
        scores = q[:, :, sl] @ k[:, :, sl].transpose(1, 2) / math.sqrt(d)  # [N, T, T]
        weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out[:, :, sl] = weights @ v[:, :, sl]
    return ref_linear(out, attn.to_out[0])


def ref_geglu(x, ff):
    proj = ref_linear(x, ff.net[0].proj)
    inner = proj.shape[-1] // 2
    return ref_linear(proj[..., :inner] * ref_gelu(proj[..., inner:]), ff.net[2])


def ref_temporal_transformer(tt, h, t, heads):
    bt, c, height, width = h.shape
    x = ref_group_norm(_d(h), tt.norm.num_groups, tt.norm.weight, tt.norm.bias, tt.norm.eps)  # per frame
    x = to_video(x, t).permute(0, 3, 4, 2, 1).reshape(-1, t, c)  # [(b h w), t, c]
    x = ref_linear(x, tt.proj_in)
    for block in tt.transformer_blocks:
        for attn, norm in zip(block.attention_blocks, block.norms):
            x = ref_attention(ref_layer_norm(x, norm.weight, norm.bias, norm.eps), attn, heads) + x
        x = ref_geglu(ref_layer_norm(x, block.ff_norm.weight, block.ff_norm.bias, block.ff_norm.eps), block.ff) + x
    x = ref_linear(x, tt.proj_out)
    x = x.reshape(bt // t, height, width, t, c).permute(0, 3, 4, 1, 2).reshape(bt, c, height, width)
    return _d(h) + x


# -- temporal layers -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels,frames", [(64, 5), (32, 1)])
def test_temporal_conv(mc, channels, frames):
    temporal = sub("temporal")
    layer = randomize(temporal.TemporalConv(channels, module_operations()), seed=1, std=0.1)
    assert layer.conv.weight.abs().min() > 0, "zero-init conv must be perturbed for this test"
    h = torch.randn(2 * frames, channels, 3, 4, generator=_gen(2))
    with torch.no_grad():
        _close(layer(h, frames), ref_temporal_conv(layer, h, frames))


def test_temporal_conv_spade_modulation(mc):
    temporal = sub("temporal")
    channels, frames = 64, 4
    layer = randomize(temporal.TemporalConv(channels, module_operations()), seed=3, std=0.1)
    g = _gen(4)
    h = torch.randn(2 * frames, channels, 3, 3, generator=g)
    gamma = 0.3 * torch.randn(h.shape, generator=g)
    beta = 0.3 * torch.randn(h.shape, generator=g)
    with torch.no_grad():
        _close(layer(h, frames, gamma, beta), ref_temporal_conv(layer, h, frames, gamma, beta))


def test_temporal_conv_groups_span_frames(mc):
    """The norm statistics cover all T frames of a video (not one frame): scaling one frame of a video changes
    the normalised values of the other frames of that video."""
    temporal = sub("temporal")
    layer = randomize(temporal.TemporalConv(32, module_operations()), seed=5, std=0.1)
    h = torch.randn(6, 32, 2, 2, generator=_gen(6))
    h2 = h.clone()
    h2[0] *= 3.0
    with torch.no_grad():
        a, b = layer(h, 3), layer(h2, 3)
    assert not torch.allclose(a[2], b[2]), "frame 2 should see frame 0 through the shared statistics"
    assert torch.equal(a[3:], b[3:]), "the second video must not see the first"


def test_sinusoidal_positions_table(mc):
    temporal = sub("temporal")
    for t, c in ((32, 320), (24, 64), (7, 32), (3, 6)):
        _close(temporal.sinusoidal_positions(t, c)[0], ref_positions(t, c), tol=1e-5)


def test_geglu_feed_forward(mc):
    temporal = sub("temporal")
    ff = randomize(temporal.GEGLUFeedForward(32, 4, module_operations()), seed=7, std=0.1)
    assert ff.net[0].proj.weight.shape == (256, 32) and ff.net[2].weight.shape == (32, 128)
    x = torch.randn(5, 3, 32, generator=_gen(8))
    with torch.no_grad():
        _close(ff(x), ref_geglu(_d(x), ff))


def test_temporal_attention(mc):
    temporal = sub("temporal")
    attn = randomize(temporal.TemporalAttention(64, 8, module_operations()), seed=9, std=0.15)
    x = torch.randn(12, 6, 64, generator=_gen(10))
    with torch.no_grad():
        _close(attn(x), ref_attention(_d(x), attn, 8))


@pytest.mark.parametrize("layers,blocks,frames", [(1, 2, 5), (2, 1, 3)])
def test_temporal_transformer(mc, layers, blocks, frames):
    temporal = sub("temporal")
    channels, heads = 64, 8
    tt = randomize(temporal.TemporalTransformer(channels, heads, blocks, 4, layers, operations=module_operations()), seed=11,
                   std=0.1)
    assert tt.proj_out.weight.abs().min() > 0
    h = torch.randn(2 * frames, channels, 3, 2, generator=_gen(12))
    with torch.no_grad():
        _close(tt(h, frames), ref_temporal_transformer(tt, h, frames, heads))


# -- pseudo-3D ResBlock and AppearNet injection ----------------------------------------------------------------

@pytest.fixture(scope="module")
def video(mc):
    """Tiny VideoUNet, every weight random (temporal convs, SPADE, projectors, AppearNet included)."""
    module_mod, video_unet = sub("module"), sub("video_unet")
    unet = tiny_unet(seed=21)
    module = module_mod.build_module(unet, module_mod.ModuleConfig(), module_operations())
    randomize(module, seed=22, std=0.1)
    return unet, module, video_unet.VideoUNet(unet, module)


def _emb(unet, timesteps):
    from comfy.ldm.modules.diffusionmodules.openaimodel import timestep_embedding

    return unet.time_embed(timestep_embedding(timesteps, unet.model_channels))


def test_pseudo3d_resblock_with_spade(mc, video):
    """spatial in_layers -> temporal conv 1 -> + time embedding -> spatial out_layers -> SPADE-modulated
    temporal conv 2 -> one outer residual (skip(x) + h)."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock

    unet, module, _ = video
    video_unet = sub("video_unet")
    frames, strength = 3, 0.7
    block = unet.input_blocks[4][0]  # 32 -> 64 channels: the skip is a real 1x1 conv
    assert isinstance(block, ResBlock) and not isinstance(block.skip_connection, torch.nn.Identity)
    temporal = module.temporal["input"]["4"].res[0]
    spade = module.inject["input"]["4"].res[0]
    g = _gen(23)
    x = torch.randn(2 * frames, 32, 4, 4, generator=g)
    timesteps = torch.rand(2 * frames, generator=g) * 999
    a = torch.randn(2 * frames, 64, 4, 4, generator=g)
    with torch.no_grad():
        emb = _emb(unet, timesteps)
        gamma, beta = spade(a)
        ours = video_unet.pseudo3d_resblock(block, temporal, x, emb, frames, (strength * gamma, strength * beta))

        p = ref_silu(ref_conv1x1(_d(a), spade.projector))
        ref_gamma, ref_beta = ref_conv1x1(p, spade.to_gamma), ref_conv1x1(p, spade.to_beta)
        _close(gamma, ref_gamma)
        _close(beta, ref_beta)
        h = block.in_layers(x)
        h = ref_temporal_conv(temporal.t1, h, frames)
        h = h + _d(block.emb_layers(emb))[:, :, None, None]
        h = _d(block.out_layers(h.float()))
        h = ref_temporal_conv(temporal.t2, h, frames, strength * ref_gamma, strength * ref_beta)
        ref = _d(block.skip_connection(x)) + h
    _close(ours, ref, tol=5e-5)


def test_attention_injection(mc, video):
    """out = Attn(x) + strength * Projector'(a') after a block's spatial transformer; the ResBlock before it
    with no temporal layers is the plain SD ResBlock."""
    unet, module, video_model = video
    frames = 2
    info = next(b for b in module.layout.input if b.index == 1)
    seq = unet.input_blocks[1]
    injection = module.inject["input"]["1"]
    g = _gen(24)
    n = 2 * frames
    h = torch.randn(n, 32, 4, 4, generator=g)
    context = torch.randn(n, 3, 64, generator=g)
    emb = _emb(unet, torch.rand(n, generator=g) * 999)
    a = torch.randn(n, 32, 4, 4, generator=g)
    strength = torch.tensor([0.0, 0.5, 1.0, 2.0]).reshape(-1, 1, 1, 1)
    with torch.no_grad():
        ours = video_model._run_block(seq, info, h, emb, context, frames, {}, None, injection, {"input.1": a},
                                      strength)
        spatial = seq[1](seq[0](h, emb), context)
        ref = _d(spatial) + _d(strength) * ref_conv1x1(_d(a), injection.attn.proj)
    _close(ours, ref)


def test_appearnet_input_is_latent_plus_zero_conv_of_hint(mc):
    """AppearNet runs the encoder + middle (here without temporal layers: a bitwise copy of the UNet's) on
    z_t + Conv3x3(keyframe latent, mask): the hint's last channel (frame offset) is read only by the text sign."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import forward_timestep_embed

    module_mod, video_unet = sub("module"), sub("video_unet")
    unet = tiny_unet(seed=25)
    cfg = module_mod.ModuleConfig(temporal_convs=False, motion_modules=False)
    module = module_mod.build_module(unet, cfg, module_operations())
    randomize(module.appearnet.hint_in, seed=26, std=0.1)
    model = video_unet.VideoUNet(unet, module)
    g = _gen(27)
    n, frames = 4, 2
    x = torch.randn(n, 4, 8, 8, generator=g)
    hint = torch.randn(n, 6, 8, 8, generator=g)
    timesteps = torch.rand(n, generator=g) * 999
    context = torch.randn(n, 3, 64, generator=g)
    with torch.no_grad():
        out = model.run_appearnet(x, timesteps, context, None, hint, frames, {})
        conv = module.appearnet.hint_in
        h = x + torch.nn.functional.conv2d(hint[:, :5], conv.weight, conv.bias, padding=1)
        emb = _emb(unet, timesteps)
        expected = {}
        for i, seq in enumerate(unet.input_blocks):
            h = forward_timestep_embed(seq, h, emb, context)
            if i in (1, 2, 4, 5):
                expected[f"input.{i}"] = h
        expected["middle"] = forward_timestep_embed(unet.middle_block, h, emb, context)
    assert set(out) == set(expected)
    for key in expected:
        _close(out[key], _d(expected[key]), tol=1e-5)


# -- appearance noise prior ------------------------------------------------------------------------------------

def _repeat_loop(keyframes, frames):
    out = torch.zeros((keyframes.shape[0] * frames,) + keyframes.shape[1:], dtype=torch.float64)
    for b in range(keyframes.shape[0]):
        for t in range(frames):
            out[b * frames + t] = _d(keyframes[b])
    return out


def test_training_noise_and_noisy_latent(mc):
    noise_prior = sub("noise_prior")
    g = _gen(30)
    videos, frames, lam = 3, 4, 0.03
    eps_n = torch.randn(videos * frames, 4, 5, 6, generator=g)
    keyframes = torch.randn(videos, 4, 5, 6, generator=g)
    eps = noise_prior.training_noise(eps_n, keyframes, lam)
    _close(eps, _d(eps_n) + lam * _repeat_loop(keyframes, frames), tol=1e-6)
    z0 = torch.randn(eps_n.shape, generator=g)
    abar = torch.rand(videos * frames, generator=g)
    zt = noise_prior.noisy_latent(z0, eps, abar)
    ref = torch.stack([math.sqrt(abar[i]) * _d(z0[i]) + math.sqrt(1 - abar[i]) * _d(eps[i])
                       for i in range(len(abar))])
    _close(zt, ref, tol=1e-6)
    with pytest.raises(ValueError):
        noise_prior.training_noise(eps_n[:-1], keyframes, lam)


def _sd15_model_sampling():
    import comfy.model_base
    import comfy.supported_models

    config = comfy.supported_models.SD15(sub("configs").reference_unet_config())
    return comfy.model_base.model_sampling(config, comfy.model_base.ModelType.EPS)


def test_sd_sigma_max_matches_comfyui(mc):
    noise_prior = sub("noise_prior")
    sampling = _sd15_model_sampling()
    ours = noise_prior.sd_sigma_max()
    theirs = float(sampling.sigma_max)
    assert abs(ours - theirs) <= 1e-4 * theirs, (ours, theirs)
    assert 14.5 < ours < 14.7
    assert noise_prior.start_scale(ours) == pytest.approx(math.sqrt(1 + theirs ** 2), rel=1e-4)


@pytest.mark.parametrize("gamma", [0.0, 0.02, 0.05])
def test_comfyui_start_equals_noise_plus_prior(mc, gamma):
    """Route (b), stock KSampler: latent_image = ksampler_prior_latent(...) and ComfyUI's EPS noise_scaling
    (full denoise) then calculate_input give the model n + gamma * z_c on its first call. Route (a), a NOISE
    holding the prior and an empty latent, gives the same input."""
    noise_prior = sub("noise_prior")
    sampling = _sd15_model_sampling()
    sigma = sampling.sigma_max
    g = _gen(31)
    videos, frames = 2, 5
    n = torch.randn(videos * frames, 4, 6, 6, generator=g)
    z = torch.randn(videos, 4, 6, 6, generator=g)
    expected = _d(n) + gamma * _repeat_loop(z, frames)

    latent = noise_prior.ksampler_prior_latent(z, frames, gamma, noise_prior.sd_sigma_max())
    x = sampling.noise_scaling(sigma, n.clone(), latent, max_denoise=True)
    _close(sampling.calculate_input(sigma, x), expected, tol=1e-5)

    noise = noise_prior.noise_with_prior(n, z, gamma)
    x = sampling.noise_scaling(sigma, noise.clone(), torch.zeros_like(noise), max_denoise=True)
    _close(sampling.calculate_input(sigma, x), expected, tol=1e-5)


def test_prior_latent_commutes_with_sd_latent_format(mc):
    """The KSampler route may be built from raw VAE latents: process_latent_in is a pure scale for SD."""
    import comfy.latent_formats

    noise_prior = sub("noise_prior")
    fmt = comfy.latent_formats.SD15()
    z_raw = torch.randn(2, 4, 3, 3, generator=_gen(32))
    a = fmt.process_in(noise_prior.ksampler_prior_latent(z_raw, 3, 0.02, 14.6))
    b = noise_prior.ksampler_prior_latent(fmt.process_in(z_raw), 3, 0.02, 14.6)
    _close(a, _d(b), tol=1e-6)


def test_keyframe_index(mc):
    noise_prior = sub("noise_prior")
    k = noise_prior.keyframe_index
    assert [k("center", t) for t in (1, 2, 5, 16)] == [0, 1, 2, 8]
    assert k("first", 16) == 0 and k("last", 16) == 15 and k("last", 1) == 0
    assert k("index", 16, 3) == 3 and k("index", 16, 0) == 0 and k("index", 16, 15) == 15
    assert k("index", 16, -1) == 15 and k("index", 16, -16) == 0
    for bad in (16, 17, -17):
        with pytest.raises(ValueError, match="outside"):
            k("index", 16, bad)
    with pytest.raises(ValueError):
        k("center", 0)
    with pytest.raises(ValueError, match="unknown keyframe position"):
        k("middle", 8)


# -- conditioning ----------------------------------------------------------------------------------------------

def test_appearance_hint(mc):
    conditioning = sub("conditioning")
    g = _gen(33)
    videos, frames, key = 2, 5, 3
    keyframes = torch.randn(videos, 4, 3, 4, generator=g)
    hint = conditioning.appearance_hint(keyframes, frames, key)
    assert hint.shape == (videos * frames, 6, 3, 4)
    for b in range(videos):
        for t in range(frames):
            row = hint[b * frames + t]
            assert torch.equal(row[:4], keyframes[b])
            assert torch.equal(row[4], torch.full((3, 4), 1.0 if t == key else 0.0))
            _close(row[5], torch.full((3, 4), (t - key) / frames), tol=1e-7)


def test_appearance_model_conds(mc):
    import comfy.conds

    conditioning = sub("conditioning")
    raw = torch.randn(2, 4, 3, 3, generator=_gen(34))
    conds = conditioning.appearance_model_conds(raw, 4, 0, 0.8)
    assert isinstance(conds["mc_num_frames"], comfy.conds.CONDConstant) and conds["mc_num_frames"].cond == 4
    assert isinstance(conds["mc_hint"], comfy.conds.CONDNoiseShape)
    hint = conds["mc_hint"].cond
    _close(hint[:4, :4], _d(raw[0]).expand(4, -1, -1, -1) * 0.18215, tol=1e-6)
    assert torch.equal(hint[:, 4, 0, 0], torch.tensor([1.0, 0, 0, 0, 1.0, 0, 0, 0]))
    _close(hint[:, 5, 0, 0], torch.tensor([0, 0.25, 0.5, 0.75] * 2), tol=1e-7)
    assert torch.equal(conds["mc_strength"].cond, torch.full((8,), 0.8))
