"""The shipped example workflows, run as shipped in a real ComfyUI.

Both forms of every workflow (UI: example_workflows/<name>.json, API: workflows/api/<name>.api.json) come from
workflows/build_workflows.py. Here: the committed files are what the builder makes; the UI form, converted to
the API form with the live /object_info by an independent converter (harness.ui_workflow), is exactly the API
form; the API form validates and executes in-process with the demo model names mapped to tiny generated models
(harness.demo_models: links in the session's model folders, never an edit of the JSON), and its files are
checked (mp4 and animated WebP frame counts, sizes, frame rate, embedded workflow); and the template listing of
a real server shows exactly these workflows with their thumbnails. (Running them over HTTP from the real front
end: tests/test_browser.py.)

MICROCINEMA_WRITE_THUMBNAILS=1 rewrites example_workflows/<name>.jpg from the frames of these runs.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.demo_models import place_demo_models
from harness.locations import PACK_NAME, REPO_ROOT, comfyui_path
from harness.ui_workflow import load_workflow_builder, object_info_in_process, ui_to_api

pytestmark = pytest.mark.workflows

builder = load_workflow_builder()
NAMES = [make().name for make in builder.WORKFLOWS]
LENGTH = builder.LENGTH
WRITE_THUMBNAILS = os.environ.get("MICROCINEMA_WRITE_THUMBNAILS") == "1"


def ui_form(name: str) -> dict:
    return json.loads((REPO_ROOT / "example_workflows" / f"{name}.json").read_text())


def api_form(name: str) -> dict:
    return json.loads((REPO_ROOT / "workflows" / "api" / f"{name}.api.json").read_text())


@pytest.fixture(scope="module")
def demo_models(comfy_dirs) -> dict[str, str]:
    return place_demo_models(comfy_dirs)


@pytest.fixture(scope="module")
def example_input(comfy_dirs) -> str:
    """The example keyframe the image workflow loads, copied into ComfyUI's input folder (as users do)."""
    name = builder.EXAMPLE_KEYFRAME
    shutil.copyfile(REPO_ROOT / "example_workflows" / name, comfy_dirs.input / name)
    return name


@pytest.fixture(scope="module")
def live_object_info(comfy_env) -> dict:
    return object_info_in_process(comfy_env)


# -- the files ------------------------------------------------------------------------------------------------
def test_committed_files_are_what_the_builder_makes():
    stale = builder.stale_files(builder.build_all())
    assert not stale, f"run `python workflows/build_workflows.py`; out of date: {[str(p) for p in stale]}"


def test_no_api_form_or_copy_is_listed_as_a_template():
    """ComfyUI lists every *.json in a pack's example_workflows/, example/, examples/, workflow/ and workflows/
    folders as templates: only the UI forms may be there."""
    listed = sorted(p.name for folder in ("example_workflows", "example", "examples", "workflow", "workflows")
                    for p in (REPO_ROOT / folder).glob("*.json"))
    assert listed == sorted(f"{n}.json" for n in NAMES)
    for name in NAMES:
        ui = ui_form(name)
        assert ui["version"] == 0.4 and "ds" in ui["extra"] and ui["links"] and ui["groups"]
        assert all({"id", "type", "pos", "size", "inputs", "outputs", "widgets_values", "mode", "order"} <= set(n)
                   for n in ui["nodes"])


# A newer ComfyUI may turn a combo into a dynamic combo (same values, sub-inputs per option): same widget.
COMPATIBLE_TYPES = {("COMBO", "COMFY_DYNAMICCOMBO_V3")}


def spec_differences(ours: dict, live: dict) -> list[str]:
    """How the running ComfyUI's node differs from the one the workflows were built against, in ways that
    would break the shipped files. Allowed: new inputs after ours (the front end and the executor fill in
    their defaults), a required input becoming optional, new outputs after ours, a combo becoming a dynamic
    combo, a new display name."""
    problems = []
    live_inputs = {i["name"]: (n, i) for n, i in enumerate(live["inputs"])}
    last = -1
    for inp in ours["inputs"]:
        if inp["name"] not in live_inputs:
            problems.append(f"input {inp['name']} is gone")
            continue
        position, now = live_inputs[inp["name"]]
        if position < last:
            problems.append(f"input {inp['name']} moved")
        last = position
        if now["type"] != inp["type"] and (inp["type"], now["type"]) not in COMPATIBLE_TYPES:
            problems.append(f"input {inp['name']}: {inp['type']} became {now['type']}")
        if inp["section"] == "optional" and now["section"] == "required":
            problems.append(f"input {inp['name']} became required")
    for inp in live["inputs"]:
        if inp["name"] not in {i["name"] for i in ours["inputs"]} and inp["section"] == "required" \
                and "default" not in inp and inp["type"] in builder.WIDGET_TYPES:
            problems.append(f"new required input {inp['name']} without a default")
    if live["outputs"][:len(ours["outputs"])] != ours["outputs"]:
        problems.append(f"outputs {ours['outputs']} became {live['outputs']}")
    if live["output_node"] != ours["output_node"]:
        problems.append("output_node changed")
    return problems


@pytest.mark.graph
def test_node_specs_match_the_running_comfyui(live_object_info):
    """The node specs the workflows were built from (workflows/spec/node_specs.json, from ComfyUI 0.3.75) still
    describe this ComfyUI's nodes closely enough for the shipped files to load and run unchanged."""
    specs = builder.load_specs()
    problems = {}
    for node_type, spec in specs.items():
        assert node_type in live_object_info, f"{node_type} is not a node of this ComfyUI"
        found = spec_differences(spec, builder.trim_object_info(live_object_info[node_type]))
        if found:
            problems[node_type] = found
    assert not problems, (f"nodes changed incompatibly in this ComfyUI: {problems}; refresh with "
                          "`python workflows/build_workflows.py --refresh-specs OBJECT_INFO.json` and rebuild")


def test_spec_comparison_flags_breaking_changes():
    base = {"inputs": [{"name": "a", "section": "required", "type": "INT"},
                       {"name": "b", "section": "optional", "type": "COMBO"}],
            "outputs": [{"name": "X", "type": "IMAGE"}], "output_node": False}
    evolved = {**base, "inputs": base["inputs"] + [{"name": "c", "section": "optional", "type": "INT"}],
               "outputs": base["outputs"] + [{"name": "Y", "type": "MASK"}]}
    assert spec_differences(base, evolved) == []
    assert spec_differences(base, {**base, "inputs": base["inputs"][::-1]}) == ["input b moved"]
    assert spec_differences(base, {**base, "inputs": base["inputs"][:1]}) == ["input b is gone"]
    retyped = [base["inputs"][0], {**base["inputs"][1], "type": "COMFY_DYNAMICCOMBO_V3"}]
    assert spec_differences(base, {**base, "inputs": retyped}) == []
    retyped = [{**base["inputs"][0], "type": "FLOAT"}, base["inputs"][1]]
    assert spec_differences(base, {**base, "inputs": retyped}) == ["input a: INT became FLOAT"]


@pytest.mark.graph
@pytest.mark.parametrize("name", NAMES)
def test_ui_form_describes_the_same_graph_as_the_api_form(name, live_object_info):
    converted = ui_to_api(ui_form(name), live_object_info, with_meta=False)
    expected = api_form(name)
    assert converted == {i: {k: v for k, v in n.items() if k != "_meta"} for i, n in expected.items()}
    # titles: the ones set in the UI form; other nodes show the display name, which ComfyUI versions rename
    for node in ui_form(name)["nodes"]:
        if node.get("title") and str(node["id"]) in expected:
            assert expected[str(node["id"])]["_meta"]["title"] == node["title"]
    # and every widget value is one the node accepts (combos) as ComfyUI lists them
    for node_id, node in api_form(name).items():
        info = live_object_info[node["class_type"]]
        for input_name, value in node["inputs"].items():
            spec = info["input"].get("required", {}).get(input_name) or info["input"].get("optional", {})[input_name]
            options = spec[0] if isinstance(spec[0], list) else (spec[1].get("options") if len(spec) > 1 else None)
            if options and isinstance(options[0], dict):  # a dynamic combo: options are {"key": ..., "inputs": ...}
                options = [o["key"] for o in options]
            if options and not isinstance(value, list) and input_name not in ("ckpt_name", "module_name", "image",
                                                                               "control_net_name", "model_name"):
                assert value in options, (name, node_id, input_name, value)


# -- running them ---------------------------------------------------------------------------------------------
def _source(prompt: dict, node_id: str, input_name: str) -> str:
    return prompt[node_id]["inputs"][input_name][0]


def _upstream(prompt: dict, node_id: str, class_type: str) -> str | None:
    """Nearest node of class_type feeding node_id (breadth first)."""
    seen, queue = set(), [node_id]
    while queue:
        current = queue.pop(0)
        for value in prompt[current]["inputs"].values():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and value[0] not in seen:
                seen.add(value[0])
                if prompt[value[0]]["class_type"] == class_type:
                    return value[0]
                queue.append(value[0])
    return None


def _files(result, comfy_dirs, node_id: str) -> list[Path]:
    ui = result.ui[node_id]
    items = [i for key in ("images", "gifs", "videos") for i in ui.get(key, []) if isinstance(i, dict)]
    base = {"output": comfy_dirs.output, "temp": comfy_dirs.temp}
    return [base[i.get("type", "output")] / i.get("subfolder", "") / i["filename"] for i in items]


def _check_mp4(path: Path, frames, fps: float, workflow_name: str) -> None:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert float(stream.average_rate) == pytest.approx(fps)
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        metadata = dict(container.metadata)
    assert len(decoded) == frames.shape[0]
    assert decoded[0].shape == tuple(frames.shape[1:])
    assert json.loads(metadata["workflow"])["extra"]["microcinema"]["workflow"] == workflow_name
    assert "MicroCinemaImageToVideo" in metadata["prompt"]


def _check_webp(path: Path, frames, fps: float) -> None:
    with Image.open(path) as image:
        assert image.format == "WEBP" and getattr(image, "n_frames", 1) == frames.shape[0]
        assert image.size == (frames.shape[2], frames.shape[1])
        image.load()  # the frame duration is known once a frame is decoded
        assert image.info.get("duration") == pytest.approx(1000 / fps, abs=1)


def _to_pil(frames) -> list[Image.Image]:
    array = (np.clip(frames.cpu().numpy(), 0, 1) * 255).round().astype(np.uint8)
    return [Image.fromarray(f) for f in array]


@pytest.mark.graph
@pytest.mark.parametrize("name", NAMES)
def test_workflow_runs_as_shipped(name, run_graph, comfy_dirs, demo_models, example_input):
    import torch

    prompt, ui = api_form(name), ui_form(name)
    result = run_graph(prompt, extra_data={"extra_pnginfo": {"workflow": ui}})
    assert result.history.get("status", {}).get("status_str", "success") == "success"
    savers = {i: n for i, n in prompt.items() if n["class_type"] in ("SaveVideo", "SaveAnimatedWEBP")}
    assert {n["class_type"] for n in savers.values()} == {"SaveVideo", "SaveAnimatedWEBP"}
    thumbnail_frames = None
    for node_id, node in sorted(savers.items()):
        images_node = _source(prompt, node_id, "images") if node["class_type"] == "SaveAnimatedWEBP" else \
            _source(prompt, _source(prompt, node_id, "video"), "images")
        frames = result[images_node]
        i2v = _upstream(prompt, node_id, "MicroCinemaImageToVideo")
        i2v_inputs = prompt[i2v]["inputs"]
        expected = (i2v_inputs["length"], i2v_inputs["height"], i2v_inputs["width"], 3)
        if _upstream(prompt, node_id, "ImageUpscaleWithModel"):
            expected = (expected[0], expected[1] * 2, expected[2] * 2, 3)
        if _upstream(prompt, node_id, "MicroCinemaExtendVideo"):  # each round adds its clip but the first frame
            rounds = sum(n["class_type"] == "MicroCinemaImageToVideo" for n in prompt.values())
            expected = (rounds * (expected[0] - 1) + 1, *expected[1:])
        assert tuple(frames.shape) == expected, (node_id, tuple(frames.shape))
        assert torch.isfinite(frames).all()
        fps = result.output(i2v, 3)
        assert fps == i2v_inputs["frame_rate"]
        files = _files(result, comfy_dirs, node_id)
        assert len(files) == 1 and files[0].is_file(), (node_id, result.ui[node_id])
        if node["class_type"] == "SaveVideo":
            _check_mp4(files[0], frames, fps, name)
        else:
            _check_webp(files[0], frames, fps)
            thumbnail_frames = thumbnail_frames or _to_pil(frames)

    if name == "controlnet_per_frame":
        applied = next(i for i, n in prompt.items() if n["class_type"] == "ControlNetApplyAdvanced")
        for index in (0, 1):
            control = result.output(applied, index)[0][1]["control"]
            assert control.cond_hint_original.shape[0] == prompt[_upstream(prompt, applied, "RepeatImageBatch")][
                "inputs"]["amount"] == 8
    if name == "keyframe_first_last":
        positions = {prompt[i]["inputs"]["keyframe_position"]: i for i, n in prompt.items()
                     if n["class_type"] == "MicroCinemaImageToVideo"}
        assert set(positions) == {"first", "last"}
        hints = [result.output(positions[p], 0)[0][1]["model_conds"]["mc_hint"].cond for p in ("first", "last")]
        assert hints[0].shape[0] == LENGTH and not torch.equal(hints[0], hints[1])  # AppearNet's per-frame hint

    if name == "prompt_travel":
        travel = next(i for i, n in prompt.items() if n["class_type"] == "MicroCinemaPromptTravel")
        cond = result.output(travel, 0)[0][0]
        assert cond.shape[0] == prompt[travel]["inputs"]["length"] == LENGTH  # one text context per frame
        assert not torch.equal(cond[0], cond[-1])
    if name == "video_to_video":
        v2v = next(i for i, n in prompt.items() if n["class_type"] == "MicroCinemaVideoToVideo")
        sampler = next(i for i, n in prompt.items() if n["class_type"] == "KSampler"
                       and n["inputs"]["latent_image"][0] == v2v)
        for key in ("steps", "denoise", "sampler_name", "scheduler"):  # the prior is scaled for this sampler
            assert prompt[v2v]["inputs"][key] == prompt[sampler]["inputs"][key]
        assert prompt[sampler]["inputs"]["denoise"] < 1
    if name == "extend_video":
        extends = [i for i, n in prompt.items() if n["class_type"] == "MicroCinemaExtendVideo"]
        first = _source(prompt, extends[0], "video")
        video = result.output(extends[-1], 0)
        assert torch.equal(video[:LENGTH], result.output(first, 0))  # round 1 kept as it was
        assert not any(torch.equal(a, b) for a, b in zip(video[:-1], video[1:]))  # no repeated frame at the seams

    if WRITE_THUMBNAILS:
        wf = next(make() for make in builder.WORKFLOWS if make().name == name)
        buffer = io.BytesIO()
        builder.render_thumbnail(wf, thumbnail_frames).save(buffer, "JPEG", quality=85, optimize=True)
        (REPO_ROOT / "example_workflows" / f"{name}.jpg").write_bytes(buffer.getvalue())


@pytest.mark.parametrize("name", NAMES)
def test_thumbnail_for_the_template_browser(name):
    """(After the runs: MICROCINEMA_WRITE_THUMBNAILS=1 writes them there.) The 0.3.75 front end shows <name>.jpg next to a custom node template (mediaType image, subtype jpg)."""
    path = REPO_ROOT / "example_workflows" / f"{name}.jpg"
    assert path.is_file(), f"missing {path}: MICROCINEMA_WRITE_THUMBNAILS=1 pytest tests/test_workflows.py"
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.size == builder.THUMB_SIZE


# -- over HTTP: what the template browser gets --------------------------------------------------------------------
@pytest.mark.server
def test_template_listing_and_thumbnails_served(comfy_server):
    """GET /workflow_templates lists exactly the UI forms; each is served, and so is its thumbnail on ComfyUI
    versions that serve the whole example_workflows folder (0.3.x: a static route). Newer upstream serves only
    the JSON files (app/custom_node_manager.py collect_workflow_templates), so there the card has no picture."""
    status, listing = comfy_server.request("GET", "/workflow_templates")
    assert status == 200
    assert sorted(listing.get(PACK_NAME, [])) == sorted(NAMES), listing
    json_only = "collect_workflow_templates" in (comfyui_path() / "app" / "custom_node_manager.py").read_text()
    for name in NAMES:
        status, body = comfy_server.request("GET", f"/api/workflow_templates/{PACK_NAME}/{name}.json")
        assert status == 200 and body == ui_form(name)
        url = f"{comfy_server.base_url}/api/workflow_templates/{PACK_NAME}/{name}.jpg"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                assert response.status == 200 and response.headers["Content-Type"] == "image/jpeg"
        except urllib.error.HTTPError as err:
            assert json_only and err.code == 404, f"{url}: HTTP {err.code}"


def test_one_graph_builder_with_automatic_ids():
    """The workflows and the tests build prompts with the same Graph (workflows/workflow_builder/graph.py), and
    the workflows never choose node ids: they are 1..N in creation order."""
    from harness.graph import Graph

    for make in builder.WORKFLOWS:
        wf = make()
        assert type(wf.graph) is Graph
        assert [int(ref.id) for ref in wf.graph] == list(range(1, len(list(wf.graph)) + 1)), wf.name
