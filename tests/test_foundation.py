"""Foundation: the pack runs inside a real in-process ComfyUI with stock SD nodes (issue 2)."""
from __future__ import annotations

import pytest
import torch

from harness import GraphExecutionError, GraphValidationError
from harness.media import write_test_image
from harness.sd_graphs import noise_prior_video_graph

pytestmark = pytest.mark.graph

SD_SCALE = 0.18215  # SD1.x latent scale factor (latent_format.process_in)


@pytest.fixture(scope="module")
def keyframes(comfy_dirs) -> list[str]:
    return [write_test_image(comfy_dirs.input, f"keyframe_{i}.png", 32, 32, seed=i) for i in range(2)]


def test_pack_registered_by_comfyui_loader(comfy_env):
    cls = comfy_env.node_class("MicroCinemaNoisePrior")
    assert cls.RELATIVE_PYTHON_MODULE.startswith("custom_nodes.")
    info = cls.INPUT_TYPES()
    assert set(info["required"]) == {"noise_seed", "keyframe", "gamma"}


def test_video_graph_shapes_and_finite(run_graph, tiny_sd_checkpoint, keyframes):
    vg = noise_prior_video_graph(tiny_sd_checkpoint, keyframes[:1], frames=8, size=32)
    result = run_graph(vg.graph, outputs=[vg.sampler, vg.decode])
    latent = result.output(vg.sampler)["samples"]
    images = result.output(vg.decode)
    assert latent.shape == (8, 4, 4, 4)
    assert images.shape == (8, 32, 32, 3)
    assert torch.isfinite(latent).all() and torch.isfinite(images).all()
    assert images.min() >= 0 and images.max() <= 1
    assert result.events("progress"), "the sampler reports progress through ComfyUI's ProgressBar hook"


@pytest.mark.parity
def test_gamma_zero_equals_stock_random_noise(run_graph, tiny_sd_checkpoint, keyframes):
    ours = noise_prior_video_graph(tiny_sd_checkpoint, keyframes[:1], gamma=0.0, seed=7)
    stock = noise_prior_video_graph(tiny_sd_checkpoint, keyframes[:1], use_random_noise=True, seed=7)
    a = run_graph(ours.graph, outputs=[ours.sampler]).output(ours.sampler)["samples"]
    b = run_graph(stock.graph, outputs=[stock.sampler]).output(stock.sampler)["samples"]
    assert torch.equal(a, b)


@pytest.mark.parity
def test_generate_noise_is_random_noise_plus_scaled_keyframes(run_graph, tiny_sd_checkpoint, keyframes):
    # Two keyframes, 8 latent frames -> two videos of 4 frames; frames of one video are consecutive.
    vg = noise_prior_video_graph(tiny_sd_checkpoint, keyframes, frames=8, seed=123, gamma=0.02)
    stock = noise_prior_video_graph(tiny_sd_checkpoint, keyframes, frames=8, seed=123, use_random_noise=True)
    ours = run_graph(vg.graph, outputs=[vg.noise, vg.empty_latent, vg.keyframe_latent])
    random_noise = run_graph(stock.graph, outputs=[stock.noise]).output(stock.noise)
    latent = ours.output(vg.empty_latent)
    keyframe_latent = ours.output(vg.keyframe_latent)["samples"]
    assert keyframe_latent.shape == (2, 4, 4, 4)

    got = ours.output(vg.noise).generate_noise(latent)
    base = random_noise.generate_noise(latent)
    # independent of ComfyUI's helpers: its noise is torch.randn from a CPU generator seeded with the seed
    assert torch.equal(base, torch.randn(latent["samples"].shape, generator=torch.Generator().manual_seed(123)))
    expected = base + 0.02 * SD_SCALE * keyframe_latent.float().repeat_interleave(4, dim=0)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert not torch.equal(got[0], got[4]) and torch.allclose(got[0] - base[0], got[3] - base[3], atol=1e-6)


def test_out_of_range_input_is_a_validation_error(run_graph, tiny_sd_checkpoint, keyframes):
    vg = noise_prior_video_graph(tiny_sd_checkpoint, keyframes[:1], gamma=5.0)
    with pytest.raises(GraphValidationError) as err:
        run_graph(vg.graph, outputs=[vg.decode])
    assert "gamma" in err.value.input_names()
    assert vg.noise.id in err.value.node_errors


def test_node_failure_is_an_execution_error(run_graph, tiny_sd_checkpoint, comfy_dirs):
    # A 64x64 keyframe cannot prime a 32x32 video: the NOISE object raises inside the sampler node.
    big = write_test_image(comfy_dirs.input, "keyframe_64.png", 64, 64, seed=5)
    vg = noise_prior_video_graph(tiny_sd_checkpoint, [big], frames=4, size=32)
    with pytest.raises(GraphExecutionError) as err:
        run_graph(vg.graph, outputs=[vg.sampler])
    assert err.value.node_id == vg.sampler.id
    assert isinstance(err.value.__cause__, ValueError)
    assert "keyframe latent" in err.value.exception_message


def test_output_nodes_run_by_default_and_write_to_session_output(run_graph, tiny_sd_checkpoint, keyframes,
                                                                 comfy_dirs):
    vg = noise_prior_video_graph(tiny_sd_checkpoint, keyframes[:1], frames=2, save_prefix="foundation")
    result = run_graph(vg.graph)
    images = result.ui[vg.save.id]["images"]
    assert len(images) == 2
    assert all((comfy_dirs.output / im["subfolder"] / im["filename"]).is_file() for im in images)
