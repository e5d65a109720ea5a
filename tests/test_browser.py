"""The shipped workflows in ComfyUI's real web front end (comfyui-frontend-package) in headless Chromium.

What a user does: open the page, pick a MicroCinema template in the template browser (or drop a workflow file,
which calls app.loadGraphData), press Run, look at the results. Checked: the templates are listed with their
thumbnails, no missing-node dialog and no node without a definition, no console error, the prompt the front end
builds from the UI form is the shipped API form (so widget order and links are right; exactly on 0.3.75, newer
stock-node inputs tolerated on newer ComfyUI, see prompt_differences), the run
succeeds and the front end shows its outputs; a screenshot of each is saved in the test's tmp dir.

Needs Chromium from Debian and the python package playwright: `bash scripts/install_browser.sh`. Without them
these tests skip with that reason. The default run (`bash scripts/test.sh -m "not slow"`) runs
test_template_browser_text_to_video only; the other workflows are marked slow (a minute or two each on 2 CPU
cores): `bash scripts/test.sh -m browser`.
"""
from __future__ import annotations

import json
import shutil
import time

import pytest

from harness.browser import APP_JS, ComfyPage, launch, skip_reason
from harness.demo_models import place_demo_models
from harness.locations import PACK_NAME, REPO_ROOT
from harness.ui_workflow import load_workflow_builder

pytestmark = [pytest.mark.browser, pytest.mark.server]
_reason = skip_reason()
if _reason:
    pytestmark.append(pytest.mark.skip(reason=_reason))

builder = load_workflow_builder()
NAMES = [make().name for make in builder.WORKFLOWS]
RUN_TIMEOUT = 900  # seconds per workflow run on a busy 2-core machine


def ui_form(name: str) -> dict:
    return json.loads((REPO_ROOT / "example_workflows" / f"{name}.json").read_text())


def api_form(name: str) -> dict:
    return json.loads((REPO_ROOT / "workflows" / "api" / f"{name}.api.json").read_text())


@pytest.fixture(scope="module")
def server(comfy_server, comfy_dirs):
    """The session's ComfyUI server (with the front end) with the demo models and the example input image in
    its folders, and a user that has seen the first-start template dialog and starts each page empty."""
    place_demo_models(comfy_dirs)
    shutil.copyfile(REPO_ROOT / "example_workflows" / builder.EXAMPLE_KEYFRAME,
                    comfy_dirs.input / builder.EXAMPLE_KEYFRAME)
    # Workflow persistence off: front end 1.49 (ComfyUI 0.33) restores the last page's workflow on open, after a
    # test has loaded its own, so a test would see the previous test's graph.
    status, body = comfy_server.request("POST", "/settings", {"Comfy.TutorialCompleted": True,
                                                              "Comfy.Workflow.Persist": False})
    assert status == 200, body
    status, index = comfy_server.request("GET", "/")
    assert status == 200 and "<html" in str(index).lower(), "the server has no web front end"
    return comfy_server


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = launch(playwright, tmp_path_factory.mktemp("chromium-profile"))
        yield context
        context.close()


@pytest.fixture
def page(browser, server):
    comfy_page = ComfyPage(browser, server.base_url).open()
    yield comfy_page
    comfy_page.close()


def prompt_differences(front: dict, shipped: dict, ui: dict, specs: dict) -> list[str]:
    """Where the prompt the front end built differs from the shipped API form. Exact, except for what a newer
    ComfyUI changed in its own nodes (on 0.3.75, where the specs come from, none of these applies):
    - an input the node did not have in workflows/spec/node_specs.json (new, holding its default);
    - a known widget value the front end moved under a dynamic combo (0.33's SaveVideo: codec -> format.codec);
    - the display-name title in _meta of nodes the UI form gives no title (ComfyUI versions rename them)."""
    problems = []
    titled = {str(n["id"]): n["title"] for n in ui["nodes"] if n.get("title")}
    for node_id in sorted(set(front) | set(shipped), key=int):
        ours, theirs = shipped.get(node_id), front.get(node_id)
        if ours is None or theirs is None or ours["class_type"] != theirs["class_type"]:
            problems.append(f"node {node_id}: {ours and ours['class_type']} vs {theirs and theirs['class_type']}")
            continue
        known = {i["name"] for i in specs.get(ours["class_type"], {}).get("inputs", [])}
        for name, value in ours["inputs"].items():
            nested = [k for k in theirs["inputs"] if k.endswith("." + name)]
            if theirs["inputs"].get(name) != value and not any(theirs["inputs"][k] == value for k in nested):
                problems.append(f"node {node_id} input {name}: {theirs['inputs'].get(name)!r} vs {value!r}")
        for name in set(theirs["inputs"]) - set(ours["inputs"]):
            if name in known and not any(k.endswith("." + name) for k in theirs["inputs"]):
                problems.append(f"node {node_id} input {name}: the front end sets it, the API form does not")
        if node_id in titled and theirs.get("_meta", {}).get("title") != titled[node_id]:
            problems.append(f"node {node_id}: title {theirs.get('_meta')} vs {titled[node_id]!r}")
    return problems


def test_prompt_comparison_tolerates_only_newer_stock_inputs():
    specs = {"SaveVideo": {"inputs": [{"name": "video"}, {"name": "format"}, {"name": "codec"}]}}
    ui = {"nodes": [{"id": 1}]}
    shipped = {"1": {"class_type": "SaveVideo", "inputs": {"video": ["2", 0], "format": "mp4", "codec": "h264"}}}
    newer = {"1": {"class_type": "SaveVideo", "_meta": {"title": "Save Video"},
                   "inputs": {"video": ["2", 0], "format": "mp4", "format.codec": "h264", "codec": "auto",
                              "bit_depth": 8}}}
    assert prompt_differences(newer, shipped, ui, specs) == []
    assert prompt_differences(shipped, shipped, ui, specs) == []
    wrong = {"1": {**newer["1"], "inputs": {**newer["1"]["inputs"], "format.codec": "h265"}}}
    assert prompt_differences(wrong, shipped, ui, specs) == ["node 1 input codec: 'auto' vs 'h264'"]
    relinked = {"1": {**shipped["1"], "inputs": {**shipped["1"]["inputs"], "video": ["3", 0]}}}
    assert prompt_differences(relinked, shipped, ui, specs) == ["node 1 input video: ['3', 0] vs ['2', 0]"]


def check_loaded(page: ComfyPage, name: str) -> None:
    problems = page.missing_node_problems()
    assert not problems, f"{name}: missing nodes: {problems}"
    errors = page.console.errors_since_mark()
    assert not errors, f"{name}: console errors after loading:\n" + "\n".join(errors)
    front, shipped, ui = page.graph_to_prompt(), api_form(name), ui_form(name)
    differences = prompt_differences(front, shipped, ui, builder.load_specs())
    assert not differences, f"{name}: the front end builds another prompt than the API form: {differences}"
    # The workflow the front end would save keeps our widget values exactly, except that a stock node to which
    # this ComfyUI added inputs (those prompt_differences tolerated, e.g. 0.33's CreateVideo bit_depth) may append
    # their widgets; a node without widgets may save no list.
    grown = {int(i) for i, node in front.items() if set(node["inputs"]) - set(shipped[i]["inputs"])}
    saved = {n["id"]: (n["type"], n.get("widgets_values") or []) for n in page.serialized_workflow()["nodes"]}
    assert len(saved) == len(ui["nodes"])
    for node in ui["nodes"]:
        node_type, values = saved[node["id"]]
        ours = node["widgets_values"]
        kept = values[:len(ours)] == ours if node["id"] in grown else values == ours
        assert kept, f"{name}: node {node['id']} ({node_type}) saves widgets {values}, the workflow has {ours}"


def run_and_check(page: ComfyPage, server, name: str, screenshot_dir) -> None:
    started = time.monotonic()
    prompt_id = page.queue_with_run_button()
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        entry = server.history(prompt_id)
        if entry.get("status", {}).get("completed") is not None:
            break
        assert time.monotonic() < deadline, f"{name}: no result after {RUN_TIMEOUT} s:\n{server.log_tail()}"
        time.sleep(1.0)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:4000]
    prompt = api_form(name)
    savers = [i for i, n in prompt.items() if n["class_type"] in ("SaveVideo", "SaveAnimatedWEBP")]
    for node_id in savers:
        items = entry["outputs"][node_id]["images"]
        assert len(items) == 1
        assert (server.dirs.output / items[0]["subfolder"] / items[0]["filename"]).is_file()
    page.wait_for_node_outputs(savers)
    errors = page.console.errors_since_mark()
    assert not errors, f"{name}: console errors while running:\n" + "\n".join(errors)
    page.screenshot(screenshot_dir / f"{name}.png")
    print(f"{name}: ran in the browser in {time.monotonic() - started:.0f} s; screenshot {screenshot_dir / name}.png")


def test_template_browser_text_to_video(page, server, tmp_path):
    """The template browser lists every MicroCinema workflow with its thumbnail; picking text_to_video loads it,
    Run renders it."""
    page.page.get_by_role("button", name="Templates", exact=True).first.click()  # the side bar's Templates
    page.page.wait_for_selector("[data-testid=template-workflows-content]", timeout=30_000)
    page.page.get_by_text(PACK_NAME, exact=True).first.click()  # its category, under Extensions
    cards = {name: page.page.get_by_test_id(f"template-workflow-{name}") for name in NAMES}
    for name, card in cards.items():
        card.wait_for(timeout=30_000)
    # every card's thumbnail is loaded (the front end fetches <name>.jpg next to the workflow); the images load
    # lazily, so each card is scrolled into view first (ten cards do not fit in the dialog at once)
    for name, card in cards.items():
        card.scroll_into_view_if_needed(timeout=30_000)
        page.page.wait_for_function(
            "(n) => { const img = document.querySelector(`[data-testid='template-workflow-${n}'] img`);"
            " return img && img.complete && img.naturalWidth > 0; }", arg=name, timeout=30_000)
    page.screenshot(tmp_path / "template_browser.png")
    cards["text_to_video"].click()
    page.page.wait_for_function(f"() => {APP_JS}.graph.nodes.length === {len(ui_form('text_to_video')['nodes'])}",
                                timeout=30_000)
    page.page.wait_for_timeout(500)
    assert not [d for d in page.dialogs() if "Templates" in d], "the template dialog stayed open"
    check_loaded(page, "text_to_video")
    run_and_check(page, server, "text_to_video", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if n != "text_to_video"])
def test_workflow_loads_and_runs_in_the_browser(page, server, name, tmp_path):
    page.load_workflow(ui_form(name))
    check_loaded(page, name)
    run_and_check(page, server, name, tmp_path)
