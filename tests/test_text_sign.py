"""The text sign (ModuleConfig.motion_text_sign, our addition; module.AppearNet says why).

- hint_in's inputs are [keyframe, mask, offset x keyframe x sign_1..k] with sign = W mean_tokens(context) + b,
  checked against a computation written out here;
- does nothing at zero: a module with k signs whose new hint_in weights are zero computes exactly what the same
  module without them computes, trained (random) weights everywhere else;
- saved modules come back with the same k; the trainers give the projection its own learning rate.
"""
from __future__ import annotations

import pytest
import torch

from pack_import import randomize, single_thread_fixture, sub, tiny_unet

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread_fixture)

VIDEOS, FRAMES, SIZE, KEY, K = 2, 4, 8, 1, 2


def _module(unet, k: int, seed: int = 7):
    import comfy.ops

    module_mod = sub("module")
    module = module_mod.build_module(unet, module_mod.ModuleConfig(motion_text_sign=k), comfy.ops.manual_cast)
    return randomize(module, seed=seed, std=0.05)


def _inputs(context_dim: int, seed: int = 2):
    conditioning = sub("conditioning")
    g = torch.Generator().manual_seed(seed)
    n = VIDEOS * FRAMES
    x = torch.randn(n, 4, SIZE, SIZE, generator=g)
    timesteps = torch.rand(n, generator=g) * 999
    context = torch.randn(n, 5, context_dim, generator=g)
    hint = conditioning.appearance_hint(torch.randn(VIDEOS, 4, SIZE, SIZE, generator=g), FRAMES, KEY)
    return x, timesteps, context, hint


def test_hint_inputs_formula(mc):
    video_unet = sub("video_unet")
    unet = tiny_unet(seed=3)
    module = _module(unet, K)
    video = video_unet.VideoUNet(unet, module)
    x, timesteps, context, hint = _inputs(module.layout.context_dim)
    with torch.no_grad():
        ours = video._hint_inputs(hint, context).double()
    w = module.appearnet.text_sign.weight.detach().double()
    b = module.appearnet.text_sign.bias.detach().double()
    expected = []
    for i in range(VIDEOS * FRAMES):
        keyframe = hint[i, :4].double()
        frame = i % FRAMES
        prompt_mean = context[i].double().sum(dim=0) / context.shape[1]
        signs = [float(w[j] @ prompt_mean + b[j]) for j in range(K)]
        offset = (frame - KEY) / FRAMES
        parts = [keyframe, torch.full((1, SIZE, SIZE), 1.0 if frame == KEY else 0.0, dtype=torch.float64)]
        parts += [keyframe * offset * s for s in signs]
        expected.append(torch.cat(parts))
    expected = torch.stack(expected)
    assert ours.shape == (VIDEOS * FRAMES, 4 + 1 + 4 * K, SIZE, SIZE)
    assert (ours - expected).abs().max().item() < 1e-5


def test_text_sign_does_nothing_at_zero(mc):
    """Trained weights everywhere (random), the text sign's hint_in weights zero: output bitwise equal to the
    same module without the text sign (the zero weights multiply finite inputs)."""
    video_unet = sub("video_unet")
    unet = tiny_unet(seed=3)
    plain = _module(unet, 0)
    signed = _module(unet, K, seed=99)
    sd = plain.state_dict()
    hint_in = sd["appearnet.hint_in.weight"]
    widened = torch.zeros(hint_in.shape[0], hint_in.shape[1] + 4 * K, *hint_in.shape[2:])
    widened[:, :hint_in.shape[1]] = hint_in
    sd["appearnet.hint_in.weight"] = widened
    sd["appearnet.text_sign.weight"] = signed.appearnet.text_sign.weight.detach().clone()
    sd["appearnet.text_sign.bias"] = signed.appearnet.text_sign.bias.detach().clone() + 0.5
    signed.load_state_dict(sd)
    x, timesteps, context, hint = _inputs(plain.layout.context_dim)
    kwargs = dict(mc_num_frames=FRAMES, mc_hint=hint, mc_strength=torch.ones(x.shape[0]))
    with torch.no_grad():
        a = video_unet.VideoUNet(unet, plain)(x, timesteps, context, **kwargs)
        b = video_unet.VideoUNet(unet, signed)(x, timesteps, context, **kwargs)
        assert torch.equal(a, b), (a - b).abs().max().item()
        # and the sign does reach the output once its hint_in weights are not zero
        signed.appearnet.hint_in.weight[:, 5:] = 0.1
        c = video_unet.VideoUNet(unet, signed)(x, timesteps, context, **kwargs)
    assert (a - c).abs().max().item() > 1e-4


def test_saved_module_keeps_text_sign(mc, tmp_path):
    checkpoint = sub("checkpoint")
    unet = tiny_unet(seed=3)
    module = _module(unet, 3)
    path = tmp_path / "signed.safetensors"
    checkpoint.save_module(module, str(path))
    sd, meta = checkpoint.read_safetensors(str(path))
    cfg = checkpoint.detect_config(sd, meta)
    assert cfg.motion_text_sign == 3 and cfg.appearnet
    assert checkpoint.detect_config({k: v for k, v in sd.items() if ".text_sign." not in k}, meta).motion_text_sign == 0


def test_optimizer_gives_text_sign_its_own_rate(mc):
    optim, module_mod = sub("training.optim"), sub("module")
    unet = tiny_unet(seed=3)
    module = _module(unet, K)
    opt = optim.adamw(module, 1e-4, 0.01)
    assert len(opt.param_groups) == 2
    rest, sign = opt.param_groups
    assert {id(p) for p in sign["params"]} == {id(p) for p in module.appearnet.text_sign.parameters()}
    assert sign["lr"] == pytest.approx(1e-4 * module_mod.TEXT_SIGN_LR_SCALE) and rest["lr"] == 1e-4
    assert len(optim.adamw(_module(unet, 0), 1e-4, 0.01).param_groups) == 1


def test_context_windows_see_each_frame_true_offset(mc):
    """Windows hand the model non-contiguous frames (a window + the keyframe): the offsets the text sign reads
    are still each frame's place in the whole video, (t - key) / T."""
    context_windows, video_unet, conditioning = sub("context_windows"), sub("video_unet"), sub("conditioning")
    unet = tiny_unet(seed=3)
    video = video_unet.VideoUNet(unet, _module(unet, K))
    frames, key = 10, 7
    seen = []
    original = video._hint_inputs

    def spy(hint, context):
        seen.append(conditioning.hint_offset(hint)[:, 0, 0, 0].clone())
        return original(hint, context)

    video._hint_inputs = spy
    hint = conditioning.appearance_hint(torch.randn(1, 4, SIZE, SIZE), frames, key)
    options = {video_unet.CONTEXT_OPTION: context_windows.ContextSettings(length=4, overlap=1, keep_keyframe=True)}
    with torch.no_grad():
        video(torch.randn(frames, 4, SIZE, SIZE), torch.full((frames,), 300.0),
              torch.randn(frames, 5, video.layout.context_dim), transformer_options=options,
              mc_num_frames=frames, mc_hint=hint, mc_strength=torch.ones(frames))
    assert len(seen) >= 3
    true = {round((t - key) / frames, 6) for t in range(frames)}
    for offsets in seen:
        values = {round(v, 6) for v in offsets.tolist()}
        assert values <= true and round(0.0, 6) in values  # the keyframe rides along in every window
    assert set().union(*({round(v, 6) for v in o.tolist()} for o in seen)) == true


def test_no_text_sign_without_appearnet(mc):
    """The text sign is an AppearNet input: a configuration without AppearNet carries k = 0, whatever was asked,
    so its saved metadata agrees with what detect_config reads from the weights."""
    module_mod = sub("module")
    assert module_mod.ModuleConfig(appearnet=False, motion_text_sign=2).motion_text_sign == 0
    assert module_mod.ModuleConfig(motion_text_sign=2).motion_text_sign == 2
