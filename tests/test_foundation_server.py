"""Foundation over HTTP: the pack inside a real `python main.py` server (issue 2)."""
from __future__ import annotations

import subprocess

import pytest

from harness import PromptRejected
from harness.locations import PACK_NAME
from harness.media import write_test_image
from harness.sd_graphs import noise_prior_video_graph
from harness.server import custom_node_import_times, main_command, server_env
from harness.locations import comfyui_path

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def keyframe(comfy_dirs) -> str:
    return write_test_image(comfy_dirs.input, "server_keyframe.png", 32, 32, seed=11)


def test_pack_nodes_listed(comfy_server):
    info = comfy_server.object_info("MicroCinemaNoisePrior")["MicroCinemaNoisePrior"]
    assert info["output"] == ["NOISE"]
    assert info["input"]["required"]["gamma"][1]["max"] == 1.0
    times = custom_node_import_times(comfy_server.log_text())
    assert times.get(PACK_NAME, (0, False))[1], f"pack not imported:\n{comfy_server.log_tail()}"


def test_video_graph_over_http(comfy_server, tiny_sd_checkpoint, keyframe):
    vg = noise_prior_video_graph(tiny_sd_checkpoint, [keyframe], frames=4, save_prefix="server_foundation")
    run = comfy_server.run(vg.graph.to_api())
    assert run.succeeded, run.events("execution_error") or comfy_server.log_tail()
    progress = [p for p in run.events("progress") if p.get("node") == vg.sampler.id]
    assert [p["value"] for p in progress][-1] == progress[-1]["max"] == 3
    executed = {e["node"] for e in run.events("executed")}
    assert vg.save.id in executed
    images = run.outputs[vg.save.id]["images"]
    assert len(images) == 4
    assert all((comfy_server.dirs.output / im["subfolder"] / im["filename"]).is_file() for im in images)
    assert run.history["status"]["status_str"] == "success"


def test_bad_input_is_rejected_then_server_keeps_serving(comfy_server, tiny_sd_checkpoint, keyframe):
    bad = noise_prior_video_graph(tiny_sd_checkpoint, [keyframe], frames=2, gamma=5.0, save_prefix="bad")
    with pytest.raises(PromptRejected) as err:
        comfy_server.queue_prompt(bad.graph.to_api())
    assert err.value.status == 400
    errors = err.value.node_errors[bad.noise.id]["errors"]
    assert any(e.get("extra_info", {}).get("input_name") == "gamma" for e in errors), errors

    good = noise_prior_video_graph(tiny_sd_checkpoint, [keyframe], frames=2, save_prefix="after_bad")
    run = comfy_server.run(good.graph.to_api())
    assert run.succeeded and len(run.outputs[good.save.id]["images"]) == 2


def test_quick_test_for_ci_with_pack(comfy_dirs):
    # --quick-test-for-ci imports every node (built-in and custom) and exits; it exits 0 even when a pack
    # failed to import, so the import report is checked too.
    proc = subprocess.run(main_command(comfy_dirs, extra=["--quick-test-for-ci"]), cwd=str(comfyui_path()),
                          env=server_env(), capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    times = custom_node_import_times(log)
    assert PACK_NAME in times and times[PACK_NAME][1], log[-4000:]
