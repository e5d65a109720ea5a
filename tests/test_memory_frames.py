"""Memory that grows linearly with the number of frames, and long inputs refused before they run out of memory.

Temporal attention over t frames used to build the whole [positions * heads, t, t] score matrix (ComfyUI's
``attention_basic`` on CPU): 4096 frames at 64x64 reached 11 GiB. Peak memory is measured in a fresh subprocess
per size from the kernel's high-water mark (VmHWM): tracemalloc does not see torch's allocations.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pack_import import module_operations, randomize, single_thread_fixture, sub

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread_fixture)

TESTS_DIR = Path(__file__).resolve().parent


def _qkv(rows: int, frames: int, channels: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(rows, frames, channels, generator=gen) for _ in range(3))


def _comfy_attention(name: str):
    import comfy.ldm.modules.attention as comfy_attention

    return getattr(comfy_attention, name)


@pytest.mark.parametrize("function", ["attention_basic", "attention_pytorch"])
@pytest.mark.parametrize("rows,frames,budget", [(6, 40, 40 * 40 * 8 * 4 * 2 * 2),  # two rows per call
                                                (3, 40, 8 * 40 * 4 * 2 * 7)])      # one row, 7 frames per call
def test_chunked_attention_equals_one_call(mc, function, rows, frames, budget):
    temporal = sub("temporal")
    attention = _comfy_attention(function)
    q, k, v = _qkv(rows, frames, 64)
    row_chunk, frame_chunk = temporal.attention_chunks(rows, frames, 8, budget)
    assert (row_chunk, frame_chunk) in ((2, frames), (1, 7))
    whole = attention(q, k, v, 8)
    chunked = temporal.chunked_attention(attention, q, k, v, 8, budget=budget)
    assert chunked.shape == whole.shape and chunked.dtype == whole.dtype
    assert torch.allclose(chunked, whole, atol=1e-5, rtol=1e-5)


def test_short_clips_make_exactly_todays_call(mc):
    """Below the budget the attention function gets the very tensors it got before: bitwise the same output."""
    temporal = sub("temporal")
    q, k, v = _qkv(12, 16, 64)
    calls = []

    def spy(*args):
        calls.append(args)
        return _comfy_attention("attention_basic")(*args)

    out = temporal.chunked_attention(spy, q, k, v, 8)
    assert len(calls) == 1 and all(a is b for a, b in zip(calls[0], (q, k, v, 8)))
    assert torch.equal(out, _comfy_attention("attention_basic")(q, k, v, 8))


def test_temporal_attention_layer_is_the_same_in_chunks(mc, monkeypatch):
    temporal = sub("temporal")
    layer = randomize(temporal.TemporalAttention(64, 8, module_operations()), seed=3, std=0.15)
    x = torch.randn(5, 48, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        whole = layer(x)
        monkeypatch.setattr(temporal, "ATTENTION_CHUNK_BYTES", 8 * 48 * 4 * 2 * 5)  # 1 position, 5 frames per call
        assert temporal.attention_chunks(5, 48, 8) == (1, 5)
        chunked = layer(x)
    assert torch.allclose(chunked, whole, atol=1e-5, rtol=1e-5)


_PEAK_SCRIPT = """
import json, sys
import torch
from pack_import import core, module_operations, sub
core()  # ComfyUI on CPU, as the harness sets it up
torch.set_num_threads(1)

def high_water_mark():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))

rows, frames = int(sys.argv[1]), int(sys.argv[2])
layer = sub("temporal").TemporalAttention(64, 8, module_operations()).eval()
x = torch.randn(rows, frames, 64)
with torch.no_grad():
    layer(torch.randn(rows, 8, 64))  # first-call allocations (thread pools, kernels) are not the clip's
    base = high_water_mark()
    layer(x)
    peak = high_water_mark()
print(json.dumps({"frames": frames, "extra": peak - base}))
"""


def _extra_memory(rows: int, frames: int) -> int:
    """Bytes a TemporalAttention forward over [rows, frames, 64] adds to the process's peak, in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(rows), str(frames)], cwd=TESTS_DIR, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["extra"]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM is read from /proc (Linux)")
def test_temporal_attention_memory_grows_linearly_with_frames():
    """8 positions x 1024 frames would need 512 MiB of scores in one call, x 2048 frames 2 GiB (measured before
    chunking: 263 MiB at 4 x 1024, 1038 MiB at 4 x 2048); now doubling the frames at most doubles the memory."""
    rows, frames = 8, 1024
    single = _extra_memory(rows, frames)
    double = _extra_memory(rows, 2 * frames)
    assert double <= 2.2 * single, f"{frames} frames: {single / 2**20:.0f} MiB, {2 * frames}: {double / 2**20:.0f} MiB"
    assert double < 2**30  # one call would hold 2 GiB of scores and softmax for 2048 frames


# -- refusing up front what cannot fit ------------------------------------------------------------------------

def _tiny_models(comfy_dirs, tiny_sd_checkpoint):
    import comfy.sd

    path = str(comfy_dirs.models["checkpoints"] / tiny_sd_checkpoint)
    model, _, vae, *_ = comfy.sd.load_checkpoint_guess_config(path, output_vae=True, output_clip=False)
    return sub("loading").microcinema_model(model, None), vae


def _free_memory(monkeypatch, free: int) -> None:
    import comfy.model_management

    monkeypatch.setattr(comfy.model_management, "get_free_memory", lambda *args, **kwargs: free)


TEXT = [[torch.zeros(1, 77, 768), {}]]


@pytest.mark.graph
def test_a_length_that_cannot_fit_is_refused_before_sampling(comfy_env, comfy_dirs, tiny_sd_checkpoint, monkeypatch):
    """The stock KSampler after Image To Video: refused in ComfyUI's prepare-sampling step, before any model call,
    naming Image To Video's 'length' and the way out; the same run with context windows goes through."""
    import comfy.model_management
    import nodes as comfy_nodes

    sampling, memory_check = sub("sampling"), sub("memory_check")
    video, vae = _tiny_models(comfy_dirs, tiny_sd_checkpoint)
    image = torch.rand(1, 64, 64, 3)
    pos, neg, latent = sampling.video_inputs(TEXT, TEXT, vae, image, width=64, height=64, length=64)
    # room for 16 frames of the tiny model's activations, not 64
    channels = video.model.model_config.unet_config["model_channels"]
    per_frame = memory_check.activation_bytes(1, 8, 8, channels, comfy.model_management.dtype_size(
        video.model.get_dtype()))
    _free_memory(monkeypatch, 16 * per_frame)
    calls = []
    monkeypatch.setattr(video.model, "apply_model", lambda *a, **k: calls.append(1))
    with pytest.raises(ValueError) as refused:
        comfy_nodes.common_ksampler(video, 1, 1, 1.0, "euler", "normal", pos, neg, latent)
    message = str(refused.value)
    assert message.startswith("MicroCinema Image To Video, input 'length'") and " free; " in message
    assert "MicroCinema Context Windows" in message and not calls

    windowed = video.clone()
    windowed.model_options.setdefault("transformer_options", {})[sub("video_unet").CONTEXT_OPTION] = \
        sub("context_windows").ContextSettings(length=8, overlap=2)
    memory_check.check_sampling("x", windowed, length=64, latent_height=8, latent_width=8)  # 9 frames held: fits


@pytest.mark.graph
def test_the_sampler_node_names_itself(comfy_env, comfy_dirs, tiny_sd_checkpoint, monkeypatch):
    sampling = sub("sampling")
    video, vae = _tiny_models(comfy_dirs, tiny_sd_checkpoint)
    encodes = []
    monkeypatch.setattr(vae, "encode", lambda *a: encodes.append(1))
    _free_memory(monkeypatch, 64 * 2**20)
    with pytest.raises(ValueError, match=r"^MicroCinema Sampler, input 'length': sampling 4096 frames at 64x64"):
        sampling.animate(video, TEXT, TEXT, vae, torch.rand(1, 64, 64, 3), width=64, height=64, length=4096, seed=1,
                         steps=1, cfg=1.0, node="MicroCinema Sampler")
    assert not encodes  # refused before the keyframe encode


@pytest.mark.graph
def test_a_frame_size_that_cannot_fit_is_refused_before_the_encode(comfy_env, comfy_dirs, tiny_sd_checkpoint,
                                                                   monkeypatch):
    sampling = sub("sampling")
    _, vae = _tiny_models(comfy_dirs, tiny_sd_checkpoint)
    _free_memory(monkeypatch, 4 * 2**30)  # an 8192x8192 SD video needs ~21 GiB (fp32) for 2 frames alone
    with pytest.raises(ValueError, match=r"^MicroCinema Image To Video, input 'width'/'height': a 8192x8192 video"):
        sampling.video_inputs(TEXT, TEXT, vae, torch.rand(1, 8, 8, 3), width=8192, height=8192, length=16)


@pytest.mark.graph
def test_small_videos_are_not_refused_with_little_free_memory(comfy_env, comfy_dirs, tiny_sd_checkpoint, monkeypatch):
    """What the tests and small GPUs run today: 16 frames at 64x64 fit in 64 MiB of activations."""
    sampling = sub("sampling")
    video, vae = _tiny_models(comfy_dirs, tiny_sd_checkpoint)
    _free_memory(monkeypatch, 64 * 2**20)
    sampling.video_inputs(TEXT, TEXT, vae, torch.rand(1, 64, 64, 3), width=64, height=64, length=16)
    sub("memory_check").check_sampling("x", video, length=16, latent_height=8, latent_width=8)


@pytest.mark.graph
def test_a_keyframe_too_big_for_a_whole_encode_is_encoded_in_tiles(comfy_env, comfy_dirs, tiny_sd_checkpoint,
                                                                   monkeypatch):
    """ComfyUI's estimate of a whole encode above the free memory: its tiled encode runs instead (on CPU nothing
    else would stop a whole encode from taking all RAM); at ordinary sizes the plain encode is kept."""
    memory_check = sub("memory_check")
    _, vae = _tiny_models(comfy_dirs, tiny_sd_checkpoint)
    pixels = torch.rand(1, 64, 64, 3)
    tiled = []
    real_tiled = vae.encode_tiled
    monkeypatch.setattr(vae, "encode_tiled", lambda p, *a, **k: tiled.append(p.shape) or real_tiled(p, *a, **k))
    plain = memory_check.encode_keyframes(vae, pixels)
    assert not tiled
    _free_memory(monkeypatch, vae.memory_used_encode(pixels.movedim(-1, 1).shape, vae.vae_dtype) - 1)
    latent = memory_check.encode_keyframes(vae, pixels)
    assert tiled == [pixels.shape] and latent.shape == plain.shape == (1, 4, 8, 8)
