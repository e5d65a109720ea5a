"""scripts/gpu_check_comfy.py's workflow rescaling (the GPU check's inputs), checked without a server."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check_comfy", ROOT / "scripts" / "gpu_check_comfy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_workflow_rescales_to_the_check_size():
    script = _script()
    for path in sorted((ROOT / "workflows" / "api").glob("*.api.json")):
        original = json.loads(path.read_text())
        prompt = script.scaled_workflow(original, 512, 16, steps=3)
        kinds = {k: v["class_type"] for k, v in prompt.items()}
        for key, node in prompt.items():
            inputs = node["inputs"]
            if kinds[key] in ("EmptyLatentImage", "MicroCinemaImageToVideo"):
                assert inputs["width"] == inputs["height"] == 512, path.name
            if kinds[key] == "MicroCinemaImageToVideo":
                assert inputs["length"] == 16 and inputs["keyframe_index"] < 16
            if kinds[key] == "RepeatImageBatch":
                assert inputs["amount"] == 16
            if kinds[key] == "MicroCinemaContextWindows":
                assert 2 <= inputs["context_length"] <= 8 and inputs["context_overlap"] < inputs["context_length"]
            if kinds[key].startswith("KSampler"):
                assert inputs["steps"] == 3
        video = script.video_sampler_ids(prompt)
        assert video and all(kinds[k] == "KSampler" for k in video), path.name
        assert original == json.loads(path.read_text()), "the workflow file itself is not changed"
