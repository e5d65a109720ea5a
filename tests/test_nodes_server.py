"""MicroCinema over HTTP: progress per step, latent previews of video batches, interruption between steps,
and node errors (400) that name the input."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from harness import PromptRejected
from harness.graph import Graph
from harness.server import ComfyServer

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def preview_server(comfy_dirs):
    server = ComfyServer.start(comfy_dirs, extra=["--preview-method", "latent2rgb"])
    yield server
    server.stop()


def video_graph(ckpt_name: str, steps: int, length: int = 4, **i2v_overrides):
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=ckpt_name)
    mc = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name="[new untrained module]",
                motion_module="none")
    pos = g.node("CLIPTextEncode", text="a ball moving left", clip=ckpt.out(1))
    image = g.node("EmptyImage", width=32, height=32, batch_size=1, color=0xC03020)
    inputs = dict(positive=pos, negative=pos, vae=ckpt.out(2), image=image, width=32, height=32, length=length,
                  keyframe_position="center", keyframe_index=0, appearance_strength=1.0, noise_prior_gamma=0.02,
                  crop="center", frame_rate=8.0, resize_method="bilinear")
    inputs.update(i2v_overrides)
    i2v = g.node("MicroCinemaImageToVideo", **inputs)
    ks = g.node("KSampler", model=mc, seed=1, steps=steps, cfg=1.0, sampler_name="euler", scheduler="normal",
                positive=i2v.out(0), negative=i2v.out(1), latent_image=i2v.out(2), denoise=1.0)
    dec = g.node("VAEDecode", samples=ks, vae=ckpt.out(2))
    save = g.node("SaveAnimatedWEBP", images=dec, filename_prefix="server_mc", fps=i2v.out(3), lossless=False,
                  quality=50, method="fastest")
    return g, ks, save, i2v


def follow(server: ComfyServer, prompt: dict, interrupt_after_progress: int | None = None, timeout: float = 300):
    """Queue and follow one prompt; returns (json messages, number of binary preview frames)."""
    import websocket

    client_id = uuid.uuid4().hex
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws?clientId={client_id}", timeout=timeout)
    messages, previews = [], 0
    try:
        prompt_id = server.queue_prompt(prompt, client_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = ws.recv()
            if not isinstance(raw, str):
                previews += 1
                continue
            message = json.loads(raw)
            data = message.get("data") or {}
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            messages.append(message)
            kind = message["type"]
            if kind == "progress" and interrupt_after_progress is not None and \
                    data.get("value") == interrupt_after_progress:
                server.request("POST", "/interrupt", {})
                interrupt_after_progress = None
            if kind in ("execution_error", "execution_interrupted"):
                break
            if kind == "executing" and data.get("node") is None:
                break
    finally:
        ws.close()
    return messages, previews


def test_progress_and_previews_for_a_video_batch(preview_server, tiny_sd_checkpoint):
    g, ks, save, _ = video_graph(tiny_sd_checkpoint, steps=3)
    messages, previews = follow(preview_server, g.to_api())
    progress = [m["data"] for m in messages if m["type"] == "progress" and m["data"]["node"] == ks.id]
    assert [p["value"] for p in progress] == [1, 2, 3] and progress[-1]["max"] == 3
    assert previews >= 1, "latent previews must be sent while a video batch samples"
    assert any(m["type"] == "executed" and m["data"]["node"] == save.id for m in messages)


def test_interruption_between_steps_then_next_prompt_runs(preview_server, tiny_sd_checkpoint):
    g, ks, _, _ = video_graph(tiny_sd_checkpoint, steps=12)
    messages, _ = follow(preview_server, g.to_api(), interrupt_after_progress=1)
    kinds = [m["type"] for m in messages]
    assert "execution_interrupted" in kinds, kinds
    steps_done = max(m["data"]["value"] for m in messages if m["type"] == "progress" and m["data"]["node"] == ks.id)
    assert steps_done < 12
    g2, _, save2, _ = video_graph(tiny_sd_checkpoint, steps=2, length=2)
    messages, _ = follow(preview_server, g2.to_api())
    assert any(m["type"] == "execution_success" for m in messages)


# (a width that is not a multiple of 8 is refused when the node runs: test_reliability_server.py)
@pytest.mark.parametrize("field,value", [("length", 0), ("width", 8), ("noise_prior_gamma", 3.0),
                                         ("keyframe_position", "middle")])
def test_bad_input_is_a_400_naming_the_input(preview_server, tiny_sd_checkpoint, field, value):
    g, _, _, i2v = video_graph(tiny_sd_checkpoint, steps=1, keyframe_position="index", keyframe_index=1)
    i2v.set(**{field: value})
    with pytest.raises(PromptRejected) as err:
        preview_server.queue_prompt(g.to_api())
    assert err.value.status == 400
    assert field in json.dumps(err.value.node_errors[i2v.id])
