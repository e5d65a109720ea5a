"""nodes/inputs.py: widget inputs declared once. The schemas it derives are the released ones (names, order, types,
defaults, ranges, options: saved workflows keep loading), NaN lies outside every FLOAT limit while every other
comparison is the plain float's, each bad value gives one message naming node and input, and validate_inputs
names only what ComfyUI cannot check itself. (Through real prompts: test_reliability_inputs.py and
test_reliability_server.py.)"""
from __future__ import annotations

import importlib
import inspect
import json
import math

import pytest

pytestmark = pytest.mark.graph

NAN, INF = float("nan"), float("inf")
FRAMES, SIDE = 4096, (16, 8192)

# The released widget inputs, written out independently of the pack: (name, type, default, min, max, step).
VIDEO = [("width", "INT", 512, *SIDE, 8), ("height", "INT", 512, *SIDE, 8), ("length", "INT", 16, 1, FRAMES, None)]
KEYFRAME = [("keyframe_position", "COMBO", "center", None, None, None),
            ("keyframe_index", "INT", 0, -FRAMES, FRAMES, None),
            ("appearance_strength", "FLOAT", 1.0, 0.0, 10.0, 0.01),
            ("noise_prior_gamma", "FLOAT", 0.02, 0.0, 1.0, 0.001)]
RELEASED = {
    "MicroCinemaImageToVideo": (["positive", "negative", "vae", "image"], VIDEO + KEYFRAME + [
        ("crop", "COMBO", "center", None, None, None), ("frame_rate", "FLOAT", 8.0, 1.0, 120.0, 0.5),
        ("resize_method", "COMBO", "bilinear", None, None, None)]),
    "MicroCinemaSampler": (["model", "positive", "negative", "vae", "image"], VIDEO + [
        ("seed", "INT", 0, 0, 0xFFFFFFFFFFFFFFFF, None), ("steps", "INT", 25, 1, 10000, None),
        ("cfg", "FLOAT", 7.5, 0.0, 100.0, 0.1), ("sampler_name", "COMBO", "euler", None, None, None),
        ("scheduler", "COMBO", "normal", None, None, None)] + KEYFRAME + [
        ("frame_rate", "FLOAT", 8.0, 1.0, 120.0, 0.5)]),
    "MicroCinemaNoisePrior": (["keyframe"], [("noise_seed", "INT", 0, 0, 0xFFFFFFFFFFFFFFFF, None),
                                             ("gamma", "FLOAT", 0.02, 0.0, 1.0, 0.001)]),
    "MicroCinemaCheckpointLoader": ([], [("ckpt_name", "COMBO", None, None, None, None)]),
    "MicroCinemaApplyModule": (["model"], [("module_name", "COMBO", None, None, None, None),
                                           ("motion_module", "COMBO", None, None, None, None)]),
}
OPTIONS = {"keyframe_position": ["center", "first", "last", "index"], "crop": ["center", "disabled"],
           "resize_method": ["bilinear", "bicubic", "area", "lanczos", "nearest-exact"]}


@pytest.fixture(scope="module")
def pack(comfy_env):
    from pack_import import loaded_pack_module

    return loaded_pack_module()


@pytest.fixture(scope="module")
def inputs_module(pack):
    return importlib.import_module(pack + ".nodes.inputs")


@pytest.mark.parametrize("node_type", list(RELEASED))
def test_schemas_are_the_released_ones(comfy_env, node_type):
    import nodes

    spec = nodes.NODE_CLASS_MAPPINGS[node_type].INPUT_TYPES()
    assert set(spec) <= {"required", "hidden"}, spec  # every input required, as released
    required = spec["required"]
    sockets, widgets = RELEASED[node_type]
    widget_names = [w[0] for w in widgets]
    assert [n for n in required if n not in widget_names] == sockets
    assert [n for n in required if n in widget_names] == widget_names  # order of the widgets
    for name, kind, default, low, high, step in widgets:
        io_type, options = required[name]
        assert io_type == kind, name
        assert options.get("default") == default, name
        assert (options.get("min"), options.get("max"), options.get("step")) == (low, high, step), name
        assert options.get("tooltip"), f"{node_type}.{name} has no tooltip"
        if name in OPTIONS:
            assert options["options"] == OPTIONS[name]
        if name in ("seed", "noise_seed"):
            assert options.get("control_after_generate") is True


def test_limits_refuse_nan_and_compare_as_floats_otherwise(inputs_module):
    Limit = inputs_module.Limit
    low, high = Limit(0.0), Limit(1.0)
    # what ComfyUI's range check asks: value < min, value > max
    assert NAN < low and NAN > high
    for value in (-INF, -1.0, -1e-9, 0.0, 0.5, 1.0, 1.0 + 1e-9, 2.0, INF, 0, 1, 3):
        assert (value < low) == (value < 0.0) and (value > high) == (value > 1.0), value
        assert (low <= value) == (0.0 <= value) and (value == high) == (value == 1.0), value
    assert json.dumps({"min": low, "max": high}) == '{"min": 0.0, "max": 1.0}'  # the front end sees numbers


def test_one_message_per_bad_input_naming_node_and_input(pack, inputs_module):
    i2v = importlib.import_module(pack + ".nodes.image_to_video_nodes")
    good = {name: w.default for name, w in i2v.WIDGETS.widgets.items()}
    assert i2v.WIDGETS.problems(good) == []
    bad = {**good, "length": 0, "noise_prior_gamma": NAN, "width": 36, "crop": "top", "keyframe_index": True}
    found = i2v.WIDGETS.problems(bad)
    assert len(found) == 5
    for name, message in zip(("width", "length", "keyframe_index", "noise_prior_gamma", "crop"), found):
        assert message.startswith(f"MicroCinema Image To Video: input '{name}'"), message
        assert message.count("input '") == 1
    # the rule across inputs, only once every input is fine on its own
    clip = {**good, "keyframe_position": "index", "length": 4}
    assert i2v.WIDGETS.problems({**clip, "keyframe_index": -4}) == []
    assert "outside a clip of 4 frames" in i2v.WIDGETS.problems({**clip, "keyframe_index": 4})[0]
    with pytest.raises(ValueError, match="input 'length'"):
        i2v.WIDGETS.check({**good, "length": 2.5})  # a float through a link: not a whole number


def test_validate_inputs_names_only_combos_comfyui_does_not_check(comfy_env, inputs_module):
    import execution
    import nodes

    comfy_checks = "Combo.io_type" in inspect.getsource(execution.validate_inputs)
    assert inputs_module.comfy_checks_combo_options() is comfy_checks
    for node_type in RELEASED:
        cls = nodes.NODE_CLASS_MAPPINGS[node_type]
        named = inspect.getfullargspec(cls.validate_inputs)  # exactly what ComfyUI reads
        assert named.varkw is None and named.args[0] == "cls"
        combos = [name for name, kind, *_ in RELEASED[node_type][1] if kind == "COMBO"]
        assert named.args[1:] == ([] if comfy_checks else combos), node_type
        assert cls.validate_inputs(**{n: None for n in named.args[1:]}) is True  # linked: left to execute
    if not comfy_checks:
        message = nodes.NODE_CLASS_MAPPINGS["MicroCinemaImageToVideo"].validate_inputs(
            keyframe_position="center", crop="top", resize_method="bilinear")
        assert message == "MicroCinema Image To Video: input 'crop': 'top' is not one of center, disabled"


def test_limit_is_used_for_every_float(comfy_env):
    import nodes

    for node_type in RELEASED:
        for name, (io_type, options) in nodes.NODE_CLASS_MAPPINGS[node_type].INPUT_TYPES()["required"].items():
            if io_type == "FLOAT":
                assert NAN < options["min"] and NAN > options["max"], (node_type, name)
                assert not math.isnan(options["default"])
