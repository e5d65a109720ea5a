"""Builds the example workflows of ComfyUI-MicroCinema, both forms, from one Python description each.

    python workflows/build_workflows.py            # (re)write every workflow file
    python workflows/build_workflows.py --check    # exit 1 when a committed file differs from what this builds
    python workflows/build_workflows.py --refresh-specs OBJECT_INFO.json   # update workflows/spec/node_specs.json

Outputs (see docs/workflows.md):
    example_workflows/<name>.json      UI form: what ComfyUI's template browser lists and users drag into the page
    workflows/api/<name>.api.json      API form: what POST /prompt takes (scripts, CI, scripts/run_demo.py)

No top-level .json file may live in workflows/: ComfyUI lists every *.json of a pack's example_workflows/,
example/, examples/, workflow/ AND workflows/ folder as a template, so API forms or copies there would show up in
the template browser as duplicates or as templates that cannot load.

The UI form needs each node's widget values in the exact order the front end creates widgets: the node's inputs
in /object_info ``input_order`` (required, then optional), skipping sockets (MODEL, IMAGE...), plus the extra
values the front end adds itself: a "control after generate" value after every INT input whose options have
``control_after_generate`` and an "image" value for the upload button after combos with ``image_upload``. That
order and the socket types come from ``workflows/spec/node_specs.json``, a trimmed copy of /object_info for the
node types used here; tests/test_workflows.py checks it against the live ComfyUI and checks that the UI form,
converted back with the live /object_info, gives exactly the API form.

Only the standard library is used: this file runs without ComfyUI.
"""
from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SPECS_PATH = HERE / "spec" / "node_specs.json"
API_DIR = HERE / "api"
UI_DIR = REPO / "example_workflows"
EXAMPLE_KEYFRAME = "microcinema_example_keyframe.png"  # shipped in example_workflows/, copied to ComfyUI/input

# Model file names every workflow uses (docs/workflows.md says where they go).
DEMO_CHECKPOINT = "microcinema_demo_sd15.safetensors"  # models/checkpoints
DEMO_MODULE = "microcinema_demo_module.safetensors"  # models/microcinema
DEMO_CONTROLNET = "microcinema_demo_controlnet.safetensors"  # models/controlnet
DEMO_UPSCALER = "microcinema_demo_x2.safetensors"  # models/upscale_models

# Shipped sizes: the demo model's (64x64, 8-frame clips), seconds on a CPU. Raise them for real models
# (256x256 or 512x512, 16 frames, 20-30 steps).
WIDTH, HEIGHT, LENGTH, STEPS, FPS = 64, 64, 8, 12, 8.0
CFG = 5.0  # what the demo model likes; 6-8 is usual for real SD1.5 models
LONG_LENGTH = 32  # the long-video workflow: 4x the trained clip length

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
VIRTUAL_NODES = {"Note", "MarkdownNote"}  # front-end only: in the UI form, never in the API form
SPEC_OPTION_KEYS = ("default", "control_after_generate", "image_upload", "forceInput")


# -- node specs (a trimmed /object_info) ---------------------------------------------------------------------
def trim_object_info(info: dict) -> dict:
    """What the builder needs of one /object_info entry: input order and kinds, outputs, display name."""
    inputs = []
    order = info.get("input_order") or {s: list(info["input"].get(s, {})) for s in ("required", "optional")}
    for section in ("required", "optional"):
        for name in order.get(section, []):
            spec = info["input"][section][name]
            kind = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            entry = {"name": name, "section": section, "type": "COMBO" if isinstance(kind, list) else kind}
            entry.update({k: opts[k] for k in SPEC_OPTION_KEYS if k in opts})
            inputs.append(entry)
    outputs = [{"name": n, "type": t} for n, t in zip(info.get("output_name") or info["output"], info["output"])]
    return {"display_name": info.get("display_name", info.get("name")), "output_node": bool(info.get("output_node")),
            "inputs": inputs, "outputs": outputs}


def is_widget(inp: dict) -> bool:
    return inp["type"] in WIDGET_TYPES and not inp.get("forceInput")


def load_specs(path: Path = SPECS_PATH) -> dict[str, dict]:
    return json.loads(path.read_text())


# -- workflow description ---------------------------------------------------------------------------------
@dataclass
class Node:
    id: int
    type: str
    col: int  # layout column (nodes of a column stack downwards in id order)
    widgets: dict[str, Any] = field(default_factory=dict)  # widget input -> value
    links: dict[str, tuple[int, int]] = field(default_factory=dict)  # input -> (source node id, output index)
    title: str | None = None
    control: str = "fixed"  # "control after generate" of seed inputs: fixed keeps the documented output
    extra_height: int = 0  # room for text boxes and previews
    width: int = 320


@dataclass
class Group:
    title: str
    cols: tuple[int, ...]
    color: str = "#3f789e"


@dataclass
class Workflow:
    name: str
    title: str
    description: str  # MarkdownNote text shown above the graph
    nodes: list[Node]
    groups: list[Group]
    thumbnail_steps: list[str]  # pipeline boxes drawn on the template-browser thumbnail


def L(node_id: int, index: int = 0) -> tuple[int, int]:
    return (node_id, index)


# Shared pieces ----------------------------------------------------------------------------------------------
# The demo model knows the captions of its synthetic training videos ("a <colour> <shape> moving <direction>") and
# was trained with "" as the unconditional text; with a real model write real prompts and negatives.
KEYFRAME_PROMPT = "a red circle moving left"
KEYFRAME_NEGATIVE = ""
MOTION_PROMPT = "a red circle moving left"
MOTION_NEGATIVE = ""
IMAGE_MOTION_PROMPT = "a yellow triangle moving up"  # matches the example keyframe picture


def stage1_text_to_image() -> list[Node]:
    return [
        Node(1, "CheckpointLoaderSimple", 0, {"ckpt_name": DEMO_CHECKPOINT}),
        Node(2, "CLIPTextEncode", 1, {"text": KEYFRAME_PROMPT}, {"clip": L(1, 1)}, title="Keyframe prompt",
             extra_height=90, width=400),
        Node(3, "CLIPTextEncode", 1, {"text": KEYFRAME_NEGATIVE}, {"clip": L(1, 1)}, title="Keyframe negative prompt",
             extra_height=60, width=400),
        Node(4, "EmptyLatentImage", 1, {"width": WIDTH, "height": HEIGHT, "batch_size": 1}, width=400),
        Node(5, "KSampler", 2, {"seed": 42, "steps": STEPS, "cfg": CFG, "sampler_name": "euler",
                                "scheduler": "normal", "denoise": 1.0},
             {"model": L(1, 0), "positive": L(2), "negative": L(3), "latent_image": L(4)}, title="KSampler (keyframe)"),
        Node(6, "VAEDecode", 2, {}, {"samples": L(5), "vae": L(1, 2)}),
        Node(7, "PreviewImage", 2, {}, {"images": L(6)}, title="Keyframe", extra_height=220),
    ]


def stage2(col: int, keyframe: tuple[int, int], *, i2v_id: int = 13, position: str = "center",
           positive_override: tuple[int, int] | None = None, negative_override: tuple[int, int] | None = None,
           with_text: bool = True, sampler_id: int = 14, decode_id: int = 15, seed: int = 7,
           i2v_title: str | None = None, length: int | None = None,
           sampler_model: tuple[int, int] | None = None, motion_prompt: str = MOTION_PROMPT) -> list[Node]:
    """Apply Module + motion prompts + MicroCinema Image To Video + KSampler + VAE Decode (frames)."""
    nodes = []
    if with_text:
        nodes += [
            Node(10, "MicroCinemaApplyModule", col, {"module_name": DEMO_MODULE, "motion_module": "none"},
                 {"model": L(1, 0)}),
            Node(11, "CLIPTextEncode", col, {"text": motion_prompt}, {"clip": L(1, 1)}, title="Motion prompt",
                 extra_height=90, width=400),
            Node(12, "CLIPTextEncode", col, {"text": MOTION_NEGATIVE}, {"clip": L(1, 1)},
                 title="Motion negative prompt", extra_height=60, width=400),
        ]
    nodes += [
        Node(i2v_id, "MicroCinemaImageToVideo", col + 1,
             {"width": WIDTH, "height": HEIGHT, "length": length or LENGTH, "keyframe_position": position, "keyframe_index": 0,
              "appearance_strength": 1.0, "noise_prior_gamma": 0.02, "crop": "center", "frame_rate": FPS,
              "resize_method": "bilinear"},
             {"positive": L(11), "negative": L(12), "vae": L(1, 2), "image": keyframe}, title=i2v_title),
        Node(sampler_id, "KSampler", col + 2, {"seed": seed, "steps": STEPS, "cfg": CFG, "sampler_name": "euler",
                                               "scheduler": "normal", "denoise": 1.0},
             {"model": sampler_model or L(10), "positive": positive_override or L(i2v_id, 0),
              "negative": negative_override or L(i2v_id, 1), "latent_image": L(i2v_id, 2)},
             title="KSampler (video)"),
        Node(decode_id, "VAEDecode", col + 2, {}, {"samples": L(sampler_id), "vae": L(1, 2)}, title="VAE Decode (frames)"),
    ]
    return nodes


def savers(col: int, frames: tuple[int, int], fps: tuple[int, int], prefix: str, first_id: int = 20) -> list[Node]:
    """CreateVideo -> SaveVideo (mp4, workflow embedded) and SaveAnimatedWEBP, both at the clip's frame rate."""
    return [
        Node(first_id, "CreateVideo", col, {"fps": FPS}, {"images": frames, "fps": fps}),
        Node(first_id + 1, "SaveVideo", col, {"filename_prefix": f"microcinema/{prefix}", "format": "mp4",
                                              "codec": "h264"}, {"video": L(first_id)}, extra_height=250),
        Node(first_id + 2, "SaveAnimatedWEBP", col, {"filename_prefix": f"microcinema/{prefix}", "fps": FPS,
                                                     "lossless": False, "quality": 85, "method": "default"},
             {"images": frames, "fps": fps}, extra_height=250),
    ]


MODELS_NOTE = (
    "**Prompts**: the demo model was trained on synthetic videos captioned \"a <colour> <shape> moving "
    "<direction>\" (red/green/blue/yellow/white; circle/square/triangle; left/right/up/down) with an empty "
    "negative. With a real model, write real prompts.\n\n"
    "**Models** (demo names; pick your own in the loaders):\n"
    f"- `models/checkpoints/{DEMO_CHECKPOINT}`: any SD1.5 checkpoint (stage 1 and the base of stage 2)\n"
    f"- `models/microcinema/{DEMO_MODULE}`: a MicroCinema module\n"
)
SIZES_NOTE = (
    f"\nShipped sizes ({WIDTH}x{HEIGHT}, {LENGTH} frames, {STEPS} steps) are for the tiny demo model on a CPU: "
    "with a real model use 256x256 or 512x512, 16 frames and 20-30 steps."
)


def text_to_video() -> Workflow:
    nodes = stage1_text_to_image() + stage2(3, L(6)) + savers(6, L(15), L(13, 3), "text_to_video")
    return Workflow(
        "text_to_video", "MicroCinema: text -> image -> video",
        "## MicroCinema: text -> image -> video\nStage 1 makes a keyframe from the keyframe prompt with any SD "
        "text-to-image graph. Stage 2 (MicroCinema Apply Module + Image To Video + the stock KSampler) animates it "
        "with the motion prompt. Frames are saved as mp4 (workflow embedded) and animated WebP at the clip's frame "
        "rate.\n\n" + MODELS_NOTE + SIZES_NOTE,
        nodes,
        [Group("Stage 1: keyframe from text", (0, 1, 2)),
         Group("Stage 2: MicroCinema animates the keyframe", (3, 4, 5), "#8a5aa8"),
         Group("Save", (6,), "#3f8a5a")],
        ["text", "keyframe", "MicroCinema", "video"])


def image_to_video() -> Workflow:
    nodes = [Node(1, "CheckpointLoaderSimple", 0, {"ckpt_name": DEMO_CHECKPOINT}),
             Node(2, "LoadImage", 0, {"image": EXAMPLE_KEYFRAME}, title="Keyframe image", extra_height=240)]
    nodes += stage2(1, L(2), motion_prompt=IMAGE_MOTION_PROMPT) + savers(4, L(15), L(13, 3), "image_to_video")
    return Workflow(
        "image_to_video", "MicroCinema: image -> video",
        "## MicroCinema: image -> video\nAnimates a picture you load (any size: it is resized and centre-cropped "
        f"to the video size) with the motion prompt. The example picture `{EXAMPLE_KEYFRAME}` ships in the pack's "
        "example_workflows/ folder: copy it into ComfyUI/input/ or pick your own image.\n\n" + MODELS_NOTE + SIZES_NOTE,
        nodes,
        [Group("Keyframe", (0,)), Group("MicroCinema animates the keyframe", (1, 2, 3), "#8a5aa8"),
         Group("Save", (4,), "#3f8a5a")],
        ["image", "MicroCinema", "video"])


def controlnet_per_frame() -> Workflow:
    nodes = stage1_text_to_image()
    nodes += [
        Node(30, "RepeatImageBatch", 3, {"amount": LENGTH}, {"image": L(6)}, title="Repeat keyframe (one per frame)"),
        Node(31, "Canny", 3, {"low_threshold": 0.4, "high_threshold": 0.8}, {"image": L(30)}, title="Canny (hint frames)"),
        Node(32, "PreviewImage", 3, {}, {"images": L(31)}, title="Hint frames", extra_height=200),
        Node(33, "ControlNetLoader", 4, {"control_net_name": DEMO_CONTROLNET}),
        Node(34, "ControlNetApplyAdvanced", 6, {"strength": 0.8, "start_percent": 0.0, "end_percent": 1.0},
             {"positive": L(13, 0), "negative": L(13, 1), "control_net": L(33), "image": L(31)}),
    ]
    nodes += stage2(4, L(6), positive_override=L(34, 0), negative_override=L(34, 1))
    # the sampler and decoder go after Apply ControlNet
    for node in nodes:
        if node.id in (14, 15):
            node.col = 7
    nodes += savers(8, L(15), L(13, 3), "controlnet_per_frame")
    return Workflow(
        "controlnet_per_frame", "MicroCinema: ControlNet per frame",
        "## MicroCinema with ControlNet, one hint per frame\nThe stock Apply ControlNet (Advanced) takes an IMAGE "
        "batch with one hint per video frame (a single hint image is used for every frame). Here the hint frames "
        "are Canny edges of the keyframe repeated once per frame; any batch of N images works (N = length).\n\n"
        + MODELS_NOTE + f"- `models/controlnet/{DEMO_CONTROLNET}`: an SD1.5 ControlNet (e.g. canny)\n" + SIZES_NOTE,
        nodes,
        [Group("Stage 1: keyframe from text", (0, 1, 2)),
         Group("Hint frames", (3,), "#a88a3f"),
         Group("Stage 2: MicroCinema + ControlNet", (4, 5, 6, 7), "#8a5aa8"),
         Group("Save", (8,), "#3f8a5a")],
        ["text", "keyframe", "hint frames", "MicroCinema", "video"])


def upscaled_video() -> Workflow:
    nodes = stage1_text_to_image() + stage2(3, L(6))
    nodes += [
        Node(30, "UpscaleModelLoader", 6, {"model_name": DEMO_UPSCALER}),
        Node(31, "ImageUpscaleWithModel", 6, {}, {"upscale_model": L(30), "image": L(15)}, title="Upscale frames"),
    ]
    nodes += savers(7, L(31), L(13, 3), "upscaled_video")
    return Workflow(
        "upscaled_video", "MicroCinema: upscaled video",
        "## MicroCinema video, upscaled frame by frame\nThe decoded frames are an ordinary IMAGE batch, so any "
        "upscale model (ESRGAN, Real-ESRGAN, ...) works through the stock Upscale Image (using Model) node before "
        "saving.\n\n" + MODELS_NOTE + f"- `models/upscale_models/{DEMO_UPSCALER}`: any 2x/4x upscale model\n"
        + SIZES_NOTE,
        nodes,
        [Group("Stage 1: keyframe from text", (0, 1, 2)),
         Group("Stage 2: MicroCinema animates the keyframe", (3, 4, 5), "#8a5aa8"),
         Group("Upscale", (6,), "#a88a3f"),
         Group("Save", (7,), "#3f8a5a")],
        ["text", "keyframe", "MicroCinema", "upscale", "video"])


def keyframe_first_last() -> Workflow:
    nodes = stage1_text_to_image()
    nodes += stage2(3, L(6), position="first", i2v_title="Image To Video (keyframe first)")
    nodes += stage2(3, L(6), position="last", with_text=False, i2v_id=16, sampler_id=17, decode_id=18, seed=7,
                    i2v_title="Image To Video (keyframe last)")
    nodes += savers(6, L(15), L(13, 3), "keyframe_first", first_id=20)
    nodes += savers(7, L(18), L(16, 3), "keyframe_last", first_id=23)
    return Workflow(
        "keyframe_first_last", "MicroCinema: keyframe first / last",
        "## MicroCinema: the keyframe as first or as last frame\nThe same keyframe and prompts in two branches: "
        "`keyframe_position` first (the clip starts at the keyframe) and last (the clip ends at it). `center` is "
        "what the model is trained for; `index` picks any frame.\n\n" + MODELS_NOTE + SIZES_NOTE,
        nodes,
        [Group("Stage 1: keyframe from text", (0, 1, 2)),
         Group("Stage 2: keyframe first (top) and last (bottom)", (3, 4, 5), "#8a5aa8"),
         Group("Save: keyframe first", (6,), "#3f8a5a"),
         Group("Save: keyframe last", (7,), "#3f8a5a")],
        ["text", "keyframe", "MicroCinema", "first / last"])


def long_video() -> Workflow:
    nodes = stage1_text_to_image()
    nodes += stage2(3, L(6), length=LONG_LENGTH, sampler_model=L(40), i2v_title=f"Image To Video ({LONG_LENGTH} frames)")
    nodes += [Node(40, "MicroCinemaContextWindows", 4,
                   {"context_length": LENGTH, "context_overlap": LENGTH // 4, "context_schedule": "static_standard",
                    "context_stride": 1, "closed_loop": False, "fuse_method": "pyramid", "keep_keyframe": True},
                   {"model": L(10)}, title="Context Windows (long video)")]
    nodes += savers(6, L(15), L(13, 3), "long_video")
    return Workflow(
        "long_video", "MicroCinema: long video (context windows)",
        f"## MicroCinema: a long video in sliding context windows\nThe video ({LONG_LENGTH} frames here) is longer "
        f"than the clips the model was trained on ({LENGTH}). MicroCinema Context Windows makes the model denoise "
        "overlapping windows of `context_length` frames and blend them (`fuse_method`), with the keyframe frame "
        "in every window (`keep_keyframe`) so the appearance reaches all of them. Memory then grows with the window, "
        "not with the video. Schedules: static (fixed windows), uniform (shifting every step, optionally with "
        "strides and a closed loop).\n\n" + MODELS_NOTE + SIZES_NOTE,
        nodes,
        [Group("Stage 1: keyframe from text", (0, 1, 2)),
         Group("Stage 2: MicroCinema in context windows", (3, 4, 5), "#8a5aa8"),
         Group("Save", (6,), "#3f8a5a")],
        ["text", "keyframe", "context windows", "MicroCinema", f"{LONG_LENGTH} frames"])


# Order matters only for speed: run one after another in one ComfyUI, each reuses the cached nodes it shares
# with the one before (same stage 1, same stage 2).
WORKFLOWS = [text_to_video, upscaled_video, controlnet_per_frame, keyframe_first_last, image_to_video, long_video]


# -- building ---------------------------------------------------------------------------------------------
class WorkflowError(ValueError):
    pass


def _node_inputs(node: Node, spec: dict) -> tuple[list[dict], list[dict]]:
    sockets = [i for i in spec["inputs"] if not is_widget(i)]
    widgets = [i for i in spec["inputs"] if is_widget(i)]
    known = {i["name"] for i in spec["inputs"]}
    for name in list(node.widgets) + list(node.links):
        if name not in known:
            raise WorkflowError(f"node {node.id} ({node.type}) has no input {name!r}")
    for inp in sockets:
        if inp["section"] == "required" and inp["name"] not in node.links:
            raise WorkflowError(f"node {node.id} ({node.type}): required input {inp['name']!r} is not connected")
    for inp in widgets:
        if inp["name"] not in node.widgets and inp["name"] not in node.links:
            raise WorkflowError(f"node {node.id} ({node.type}): widget {inp['name']!r} has no value")
    return sockets, widgets


def widget_values(node: Node, spec: dict) -> list:
    """widgets_values in the front end's order (control-after-generate and upload values included)."""
    _, widgets = _node_inputs(node, spec)
    values = []
    for inp in widgets:
        value = node.widgets.get(inp["name"], inp.get("default"))
        values.append(value)
        if inp.get("control_after_generate"):
            values.append(node.control)
        if inp.get("image_upload"):
            values.append("image")
    return values


def api_form(wf: Workflow, specs: dict) -> dict:
    prompt = {}
    for node in sorted(wf.nodes, key=lambda n: n.id):
        if node.type in VIRTUAL_NODES:
            continue
        spec = specs[node.type]
        _node_inputs(node, spec)
        inputs = {}
        for inp in spec["inputs"]:
            name = inp["name"]
            if name in node.links:
                src, index = node.links[name]
                inputs[name] = [str(src), index]
            elif is_widget(inp):
                inputs[name] = node.widgets[name]
        prompt[str(node.id)] = {"inputs": inputs, "class_type": node.type,
                                "_meta": {"title": node.title or spec["display_name"]}}
    return prompt


def _topological_order(nodes: list[Node]) -> dict[int, int]:
    deps = {n.id: {src for src, _ in n.links.values()} for n in nodes}
    order, done = {}, set()
    while len(done) < len(nodes):
        ready = sorted(i for i, d in deps.items() if i not in done and d <= done)
        if not ready:
            raise WorkflowError("the graph has a cycle")
        for i in ready:
            order[i] = len(order)
            done.add(i)
    return order


SLOT_H, WIDGET_H, BODY_PAD, TITLE_H = 20, 24, 14, 30
COL_GAP, ROW_GAP = 60, 50


def _node_height(node: Node, spec: dict) -> int:
    sockets, widgets = _node_inputs(node, spec)
    rows = len(widgets) + sum(1 for i in widgets if i.get("control_after_generate") or i.get("image_upload"))
    return SLOT_H * max(len(sockets), len(spec["outputs"])) + WIDGET_H * rows + BODY_PAD + node.extra_height


def _layout(wf: Workflow, specs: dict) -> dict[int, tuple[list[float], list[float]]]:
    cols = sorted({n.col for n in wf.nodes})
    widths = {c: max(n.width for n in wf.nodes if n.col == c) for c in cols}
    x, xs = 0.0, {}
    for c in cols:
        xs[c] = x
        x += widths[c] + COL_GAP
    placed = {}
    for c in cols:
        y = 0.0
        for node in sorted((n for n in wf.nodes if n.col == c), key=lambda n: n.id):
            h = _node_height(node, specs[node.type])
            placed[node.id] = ([xs[c], y], [float(node.width), float(h)])
            y += h + TITLE_H + ROW_GAP
    return placed


def ui_form(wf: Workflow, specs: dict) -> dict:
    placed = _layout(wf, specs)
    order = _topological_order(wf.nodes)
    links, link_ids = [], {}
    for node in sorted(wf.nodes, key=lambda n: n.id):
        spec = specs[node.type]
        for inp in spec["inputs"]:
            if inp["name"] in node.links:
                src, index = node.links[inp["name"]]
                src_type = specs[next(n.type for n in wf.nodes if n.id == src)]["outputs"][index]["type"]
                link_id = len(links) + 1
                link_ids[(node.id, inp["name"])] = link_id
                target_slot = _ui_input_names(spec).index(inp["name"])
                links.append([link_id, src, index, node.id, target_slot, src_type])
    nodes = []
    for node in sorted(wf.nodes, key=lambda n: n.id):
        spec = specs[node.type]
        sockets, widgets = _node_inputs(node, spec)
        inputs = []
        for inp in sockets + widgets:
            entry = {"name": inp["name"], "localized_name": inp["name"], "type": inp["type"]}
            if is_widget(inp):
                entry["widget"] = {"name": inp["name"]}
            if inp["section"] == "optional" and not is_widget(inp):
                entry["shape"] = 7  # the front end draws optional sockets hollow
            entry["link"] = link_ids.get((node.id, inp["name"]))
            inputs.append(entry)
        outputs = []
        for index, out in enumerate(spec["outputs"]):
            out_links = [l[0] for l in links if l[1] == node.id and l[2] == index]
            outputs.append({"name": out["name"], "localized_name": out["name"], "type": out["type"],
                            "slot_index": index, "links": out_links})
        pos, size = placed[node.id]
        entry = {"id": node.id, "type": node.type, "pos": pos, "size": size, "flags": {}, "order": order[node.id],
                 "mode": 0, "inputs": inputs, "outputs": outputs,
                 "properties": {"Node name for S&R": node.type}, "widgets_values": widget_values(node, spec)}
        if node.title:
            entry["title"] = node.title
        nodes.append(entry)

    groups = []
    for gi, group in enumerate(wf.groups, start=1):
        members = [placed[n.id] for n in wf.nodes if n.col in group.cols]
        x0 = min(p[0] for p, _ in members) - 20
        y0 = min(p[1] for p, _ in members) - TITLE_H - 50
        x1 = max(p[0] + s[0] for p, s in members) + 20
        y1 = max(p[1] + s[1] for p, s in members) + 20
        groups.append({"id": gi, "title": group.title, "bounding": [x0, y0, x1 - x0, y1 - y0], "color": group.color,
                       "font_size": 24, "flags": {}})
    # the description as a Markdown note above the graph
    top = min(g["bounding"][1] for g in groups) if groups else 0.0
    note_id = max(n.id for n in wf.nodes) + 1
    nodes.append({"id": note_id, "type": "MarkdownNote", "pos": [0.0, top - 330.0], "size": [900.0, 280.0],
                  "flags": {}, "order": len(nodes), "mode": 0, "inputs": [], "outputs": [],
                  "properties": {}, "widgets_values": [wf.description], "title": "About this workflow",
                  "color": "#432", "bgcolor": "#653"})
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://github.com/ComfyUI-MicroCinema/{wf.name}")),
        "revision": 0,
        "last_node_id": note_id,
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": groups,
        "config": {},
        "extra": {"ds": _initial_view(nodes, groups),
                  "microcinema": {"workflow": wf.name, "title": wf.title, "api_form": f"workflows/api/{wf.name}.api.json"}},
        "version": 0.4,
    }


def _initial_view(nodes: list[dict], groups: list[dict]) -> dict:
    """Canvas scale/offset that shows as much of the graph as fits a ~1500x850 px canvas right of the side bar,
    from its top-left corner, but never below 0.65: under 0.6 the front end draws nodes without text
    (LiteGraph: screen = (graph + offset) * scale)."""
    boxes = [(n["pos"][0], n["pos"][1] - TITLE_H, n["size"][0], n["size"][1] + TITLE_H) for n in nodes]
    boxes += [tuple(g["bounding"]) for g in groups]
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    scale = round(max(0.65, min(1.0, 1450 / (x1 - x0), 820 / (y1 - y0))), 2)
    return {"scale": scale, "offset": [round(80 / scale - x0, 1), round(110 / scale - y0, 1)]}


def _ui_input_names(spec: dict) -> list[str]:
    """Slot order of a node's inputs as the front end builds it: sockets first, then widget inputs."""
    return [i["name"] for i in spec["inputs"] if not is_widget(i)] + [i["name"] for i in spec["inputs"] if is_widget(i)]


def build_all(specs: dict | None = None) -> dict[str, dict]:
    """{name: {"ui": ..., "api": ..., "workflow": Workflow}} for every shipped workflow."""
    specs = specs or load_specs()
    out = {}
    for make in WORKFLOWS:
        wf = make()
        ids = [n.id for n in wf.nodes]
        if len(ids) != len(set(ids)):
            raise WorkflowError(f"{wf.name}: node ids are not unique")
        for node in wf.nodes:
            if node.type not in specs:
                raise WorkflowError(f"{wf.name}: no spec for {node.type}: run --refresh-specs")
            for src, index in node.links.values():
                src_node = next((n for n in wf.nodes if n.id == src), None)
                if src_node is None or index >= len(specs[src_node.type]["outputs"]):
                    raise WorkflowError(f"{wf.name}: node {node.id} links to a missing output {src}:{index}")
        out[wf.name] = {"ui": ui_form(wf, specs), "api": api_form(wf, specs), "workflow": wf}
    return out


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def paths(name: str) -> tuple[Path, Path]:
    return UI_DIR / f"{name}.json", API_DIR / f"{name}.api.json"


def write_all(built: dict[str, dict]) -> list[Path]:
    written = []
    for name, forms in built.items():
        ui_path, api_path = paths(name)
        for path, data in ((ui_path, forms["ui"]), (api_path, forms["api"])):
            path.parent.mkdir(parents=True, exist_ok=True)
            text = dumps(data)
            if not path.is_file() or path.read_text() != text:
                path.write_text(text)
                written.append(path)
    return written


def stale_files(built: dict[str, dict]) -> list[Path]:
    stale = []
    for name, forms in built.items():
        for path, data in zip(paths(name), (forms["ui"], forms["api"])):
            if not path.is_file() or path.read_text() != dumps(data):
                stale.append(path)
    return stale


def refresh_specs(object_info_path: Path) -> None:
    object_info = json.loads(object_info_path.read_text())
    used = sorted({n.type for make in WORKFLOWS for n in make().nodes} - VIRTUAL_NODES)
    missing = [t for t in used if t not in object_info]
    if missing:
        raise SystemExit(f"{object_info_path} lacks {missing}")
    SPECS_PATH.parent.mkdir(parents=True, exist_ok=True)
    SPECS_PATH.write_text(dumps({t: trim_object_info(object_info[t]) for t in used}))
    print(f"wrote {SPECS_PATH}")


# -- thumbnails (template browser: example_workflows/<name>.jpg) -----------------------------------------------
THUMB_SIZE = (512, 384)


def render_thumbnail(wf: Workflow, frames: list | None = None):
    """A 512x384 card: title, the pipeline as boxes, and a strip of real output frames (PIL images)."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = THUMB_SIZE
    card = Image.new("RGB", (w, h), (24, 26, 33))
    draw = ImageDraw.Draw(card)

    def font(size):
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1
            return ImageFont.load_default()

    draw.text((20, 18), "MicroCinema", fill=(190, 150, 255), font=font(22))
    draw.text((20, 48), wf.title.split(": ", 1)[-1], fill=(235, 235, 240), font=font(26))
    steps = wf.thumbnail_steps
    gap = 18
    box_w = (w - 40 - gap * (len(steps) - 1)) / len(steps)
    for i, label in enumerate(steps):
        x0 = 20 + i * (box_w + gap)
        colour = (138, 90, 168) if "MicroCinema" in label else (63, 120, 158)
        draw.rounded_rectangle([x0, 100, x0 + box_w, 150], radius=8, fill=colour)
        size = 16
        while size > 8 and draw.textlength(label, font=font(size)) > box_w - 8:
            size -= 1
        tw = draw.textlength(label, font=font(size))
        draw.text((x0 + (box_w - tw) / 2, 125 - size * 0.6), label, fill=(255, 255, 255), font=font(size))
        if i:  # arrow in the gap
            ax = x0 - gap + 4
            draw.polygon([(ax, 119), (ax + gap - 8, 125), (ax, 131)], fill=(200, 200, 200))
    if frames:
        shown = frames[:: max(1, len(frames) // 4)][:4]
        cell = min((w - 40 - 10 * (len(shown) - 1)) // len(shown), h - 210)
        for i, frame in enumerate(shown):
            tile = frame.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST)
            card.paste(tile, (20 + i * (cell + 10), 172))
        draw.text((20, 180 + cell), "frames made by this workflow with the demo model", fill=(150, 150, 160),
                  font=font(13))
    return card


def render_example_keyframe():
    """The example input picture (320x240: not the video size, so resizing and cropping show): a yellow triangle
    on a striped teal background, drawn like the demo model's training data."""
    from PIL import Image

    sys.path.insert(0, str(REPO))
    from microcinema_core.training import synthetic  # numpy + PIL only

    spec = synthetic.ClipSpec("triangle", "yellow", "up", (0.5, 0.55), 0.03, 0.16, (20, 70, 70), 5)
    square = Image.fromarray(synthetic.render_frame(spec, 0, 240))
    canvas = Image.new("RGB", (320, 240), synthetic.BACKGROUNDS[2])
    canvas.paste(square, (40, 0))
    return canvas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report files that differ from the builder")
    parser.add_argument("--example-image", action="store_true",
                        help=f"(re)draw example_workflows/{EXAMPLE_KEYFRAME}")
    parser.add_argument("--refresh-specs", type=Path, metavar="OBJECT_INFO_JSON",
                        help="rewrite workflows/spec/node_specs.json from a saved GET /object_info answer")
    args = parser.parse_args(argv)
    if args.refresh_specs:
        refresh_specs(args.refresh_specs)
    if args.example_image:
        render_example_keyframe().save(UI_DIR / EXAMPLE_KEYFRAME, optimize=True)
    built = build_all()
    if args.check:
        stale = stale_files(built)
        for path in stale:
            print(f"out of date: {path.relative_to(REPO)}", file=sys.stderr)
        return 1 if stale else 0
    for path in write_all(built):
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
