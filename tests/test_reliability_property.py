"""Property: random valid and invalid input combinations of MicroCinema Image To Video (+ KSampler, 1 step, tiny
sizes) through ComfyUI's real in-process executor end in latents of the right shape ([B*length, 4, h/8, w/8]) or in
a clean node error that names an input (GraphValidationError / GraphExecutionError) - never another exception.
An oracle predicts which of the two each example must give."""
from __future__ import annotations

import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.reliability import video_graph
from harness.reliability_fixtures import *  # noqa: F401,F403  (fixtures)
from harness.runner import GraphExecutionError, GraphValidationError

pytestmark = [pytest.mark.reliability, pytest.mark.graph]

NAN, INF = float("nan"), float("inf")
VALID = {
    "width": [16, 24, 32], "height": [16, 24, 32], "length": [1, 2, 3, 4],
    "keyframe_position": ["center", "first", "last", "index"], "keyframe_index": [-2, -1, 0, 1],
    "appearance_strength": [0.0, 0.5, 1.0, 10.0], "noise_prior_gamma": [0.0, 0.02, 1.0],
    "frame_rate": [1.0, 8.0, 120.0], "crop": ["center", "disabled"],
    "resize_method": ["bilinear", "bicubic", "area", "lanczos", "nearest-exact"],
}
INVALID = {
    "width": [0, 8, 12, 20, 37, -8, 8200], "height": [4, 30, 8208], "length": [0, -1, 4097],
    "keyframe_position": ["middle", ""], "keyframe_index": [4097, -4097],
    "appearance_strength": [-0.1, 10.5, NAN, INF], "noise_prior_gamma": [-0.01, 1.5, NAN, -INF],
    "frame_rate": [0.0, 500.0, NAN], "crop": ["top"], "resize_method": ["magic"],
}
IMAGE_VALID = {"width": st.integers(1, 40), "height": st.integers(1, 40), "batch": st.integers(1, 2),
               "channels": st.integers(1, 4)}
INPUT_NAMES = set(VALID) | {"image", "positive", "negative", "vae"}


@st.composite
def cases(draw):
    widgets = {name: draw(st.sampled_from(options)) for name, options in VALID.items()}
    image = {name: draw(strategy) for name, strategy in IMAGE_VALID.items()}
    image["seed"] = draw(st.integers(0, 1000))
    if draw(st.booleans()):  # about half the examples get one or two faults
        for name in draw(st.lists(st.sampled_from(sorted(INVALID) + ["image.batch", "image.channels"]),
                                  min_size=1, max_size=2, unique=True)):
            if name == "image.batch":
                image["batch"] = 0
            elif name == "image.channels":
                image["channels"] = 5
            else:
                widgets[name] = draw(st.sampled_from(INVALID[name]))
    return widgets, image


def widget_faults(w: dict) -> set[str]:
    """Oracle: the widget inputs whose values are invalid."""
    bad = set()
    for name in ("width", "height"):
        if not (16 <= w[name] <= 8192 and w[name] % 8 == 0):
            bad.add(name)
    if not 1 <= w["length"] <= 4096:
        bad.add("length")
    if not -4096 <= w["keyframe_index"] <= 4096:
        bad.add("keyframe_index")
    if w["keyframe_position"] == "index" and "length" not in bad and not -w["length"] <= w["keyframe_index"] < w["length"]:
        bad.add("keyframe_index")
    for name in ("keyframe_position", "crop", "resize_method"):
        if w[name] not in VALID[name]:
            bad.add(name)
    for name, (low, high) in (("appearance_strength", (0, 10)), ("noise_prior_gamma", (0, 1)),
                              ("frame_rate", (1, 120))):
        if not low <= w[name] <= high:
            bad.add(name)
    return bad


STATS = {"examples": 0, "ok": 0, "validation": 0, "execution": 0}


@settings(max_examples=25, deadline=None, derandomize=True, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(case=cases())
def test_random_inputs_end_in_shapes_or_node_errors(run_graph, tiny_sd_checkpoint, test_image_node, tally, case):
    widgets, image = case
    g, refs = video_graph(tiny_sd_checkpoint, image=image, seed=image["seed"], **widgets)
    STATS["examples"] += 1
    tally.add("inputs")
    bad_widgets = widget_faults(widgets)
    bad_image = image["batch"] == 0 or image["channels"] > 4
    started = time.perf_counter()
    try:
        result = run_graph(g, outputs=[refs["ksampler"]])
    except GraphValidationError as err:
        STATS["validation"] += 1
        named = err.input_names()
        assert bad_widgets, f"valid widgets {widgets} were refused: {err}"
        assert named & bad_widgets, f"the error names {named}, not one of {bad_widgets}: {err}"
        return
    except GraphExecutionError as err:
        STATS["execution"] += 1
        message = err.exception_message or ""
        assert not bad_widgets, f"bad widgets {bad_widgets} reached execution: {err}"
        assert isinstance(err.__cause__, ValueError), f"not a clean node error: {err}"
        assert err.node_type == "MicroCinemaImageToVideo" and any(f"'{n}'" in message for n in INPUT_NAMES), err
        assert bad_image, f"a valid example failed: {widgets} {image}: {err}"
        return
    except Exception:
        tally.add("failures")
        raise
    finally:
        tally.time("property example (last)", time.perf_counter() - started)
    STATS["ok"] += 1
    assert not bad_widgets and not bad_image, f"invalid inputs accepted: {bad_widgets} {image}"
    latent = result[refs["ksampler"].id]["samples"]
    assert latent.shape == (image["batch"] * widgets["length"], 4, widgets["height"] // 8, widgets["width"] // 8)
    assert torch.isfinite(latent).all()


def test_property_outcomes_were_mixed(tally):
    """Runs after the property test in file order: the examples covered successes and both kinds of errors."""
    if STATS["examples"] == 0:
        pytest.skip("the property test did not run in this session")
    print(f"property examples: {STATS}")
    for kind in ("ok", "validation", "execution"):
        tally.add(f"property_{kind}", STATS[kind])
    assert STATS["ok"] >= 3 and STATS["validation"] >= 3 and STATS["execution"] >= 1, STATS
