"""Extending a clip in one real graph: round 1 (Image To Video, keyframe first) -> Last Frame -> round 2 (keyframe
first) -> Extend Video. The joined video has T1 + T2 - 1 frames, keeps round 1's frames bitwise (its last frame at
T1 - 1), drops round 2's regenerated first frame, and each round's sampler only ever sees one clip."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from harness.extra_models import make_test_image
from harness.graph import Graph
from harness.runner import GraphExecutionError, GraphValidationError

NEW = "[new untrained module]"
SIZE = 32
T1, T2 = 4, 3


@pytest.fixture(scope="module")
def keyframe_png(comfy_dirs) -> str:
    image = (make_test_image(SIZE, SIZE, seed=4)[0].numpy() * 255).astype(np.uint8)
    Image.fromarray(image).save(comfy_dirs.input / "extend_keyframe.png")
    return "extend_keyframe.png"


def one_round(g: Graph, ckpt, mc, pos, neg, keyframe, length, seed):
    i2v = g.node("MicroCinemaImageToVideo", positive=pos, negative=neg, vae=ckpt.out(2), image=keyframe,
                 width=SIZE, height=SIZE, length=length, keyframe_position="first", keyframe_index=0,
                 appearance_strength=1.0, noise_prior_gamma=0.02, crop="center", frame_rate=8.0,
                 resize_method="bilinear")
    sampled = g.node("KSampler", model=mc, seed=seed, steps=2, cfg=4.0, sampler_name="euler", scheduler="normal",
                     positive=i2v.out(0), negative=i2v.out(1), latent_image=i2v.out(2), denoise=1.0)
    frames = g.node("VAEDecode", samples=sampled, vae=ckpt.out(2))
    return i2v, sampled, frames


@pytest.mark.graph
def test_two_rounds_join_without_a_repeated_frame(run_graph, tiny_sd_checkpoint, keyframe_png):
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    mc = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=NEW, motion_module="none")
    pos = g.node("CLIPTextEncode", text="a bright ball moving left", clip=ckpt.out(1))
    neg = g.node("CLIPTextEncode", text="", clip=ckpt.out(1))
    image = g.node("LoadImage", image=keyframe_png)
    _, sampled1, frames1 = one_round(g, ckpt, mc, pos, neg, image.out(0), T1, seed=1)
    last1 = g.node("MicroCinemaLastFrame", images=frames1, videos=1)
    i2v2, sampled2, frames2 = one_round(g, ckpt, mc, pos, neg, last1.out(0), T2, seed=2)
    joined = g.node("MicroCinemaExtendVideo", video=frames1, clip=frames2, videos=1)
    last2 = g.node("MicroCinemaLastFrame", images=joined, videos=1)
    key2 = g.node("VAEEncode", pixels=last1, vae=ckpt.out(2))
    result = run_graph(g, outputs=[joined, last2, sampled1, sampled2, i2v2, key2])

    f1, f2, video = result[frames1.id], result[frames2.id], result[joined.id]
    assert f1.shape[0] == T1 and f2.shape[0] == T2
    assert video.shape == (T1 + T2 - 1, SIZE, SIZE, 3)
    assert torch.equal(video[:T1], f1)
    assert torch.equal(video[T1 - 1], f1[-1])  # the seam is round 1's last frame, exactly
    assert torch.equal(video[T1:], f2[1:])  # round 2 without its first frame (the regenerated keyframe)
    assert all(not torch.equal(video[t], video[t + 1]) for t in range(video.shape[0] - 1))  # no repeated frame
    assert torch.equal(result[last1.id], f1[-1:])
    assert torch.equal(result[last2.id], f2[-1:])

    # Round 2's keyframe is round 1's last frame, at frame 0 of its clip.
    hint = result.output(i2v2.id, 0)[0][1]["model_conds"]["mc_hint"].cond
    assert torch.allclose(hint[0, :4], 0.18215 * result[key2.id]["samples"][0], rtol=0, atol=1e-6)
    assert hint[:, 4].flatten(1).amax(1).tolist() == [1.0] + [0.0] * (T2 - 1)
    # Memory: each sampler run holds one clip, not the video so far.
    assert result[sampled1.id]["samples"].shape[0] == T1
    assert result[sampled2.id]["samples"].shape[0] == T2


def test_join_and_last_frame_per_video(mc):
    """Several videos in one batch: each is extended by its own clip, each gives its own last frame."""
    ext = mc.extend
    video = torch.arange(2 * 3, dtype=torch.float32).reshape(6, 1, 1, 1).expand(6, 2, 2, 3)  # 2 videos x 3
    clip = 100 + torch.arange(2 * 2, dtype=torch.float32).reshape(4, 1, 1, 1).expand(4, 2, 2, 3)  # 2 videos x 2
    joined = ext.join_clips(video, clip, videos=2)
    assert joined[:, 0, 0, 0].tolist() == [0, 1, 2, 101, 3, 4, 5, 103]
    assert ext.last_frames(joined, videos=2)[:, 0, 0, 0].tolist() == [101, 103]
    assert ext.join_clips(video, clip[:2], videos=2)[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4, 5]  # 1-frame clips


@pytest.mark.graph
@pytest.mark.parametrize("case,expected", [("size", "'clip'"), ("videos", "'videos'")])
def test_mismatched_clips_are_errors_naming_the_input(run_graph, case, expected):
    g = Graph()
    video = g.node("EmptyImage", width=SIZE, height=SIZE, batch_size=4, color=0)
    clip = g.node("EmptyImage", width=SIZE if case == "videos" else 48, height=SIZE, batch_size=3, color=0xFF0000)
    joined = g.node("MicroCinemaExtendVideo", video=video, clip=clip, videos=3 if case == "videos" else 1)
    with pytest.raises(GraphExecutionError) as info:
        run_graph(g, outputs=[joined])
    message = str(info.value.exception_message)
    assert "MicroCinema Extend Video" in message and expected in message, message


@pytest.mark.graph
def test_videos_widget_is_checked_before_the_run(run_graph):
    g = Graph()
    frames = g.node("EmptyImage", width=SIZE, height=SIZE, batch_size=2, color=0)
    last = g.node("MicroCinemaLastFrame", images=frames, videos=0)
    with pytest.raises(GraphValidationError) as info:
        run_graph(g, outputs=[last])
    assert info.value.input_names() == {"videos"}
