"""The bad inputs and broken files of test_reliability_inputs.py / test_reliability_files.py over HTTP, against a
real ComfyUI server (main.py on 127.0.0.1): values refused at POST /prompt are HTTP 400 whose node_errors name the
node and the input (nothing is queued); faults found while running are an execution_error naming the node and the
input; and the server serves the next prompt normally after each."""
from __future__ import annotations

import json
import struct

import pytest

from harness import PromptRejected
from harness.graph import Graph
from harness.reliability import NEW_MODULE, video_graph, write_malicious_pickle
from harness.reliability_fixtures import *  # noqa: F401,F403  (fixtures)

pytestmark = [pytest.mark.reliability, pytest.mark.server]

NAN, INF = float("nan"), float("inf")
I2V_BAD = [("height", 8), ("length", 0), ("length", 4097), ("noise_prior_gamma", 1.5),
           ("noise_prior_gamma", NAN), ("appearance_strength", -1.0), ("appearance_strength", INF),
           ("frame_rate", NAN), ("keyframe_index", 4097), ("keyframe_position", "middle"), ("crop", "top"),
           ("resize_method", "magic"), ("width", "wide")]
MODEL_NAME_BAD = [("module_name", "../checkpoints/{ckpt}"), ("module_name", "/etc/passwd"),
                  ("motion_module", "../../outside.ckpt"), ("module_name", "missing.safetensors")]


def good_prompt(ckpt: str, seed: int) -> dict:
    g, _ = video_graph(ckpt, seed=seed, length=1, width=16, height=16, output="preview")
    return g.to_api()


def assert_serves_next_prompt(server, ckpt: str, seed: int, tally) -> None:
    run = server.run(good_prompt(ckpt, seed))
    tally.add("prompts")
    assert run.succeeded, f"the next prompt failed: {run.events('execution_error')}\n{server.log_tail(3000)}"


def assert_queue_empty(server) -> None:
    status, body = server.request("GET", "/queue")
    assert status == 200 and body["queue_running"] == [] and body["queue_pending"] == [], body


def test_bad_values_are_400_naming_node_and_input(comfy_server, tiny_sd_checkpoint, tally):
    for field, value in I2V_BAD + MODEL_NAME_BAD:
        value = value.format(ckpt=tiny_sd_checkpoint) if isinstance(value, str) else value
        g, refs = video_graph(tiny_sd_checkpoint, output="preview", keyframe_position="index", keyframe_index=1)
        node = refs["model"] if field in ("module_name", "motion_module") else refs["i2v"]
        node.set(**{field: value})
        tally.add("inputs")
        with pytest.raises(PromptRejected) as err:
            comfy_server.queue_prompt(g.to_api())
        assert err.value.status == 400, err.value
        errors = err.value.node_errors.get(node.id)
        assert errors is not None, f"node {node.id} not named: {err.value.body}"
        assert errors["class_type"] == node.class_type
        assert any(e.get("extra_info", {}).get("input_name") == field for e in errors["errors"]), errors
        assert field in json.dumps(errors)
        assert_queue_empty(comfy_server)
    assert_serves_next_prompt(comfy_server, tiny_sd_checkpoint, seed=5001, tally=tally)


@pytest.fixture
def broken_files(comfy_dirs, tmp_path):
    """A truncated module file and a malicious pickle in models/microcinema (marker: must never be written)."""
    folder = comfy_dirs.models["microcinema"]
    header = json.dumps({"temporal.input.1.res.0.t1.conv.weight": {"dtype": "F32", "shape": [64, 64, 3, 1],
                                                                   "data_offsets": [0, 49152]}}).encode()
    (folder / "rel_srv_truncated.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 100)
    marker = tmp_path / "server_unpickled_marker.txt"
    write_malicious_pickle(folder / "rel_srv_evil.ckpt", marker)
    return {"truncated": "rel_srv_truncated.safetensors", "evil": "rel_srv_evil.ckpt", "marker": marker}


def _execution_cases(ckpt, koala, taesd16, files):
    cases = []

    def case(name, node_key, node_type, words, **changes):
        g, refs = video_graph(ckpt, output="preview", seed=6000 + len(cases))
        for key, mutate in changes.items():
            mutate(g, refs)
        cases.append((name, g, refs[node_key], node_type, words))

    case("pixel_space_vae", "i2v", "MicroCinemaImageToVideo", ("MicroCinema Image To Video", "'vae'"),
         vae=lambda g, r: r["i2v"].set(vae=g.node("VAELoader", vae_name="pixel_space").out(0)))
    case("taesd16_vae", "i2v", "MicroCinemaImageToVideo", ("'vae'", "16"),
         vae=lambda g, r: r["i2v"].set(vae=g.node("VAELoader", vae_name=taesd16).out(0)))
    case("bare_negative", "ksampler", "KSampler", ("negative", "MicroCinema Image To Video"),
         neg=lambda g, r: r["ksampler"].set(negative=r["neg"].out(0)))
    case("sdxl_base", "model", "MicroCinemaApplyModule", ("MicroCinema Apply Module", "'model'", "SDXL"),
         base=lambda g, r: r["model"].set(model=g.node("CheckpointLoaderSimple", ckpt_name=koala).out(0)))
    case("truncated_module", "model", "MicroCinemaApplyModule", ("'module_name'", files["truncated"]),
         module=lambda g, r: r["model"].set(module_name=files["truncated"]))
    case("malicious_pickle", "model", "MicroCinemaApplyModule", ("'module_name'", "weights_only"),
         module=lambda g, r: r["model"].set(module_name=files["evil"]))
    case("linked_width_36", "i2v", "MicroCinemaImageToVideo", ("MicroCinema Image To Video", "'width'"),
         width=lambda g, r: r["i2v"].set(width=g.node("PrimitiveInt", value=36).out(0)))
    case("width_36", "i2v", "MicroCinemaImageToVideo", ("MicroCinema Image To Video", "'width'", "multiple of 8"),
         width=lambda g, r: r["i2v"].set(width=36))
    case("wrong_latent_length", "ksampler", "KSampler", ("latent_image",),
         latent=lambda g, r: r["ksampler"].set(
             latent_image=g.node("EmptyLatentImage", width=32, height=32, batch_size=3).out(0)))
    return cases


def test_execution_errors_name_node_and_input_then_next_prompt_runs(comfy_server, tiny_sd_checkpoint,
                                                                     koala_checkpoint, taesd16_vae, broken_files,
                                                                     tally):
    for i, (name, g, node, node_type, words) in enumerate(
            _execution_cases(tiny_sd_checkpoint, koala_checkpoint, taesd16_vae, broken_files)):
        tally.add("faults")
        run = comfy_server.run(g.to_api())
        errors = run.events("execution_error")
        if run.succeeded or not errors:
            tally.add("failures")
            pytest.fail(f"{name}: no execution error ({[m.get('type') for m in run.messages]})")
        error = errors[0]
        assert error["node_id"] == node.id and error["node_type"] == node_type, (name, error)
        missing = [w for w in words if w not in error["exception_message"]]
        assert not missing, f"{name}: {missing} not in {error['exception_message']}"
        assert run.history.get("status", {}).get("status_str") == "error"
        assert not broken_files["marker"].exists(), "the server unpickled the malicious file"
        assert_serves_next_prompt(comfy_server, tiny_sd_checkpoint, seed=7000 + i, tally=tally)


def test_model_name_outside_folders_never_reaches_a_loader(comfy_server, tiny_sd_checkpoint, tally):
    """'../' names for every MicroCinema file input are refused at POST /prompt (HTTP 400), also for the full
    checkpoint loader; nothing is queued."""
    for node_type, field in (("MicroCinemaCheckpointLoader", "ckpt_name"), ("MicroCinemaApplyModule", "module_name"),
                             ("MicroCinemaApplyModule", "motion_module")):
        g = Graph()
        ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
        if node_type == "MicroCinemaCheckpointLoader":
            node = g.node(node_type, ckpt_name="x")
            model = node.out(0)
        else:
            node = g.node(node_type, model=ckpt.out(0), module_name=NEW_MODULE, motion_module="none")
            model = node.out(0)
        node.set(**{field: f"../checkpoints/{tiny_sd_checkpoint}"})
        empty = g.node("EmptyLatentImage", width=16, height=16, batch_size=1)
        pos = g.node("CLIPTextEncode", text="x", clip=ckpt.out(1))
        ks = g.node("KSampler", model=model, seed=1, steps=1, cfg=1.0, sampler_name="euler", scheduler="normal",
                    positive=pos, negative=pos, latent_image=empty, denoise=1.0)
        g.node("PreviewImage", images=g.node("VAEDecode", samples=ks, vae=ckpt.out(2)))
        tally.add("inputs")
        with pytest.raises(PromptRejected) as err:
            comfy_server.queue_prompt(g.to_api())
        assert err.value.status == 400 and node.id in err.value.node_errors, err.value
        assert field in json.dumps(err.value.node_errors[node.id])
    assert_queue_empty(comfy_server)


def test_each_bad_value_is_reported_once_on_its_input(comfy_server, tiny_sd_checkpoint, tally):
    """One bad value, one error, on the input it concerns (ComfyUI reports a validate_inputs message on every input
    that function names: length 0 used to come back ten times, tagged with ten inputs). A widget value: HTTP 400
    with exactly one error in the node's node_errors; a value fed by a link: one execution error whose message
    names the node and that input only."""
    for field, value in (("length", 0), ("noise_prior_gamma", NAN), ("frame_rate", -INF)):
        g, refs = video_graph(tiny_sd_checkpoint, output="preview")
        refs["i2v"].set(**{field: value})
        tally.add("inputs")
        with pytest.raises(PromptRejected) as err:
            comfy_server.queue_prompt(g.to_api())
        assert err.value.status == 400, err.value
        assert list(err.value.node_errors) == [refs["i2v"].id], err.value.body  # only that node
        node = err.value.node_errors[refs["i2v"].id]
        assert node["class_type"] == "MicroCinemaImageToVideo"
        assert len(node["errors"]) == 1, f"{field}={value}: {node['errors']}"
        assert node["errors"][0]["extra_info"]["input_name"] == field and field in node["errors"][0]["details"]
    assert_queue_empty(comfy_server)

    g, refs = video_graph(tiny_sd_checkpoint, output="preview", length=2, seed=7100)
    refs["i2v"].set(length=g.node("PrimitiveInt", value=0).out(0))
    tally.add("faults")
    run = comfy_server.run(g.to_api())
    errors = run.events("execution_error")
    assert not run.succeeded and len(errors) == 1, run.messages
    assert errors[0]["node_id"] == refs["i2v"].id and errors[0]["node_type"] == "MicroCinemaImageToVideo"
    message = errors[0]["exception_message"]
    assert "MicroCinema Image To Video: input 'length'" in message and message.count("input '") == 1, message
    assert_serves_next_prompt(comfy_server, tiny_sd_checkpoint, seed=7101, tally=tally)
