"""Bad inputs at every MicroCinema node, in real ComfyUI graphs (in-process executor): each ends in a ComfyUI node
error that names the node and the input (a validation error, what the server answers with HTTP 400, where the value
can be checked before running; else an execution error of that node whose message names the input), and the next
graph runs normally. Odd but valid inputs (37x23, 1x1, RGBA, greyscale, several keyframes, length 1) work.

The HTTP side of the same faults is in test_reliability_server.py."""
from __future__ import annotations

import inspect
import math

import pytest
import torch

from harness.graph import Graph
from harness.reliability import NEW_MODULE, video_graph
from harness.reliability_fixtures import *  # noqa: F401,F403  (fixtures)
from harness.runner import GraphExecutionError, GraphValidationError

pytestmark = [pytest.mark.reliability, pytest.mark.graph]

I2V = "MicroCinemaImageToVideo"
I2V_NAME = "MicroCinema Image To Video"


def assert_validation_error(run_graph, graph: Graph, node, input_name: str, outputs=None,
                            once: bool = True) -> GraphValidationError:
    with pytest.raises(GraphValidationError) as info:
        run_graph(graph, outputs=outputs or [node])
    err = info.value
    assert node.id in err.node_errors, f"the error must be reported on node {node.id}: {err}"
    errors = err.node_errors[node.id]["errors"]
    names = [r.get("extra_info", {}).get("input_name") for r in errors]
    details = " ".join(str(r.get("details")) for r in errors)
    assert input_name in names and input_name in details, f"input {input_name!r} not named: {err}"
    if not once:
        return err
    # once, on that input; the one exception: on ComfyUI versions that do not check V3 combo options, the node's
    # validate_inputs checks its combos, and ComfyUI copies its message onto each of them (nodes/inputs.py)
    assert names.count(input_name) == 1, f"input {input_name!r} reported {names.count(input_name)} times: {err}"
    others = set(names) - {input_name}
    assert not others or (not combos_checked_by_comfyui() and others <= combo_inputs(node.class_type)), \
        f"an error on {input_name!r} was also reported on {sorted(others)}: {err}"
    return err


def combos_checked_by_comfyui() -> bool:
    import execution

    return "Combo.io_type" in inspect.getsource(execution.validate_inputs)


def combo_inputs(class_type: str) -> set[str]:
    import nodes

    spec = nodes.NODE_CLASS_MAPPINGS[class_type].INPUT_TYPES()
    return {name for section in spec.values() for name, info in section.items() if info[0] == "COMBO"}


def assert_execution_error(run_graph, graph: Graph, node_type: str, words: tuple[str, ...], outputs=None,
                           tally=None) -> GraphExecutionError:
    try:
        run_graph(graph, outputs=outputs)
    except GraphExecutionError as err:
        message = err.exception_message or ""
        assert err.node_type == node_type, f"expected a {node_type} error, got: {err}"
        for word in words:
            assert word in message, f"{word!r} not in the message: {message}"
        assert err.exception_type in ("ValueError", "builtins.ValueError") or \
            isinstance(err.__cause__, ValueError), f"not a clean error: {err}"
        return err
    except Exception:
        if tally is not None:
            tally.add("failures")
        raise
    if tally is not None:
        tally.add("failures")
    pytest.fail(f"{node_type}: expected an execution error naming {words}")


def healthy(run_graph, tiny_sd_checkpoint, seed: int) -> None:
    """A good prompt right after a failure runs normally (fresh seed: the sampler really runs)."""
    g, refs = video_graph(tiny_sd_checkpoint, seed=seed, length=1, width=16, height=16)
    out = run_graph(g, outputs=[refs["ksampler"]])[refs["ksampler"].id]["samples"]
    assert out.shape == (1, 4, 2, 2) and torch.isfinite(out).all()


# -- odd but valid keyframes ---------------------------------------------------------------------------------

KEYFRAMES = {  # name: (test image inputs, width, height, length)
    "37x23_rgb": ({"width": 37, "height": 23}, 32, 16, 2),
    "1x1_rgb": ({"width": 1, "height": 1}, 16, 24, 2),
    "rgba": ({"width": 30, "height": 20, "channels": 4}, 24, 16, 2),
    "greyscale": ({"width": 20, "height": 30, "channels": 1}, 16, 16, 2),
    "greyscale_alpha": ({"width": 17, "height": 19, "channels": 2}, 16, 16, 2),
    "three_keyframes": ({"width": 40, "height": 24, "batch": 3}, 16, 16, 2),
    "length_1": ({"width": 32, "height": 32}, 16, 16, 1),
}


@pytest.mark.parametrize("case", list(KEYFRAMES))
def test_odd_keyframes_sample(run_graph, tiny_sd_checkpoint, test_image_node, tally, case):
    image, width, height, length = KEYFRAMES[case]
    g, refs = video_graph(tiny_sd_checkpoint, image=image, width=width, height=height, length=length, decode=True)
    result = run_graph(g, outputs=[refs["ksampler"], refs["decode"], refs["i2v"]])
    tally.add("inputs")
    videos = image.get("batch", 1)
    latent = result[refs["ksampler"].id]["samples"]
    assert latent.shape == (videos * length, 4, height // 8, width // 8)
    assert torch.isfinite(latent).all()
    frames = result[refs["decode"].id]
    assert frames.shape == (videos * length, height, width, 3)
    hint = result.output(refs["i2v"].id, 0)[0][1]["model_conds"]["mc_hint"].cond
    assert hint.shape == (videos * length, 6, height // 8, width // 8)  # keyframe latent, mask, offset
    if videos > 1:  # one video per keyframe, each with its own keyframe latent
        firsts = [hint[v * length, :4] for v in range(videos)]
        assert all(not torch.equal(firsts[0], other) for other in firsts[1:])
        assert all(torch.equal(hint[v * length, :4], hint[v * length + length - 1, :4]) for v in range(videos))


def test_one_pixel_keyframe_every_resize_and_crop(run_graph, tiny_sd_checkpoint, test_image_node, tally):
    """A 1x1 image is resized with every method and crop mode to a non-square video (one graph, many nodes)."""
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    pos = g.node("CLIPTextEncode", text="x", clip=ckpt.out(1))
    pixel = g.node(test_image_node, width=1, height=1, batch=1, channels=3, seed=3)
    nodes = []
    for method in ("bilinear", "bicubic", "area", "lanczos", "nearest-exact"):
        for crop in ("center", "disabled"):
            nodes.append(g.node(I2V, positive=pos, negative=pos, vae=ckpt.out(2), image=pixel, width=24, height=16,
                                length=1, keyframe_position="center", keyframe_index=0, appearance_strength=1.0,
                                noise_prior_gamma=0.02, crop=crop, frame_rate=8.0, resize_method=method))
    result = run_graph(g, outputs=nodes)
    tally.add("inputs", len(nodes))
    for node in nodes:
        latent = result.output(node.id, 2)["samples"]
        assert latent.shape == (1, 4, 2, 3) and torch.isfinite(latent).all()


@pytest.mark.parametrize("position,index,expected", [("center", 0, 0), ("first", 0, 0), ("last", 0, 0),
                                                     ("index", 0, 0), ("index", -1, 0)])
def test_length_one_keyframe_positions(run_graph, tiny_sd_checkpoint, tally, position, index, expected):
    g, refs = video_graph(tiny_sd_checkpoint, length=1, keyframe_position=position, keyframe_index=index)
    result = run_graph(g, outputs=[refs["i2v"]])
    tally.add("inputs")
    hint = result.output(refs["i2v"].id, 0)[0][1]["model_conds"]["mc_hint"].cond
    assert hint.shape[0] == 1 and hint[0, -2].max().item() == 1.0


# -- widget values: refused before anything runs (HTTP 400 on the server) ------------------------------------

NAN, INF = float("nan"), float("inf")
I2V_BAD = [
    ("width", 0), ("width", -8), ("width", 8200), ("width", 8), ("height", 12),
    ("height", 8192 + 8), ("length", 0), ("length", -1), ("length", 4097), ("length", 10**9),
    ("noise_prior_gamma", -0.01), ("noise_prior_gamma", 1.5), ("noise_prior_gamma", NAN), ("noise_prior_gamma", INF),
    ("noise_prior_gamma", -INF), ("appearance_strength", -1.0), ("appearance_strength", 10.5),
    ("appearance_strength", NAN), ("appearance_strength", INF), ("frame_rate", 0.0), ("frame_rate", NAN),
    ("frame_rate", 500.0), ("keyframe_index", 4097),
    ("keyframe_position", "middle"), ("crop", "top"), ("resize_method", "magic"), ("width", "wide"),
    ("length", "many"), ("noise_prior_gamma", "a lot"),
]
# Rules ComfyUI has no per-input check for (a multiple of 8, the keyframe inside the clip): a validate_inputs
# message would be reported on every input it names (nodes/inputs.py), so these are refused when the node runs,
# before it encodes anything: one execution error naming the node and the input.
I2V_BAD_AT_RUN = [("width", 36), ("height", 20), ("keyframe_index", 2), ("keyframe_index", -3)]


@pytest.mark.parametrize("field,value", I2V_BAD, ids=[f"{f}={v}" for f, v in I2V_BAD])
def test_image_to_video_bad_value_is_a_validation_error(run_graph, tiny_sd_checkpoint, tally, field, value):
    g, refs = video_graph(tiny_sd_checkpoint, keyframe_position="index", keyframe_index=1)
    refs["i2v"].set(**{field: value})
    tally.add("inputs")
    assert_validation_error(run_graph, g, refs["i2v"], field)


@pytest.mark.parametrize("field,value", I2V_BAD_AT_RUN, ids=[f"{f}={v}" for f, v in I2V_BAD_AT_RUN])
def test_image_to_video_bad_value_refused_when_run(run_graph, tiny_sd_checkpoint, tally, field, value):
    g, refs = video_graph(tiny_sd_checkpoint, keyframe_position="index", keyframe_index=1, length=2)
    refs["i2v"].set(**{field: value})
    tally.add("inputs")
    err = assert_execution_error(run_graph, g, I2V, (I2V_NAME, f"'{field}'"), outputs=[refs["i2v"]], tally=tally)
    assert err.exception_message.count("input '") == 1, err.exception_message  # this input only


OTHER_BAD = [
    ("MicroCinemaNoisePrior", "gamma", NAN), ("MicroCinemaNoisePrior", "gamma", 2.0),
    ("MicroCinemaNoisePrior", "gamma", -0.5), ("MicroCinemaNoisePrior", "noise_seed", -1),
    ("MicroCinemaContextWindows", "context_length", 1), ("MicroCinemaContextWindows", "context_length", 257),
    ("MicroCinemaContextWindows", "context_overlap", -1),
    ("MicroCinemaContextWindows", "context_stride", 0), ("MicroCinemaContextWindows", "context_schedule", "random"),
    ("MicroCinemaContextWindows", "fuse_method", "max"),
    ("MicroCinemaApplyModule", "module_name", "missing.safetensors"),
    ("MicroCinemaApplyModule", "motion_module", "missing.ckpt"),
    ("MicroCinemaCheckpointLoader", "ckpt_name", "missing.safetensors"),
]


def _other_node(g: Graph, ckpt, node_type: str):
    if node_type == "MicroCinemaNoisePrior":
        image = g.node("EmptyImage", width=32, height=32, batch_size=1, color=0)
        latent = g.node("VAEEncode", pixels=image, vae=ckpt.out(2))
        return g.node(node_type, noise_seed=1, keyframe=latent, gamma=0.02)
    if node_type == "MicroCinemaContextWindows":
        model = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=NEW_MODULE, motion_module="none")
        return g.node(node_type, model=model, context_length=8, context_overlap=2, context_schedule="static_standard",
                      context_stride=1, closed_loop=False, fuse_method="pyramid", keep_keyframe=True)
    if node_type == "MicroCinemaApplyModule":
        return g.node(node_type, model=ckpt.out(0), module_name=NEW_MODULE, motion_module="none")
    return g.node(node_type, ckpt_name="x.safetensors")


@pytest.mark.parametrize("node_type,field,value", OTHER_BAD, ids=[f"{n}.{f}={v}" for n, f, v in OTHER_BAD])
def test_other_nodes_bad_value_is_a_validation_error(run_graph, tiny_sd_checkpoint, tally, node_type, field, value):
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    node = _other_node(g, ckpt, node_type)
    node.set(**{field: value})
    tally.add("inputs")
    assert_validation_error(run_graph, g, node, field)


def test_context_overlap_not_below_length_refused_when_run(run_graph, tiny_sd_checkpoint, tally):
    """A rule across two inputs (overlap < length): checked when the node runs, reported once on the overlap."""
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    node = _other_node(g, ckpt, "MicroCinemaContextWindows").set(context_overlap=8)
    err = assert_execution_error(run_graph, g, "MicroCinemaContextWindows",
                                 ("MicroCinema Context Windows", "'context_overlap'"), outputs=[node], tally=tally)
    assert "context_length" in str(err)


# -- values that arrive through links are checked when the node runs -------------------------------------------

LINKED = [  # (field, primitive node, value, error expected)
    ("width", "PrimitiveInt", 32, False), ("height", "PrimitiveInt", 24, False), ("length", "PrimitiveInt", 3, False),
    ("noise_prior_gamma", "PrimitiveFloat", 0.05, False), ("appearance_strength", "PrimitiveFloat", 0.5, False),
    ("width", "PrimitiveInt", 36, True), ("height", "PrimitiveInt", 4, True), ("length", "PrimitiveInt", 0, True),
    ("length", "PrimitiveInt", 5000, True), ("keyframe_index", "PrimitiveInt", 7, True),
    ("noise_prior_gamma", "PrimitiveFloat", NAN, True), ("appearance_strength", "PrimitiveFloat", -2.0, True),
    ("frame_rate", "PrimitiveFloat", 0.5, True),
]


@pytest.mark.parametrize("field,primitive,value,bad", LINKED, ids=[f"{f}={v}" for f, _, v, _ in LINKED])
def test_linked_values_are_checked(run_graph, tiny_sd_checkpoint, tally, field, primitive, value, bad):
    """Widget inputs converted to sockets (a Primitive node, a math node...) reach validate_inputs as None; the node
    must still accept good values and refuse bad ones with its own message at execution."""
    g, refs = video_graph(tiny_sd_checkpoint, keyframe_position="index", keyframe_index=1, length=2)
    source = g.node(primitive, value=value)
    refs["i2v"].set(**{field: source.out(0)})
    tally.add("inputs")
    if not bad:
        result = run_graph(g, outputs=[refs["i2v"]])
        assert torch.isfinite(result.output(refs["i2v"].id, 2)["samples"]).all()
        return
    assert_execution_error(run_graph, g, I2V, (I2V_NAME, f"'{field}'"), outputs=[refs["i2v"]], tally=tally)


# -- wrong models and VAEs: execution errors of the node that gets them ---------------------------------------

def test_vae_with_other_latent_channels(run_graph, tiny_sd_checkpoint, taesd16_vae, tally):
    """A 16-channel (Flux/SD3 family) VAE and ComfyUI's 3-channel pixel-space VAE are refused by name."""
    for seed, vae_name in enumerate((taesd16_vae, "pixel_space")):
        g, refs = video_graph(tiny_sd_checkpoint)
        vae = g.node("VAELoader", vae_name=vae_name)
        refs["i2v"].set(vae=vae.out(0))
        tally.add("inputs")
        tally.add("faults")
        assert_execution_error(run_graph, g, I2V, (I2V_NAME, "'vae'"), outputs=[refs["ksampler"]], tally=tally)
        healthy(run_graph, tiny_sd_checkpoint, seed=100 + seed)
        tally.add("prompts")


def test_noise_prior_with_other_latent_channels(run_graph, tiny_sd_checkpoint, taesd16_vae, tally):
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    vae = g.node("VAELoader", vae_name=taesd16_vae)
    image = g.node("EmptyImage", width=32, height=32, batch_size=1, color=0)
    keyframe = g.node("VAEEncode", pixels=image, vae=vae)
    model = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=NEW_MODULE, motion_module="none")
    pos = g.node("CLIPTextEncode", text="x", clip=ckpt.out(1))
    i2v = g.node(I2V, positive=pos, negative=pos, vae=ckpt.out(2), image=image, width=32, height=32, length=2,
                 keyframe_position="center", keyframe_index=0, appearance_strength=1.0, noise_prior_gamma=0.0,
                 crop="center", frame_rate=8.0, resize_method="bilinear")
    noise = g.node("MicroCinemaNoisePrior", noise_seed=1, keyframe=keyframe, gamma=0.02)
    guider = g.node("CFGGuider", model=model, positive=i2v.out(0), negative=i2v.out(1), cfg=2.0)
    sampler = g.node("KSamplerSelect", sampler_name="euler")
    sigmas = g.node("BasicScheduler", model=model, scheduler="normal", steps=1, denoise=1.0)
    custom = g.node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                    latent_image=i2v.out(2))
    tally.add("inputs")
    assert_execution_error(run_graph, g, "SamplerCustomAdvanced", ("MicroCinema Noise Prior", "keyframe"),
                           outputs=[custom], tally=tally)


def test_sdxl_family_base_refused(run_graph, tiny_sd_checkpoint, koala_checkpoint, tiny_module, tally):
    """An SDXL-family UNet (KOALA-700M layout, detected by ComfyUI as such) given to Apply Module, with a new module
    and with a module file: an error naming 'model' and SDXL's latent format, then the next prompt runs."""
    from harness.reliability import detected_model_config

    import folder_paths

    config = detected_model_config(folder_paths.get_full_path_or_raise("checkpoints", koala_checkpoint))
    assert type(config).__name__ == "KOALA_700M"
    _, module_file = tiny_module
    for seed, module_name in enumerate((NEW_MODULE, module_file)):
        g = Graph()
        koala = g.node("CheckpointLoaderSimple", ckpt_name=koala_checkpoint)
        apply = g.node("MicroCinemaApplyModule", model=koala.out(0), module_name=module_name, motion_module="none")
        tally.add("inputs")
        err = assert_execution_error(run_graph, g, "MicroCinemaApplyModule",
                                     ("MicroCinema Apply Module", "'model'", "SDXL"), outputs=[apply], tally=tally)
        assert "SD1.x or SD2.x" in err.exception_message
        healthy(run_graph, tiny_sd_checkpoint, seed=200 + seed)
        tally.add("prompts")


def test_inpainting_base_refused(run_graph, tiny_sd_checkpoint, inpaint_checkpoint, tally):
    g = Graph()
    base = g.node("CheckpointLoaderSimple", ckpt_name=inpaint_checkpoint)
    apply = g.node("MicroCinemaApplyModule", model=base.out(0), module_name=NEW_MODULE, motion_module="none")
    tally.add("inputs")
    err = assert_execution_error(run_graph, g, "MicroCinemaApplyModule", ("MicroCinema Apply Module", "'model'"),
                                 outputs=[apply], tally=tally)
    assert "9 input channels" in err.exception_message


# -- conditioning and latents that did not come from Image To Video -----------------------------------------------

def test_conditioning_without_appearance(run_graph, tiny_sd_checkpoint, tally):
    """negative (or positive) straight from CLIPTextEncode: the KSampler error names it and the node to use."""
    for seed, which in enumerate(("negative", "positive", "both")):
        g, refs = video_graph(tiny_sd_checkpoint, seed=300 + seed)
        bare = refs["neg"].out(0)
        if which in ("negative", "both"):
            refs["ksampler"].set(negative=bare)
        if which in ("positive", "both"):
            refs["ksampler"].set(positive=bare)
        tally.add("inputs")
        expected = ("negative", "positive") if which == "both" else (which,)
        assert_execution_error(run_graph, g, "KSampler", (*expected, I2V_NAME), outputs=[refs["ksampler"]],
                               tally=tally)
    healthy(run_graph, tiny_sd_checkpoint, seed=310)
    tally.add("prompts")


@pytest.mark.parametrize("batch,size", [(3, 32), (2, 64)], ids=["wrong_frame_count", "wrong_size"])
def test_latent_not_from_image_to_video(run_graph, tiny_sd_checkpoint, tally, batch, size):
    g, refs = video_graph(tiny_sd_checkpoint, length=2, seed=400 + batch)
    empty = g.node("EmptyLatentImage", width=size, height=size, batch_size=batch)
    refs["ksampler"].set(latent_image=empty.out(0))
    tally.add("inputs")
    assert_execution_error(run_graph, g, "KSampler", ("latent_image", I2V_NAME), outputs=[refs["ksampler"]],
                           tally=tally)


def test_non_finite_keyframe_pixels(run_graph, tiny_sd_checkpoint, test_image_node, tally):
    """A keyframe with NaN pixels (a broken upstream node) is refused by name, not turned into a NaN video."""
    g, refs = video_graph(tiny_sd_checkpoint, image={"width": 16, "height": 16})
    bad = g.node("ImageBlend", image1=refs["image"], image2=refs["image"], blend_factor=math.nan, blend_mode="normal")
    refs["i2v"].set(image=bad.out(0))
    tally.add("inputs")
    try:
        run_graph(g, outputs=[refs["i2v"]])
    except GraphValidationError as err:  # ComfyUI itself may refuse the NaN blend factor
        assert "blend_factor" in str(err)
        return
    except GraphExecutionError as err:
        assert err.node_type == I2V and "'image'" in (err.exception_message or ""), err
        return
    pytest.fail("NaN keyframe pixels were accepted")


def test_empty_image_batch(run_graph, tiny_sd_checkpoint, test_image_node, tally):
    g, refs = video_graph(tiny_sd_checkpoint, image={"batch": 0})
    tally.add("inputs")
    assert_execution_error(run_graph, g, I2V, (I2V_NAME, "'image'"), outputs=[refs["i2v"]], tally=tally)


# -- MicroCinema Sampler (all of stage 2 in one node) ------------------------------------------------------------

SAMPLER_BAD = [("width", 0), ("length", 0), ("noise_prior_gamma", NAN), ("appearance_strength", INF),
               ("frame_rate", NAN), ("cfg", NAN), ("cfg", 101.0), ("steps", 0), ("sampler_name", "nope"),
               ("scheduler", "nope"), ("keyframe_position", "middle")]


def sampler_graph(ckpt_name: str, **changes):
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=ckpt_name)
    model = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=NEW_MODULE, motion_module="none")
    pos = g.node("CLIPTextEncode", text="a ball", clip=ckpt.out(1))
    image = g.node("EmptyImage", width=32, height=32, batch_size=1, color=0x3080C0)
    inputs = dict(model=model, positive=pos, negative=pos, vae=ckpt.out(2), image=image, width=16, height=16,
                  length=2, seed=1, steps=1, cfg=2.0, sampler_name="euler", scheduler="normal",
                  keyframe_position="center", keyframe_index=0, appearance_strength=1.0, noise_prior_gamma=0.02,
                  frame_rate=8.0)
    inputs.update(changes)
    return g, g.node("MicroCinemaSampler", **inputs)


@pytest.mark.parametrize("field,value", SAMPLER_BAD, ids=[f"{f}={v}" for f, v in SAMPLER_BAD])
def test_sampler_node_bad_value_is_a_validation_error(run_graph, tiny_sd_checkpoint, tally, field, value):
    g, node = sampler_graph(tiny_sd_checkpoint, **{field: value})
    tally.add("inputs")
    assert_validation_error(run_graph, g, node, field)


@pytest.mark.parametrize("field,primitive,value", [("noise_prior_gamma", "PrimitiveFloat", NAN),
                                                   ("cfg", "PrimitiveFloat", NAN), ("width", "PrimitiveInt", 20),
                                                   ("width", None, 36)])
def test_sampler_node_linked_bad_value(run_graph, tiny_sd_checkpoint, tally, field, primitive, value):
    g, node = sampler_graph(tiny_sd_checkpoint)
    node.set(**{field: g.node(primitive, value=value).out(0) if primitive else value})  # None: a widget value
    tally.add("inputs")
    assert_execution_error(run_graph, g, "MicroCinemaSampler", ("MicroCinema Sampler", f"'{field}'"),
                           outputs=[node], tally=tally)
