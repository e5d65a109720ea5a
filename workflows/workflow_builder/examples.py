"""The shipped example workflows, one short function each (docs/workflows.md: "Adding a workflow").

A workflow function builds a Graph (node ids come automatically, in creation order), places each node in a
layout column with ``.ui(col=...)`` (nodes of a column stack downwards in creation order), and returns a
Workflow with a title, the Markdown description shown above the graph, the groups (by column) and the boxes of
its template-browser thumbnail. ``@example`` adds it to WORKFLOWS. The pieces below (stage 1, the motion model
and prompts, Image To Video, the video sampler, the savers) are shared by all of them.
"""
from __future__ import annotations

from typing import Callable

from .forms import Group, Workflow
from .graph import Graph, NodeRef, Output

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

# The demo model knows the captions of its synthetic training videos ("a <colour> <shape> moving <direction>") and
# was trained with "" as the unconditional text; with a real model write real prompts and negatives.
KEYFRAME_PROMPT = "a red circle moving left"
KEYFRAME_NEGATIVE = ""
MOTION_PROMPT = "a red circle moving left"
MOTION_NEGATIVE = ""
IMAGE_MOTION_PROMPT = "a yellow triangle moving up"  # matches the example keyframe picture

STAGE1_GROUP = Group("Stage 1: keyframe from text", (0, 1, 2))
SAVE_COLOUR, STAGE2_COLOUR, EXTRA_COLOUR = "#3f8a5a", "#8a5aa8", "#a88a3f"

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

# Order matters only for speed: tests run them one after another in one ComfyUI, each reusing the cached nodes it
# shares with the one before (same stage 1, same stage 2).
WORKFLOWS: list[Callable[[], Workflow]] = []


def example(make: Callable[[], Workflow]) -> Callable[[], Workflow]:
    """Register a workflow function (in definition order)."""
    WORKFLOWS.append(make)
    return make


# -- shared pieces ---------------------------------------------------------------------------------------------
def checkpoint(g: Graph, col: int = 0) -> NodeRef:
    return g.node("CheckpointLoaderSimple", ckpt_name=DEMO_CHECKPOINT).ui(col=col)


def keyframe_from_text(g: Graph, ckpt: NodeRef) -> NodeRef:
    """Stage 1 in columns 1-2: any SD text-to-image graph; returns the keyframe IMAGE (VAE Decode)."""
    pos = g.node("CLIPTextEncode", text=KEYFRAME_PROMPT, clip=ckpt.out(1)).ui(
        col=1, title="Keyframe prompt", extra_height=90, width=400)
    neg = g.node("CLIPTextEncode", text=KEYFRAME_NEGATIVE, clip=ckpt.out(1)).ui(
        col=1, title="Keyframe negative prompt", extra_height=60, width=400)
    latent = g.node("EmptyLatentImage", width=WIDTH, height=HEIGHT, batch_size=1).ui(col=1, width=400)
    sampled = g.node("KSampler", seed=42, steps=STEPS, cfg=CFG, sampler_name="euler", scheduler="normal",
                     denoise=1.0, model=ckpt.out(0), positive=pos, negative=neg, latent_image=latent).ui(
        col=2, title="KSampler (keyframe)")
    image = g.node("VAEDecode", samples=sampled, vae=ckpt.out(2)).ui(col=2)
    g.node("PreviewImage", images=image).ui(col=2, title="Keyframe", extra_height=220)
    return image


def apply_module(g: Graph, ckpt: NodeRef, col: int) -> NodeRef:
    """MicroCinema Apply Module with the demo module: the video MODEL."""
    return g.node("MicroCinemaApplyModule", module_name=DEMO_MODULE, motion_module="none",
                  model=ckpt.out(0)).ui(col=col)


def motion_model_and_prompts(g: Graph, ckpt: NodeRef, col: int,
                             motion_prompt: str = MOTION_PROMPT) -> tuple[NodeRef, NodeRef, NodeRef]:
    """MicroCinema Apply Module + the motion prompts: (video MODEL, positive, negative)."""
    model = apply_module(g, ckpt, col)
    pos = g.node("CLIPTextEncode", text=motion_prompt, clip=ckpt.out(1)).ui(
        col=col, title="Motion prompt", extra_height=90, width=400)
    neg = g.node("CLIPTextEncode", text=MOTION_NEGATIVE, clip=ckpt.out(1)).ui(
        col=col, title="Motion negative prompt", extra_height=60, width=400)
    return model, pos, neg


def image_to_video(g: Graph, col: int, ckpt: NodeRef, pos: NodeRef, neg: NodeRef, keyframe: NodeRef | Output, *,
                   position: str = "center", length: int = LENGTH, title: str | None = None) -> NodeRef:
    """MicroCinema Image To Video: outputs positive, negative, latent, frame_rate."""
    return g.node("MicroCinemaImageToVideo", width=WIDTH, height=HEIGHT, length=length, keyframe_position=position,
                  keyframe_index=0, appearance_strength=1.0, noise_prior_gamma=0.02, crop="center", frame_rate=FPS,
                  resize_method="bilinear", positive=pos, negative=neg, vae=ckpt.out(2), image=keyframe).ui(
        col=col, title=title)


def sample_video(g: Graph, col: int, ckpt: NodeRef, model: NodeRef, positive: Output, negative: Output,
                 latent: Output, seed: int = 7, denoise: float = 1.0, title: str = "KSampler (video)",
                 decode_title: str = "VAE Decode (frames)") -> NodeRef:
    """The stock KSampler + VAE Decode: returns the frames (IMAGE batch)."""
    sampled = g.node("KSampler", seed=seed, steps=STEPS, cfg=CFG, sampler_name="euler", scheduler="normal",
                     denoise=denoise, model=model, positive=positive, negative=negative, latent_image=latent).ui(
        col=col, title=title)
    return g.node("VAEDecode", samples=sampled, vae=ckpt.out(2)).ui(col=col, title=decode_title)


def stage2(g: Graph, ckpt: NodeRef, keyframe: NodeRef | Output, col: int, **i2v) -> tuple[NodeRef, NodeRef]:
    """Motion model and prompts (col), Image To Video (col + 1), sampler and decode (col + 2): (i2v, frames)."""
    model, pos, neg = motion_model_and_prompts(g, ckpt, col, i2v.pop("motion_prompt", MOTION_PROMPT))
    node = image_to_video(g, col + 1, ckpt, pos, neg, keyframe, **i2v)
    return node, sample_video(g, col + 2, ckpt, model, node.out(0), node.out(1), node.out(2))


def savers(g: Graph, col: int, frames: NodeRef, i2v: NodeRef, prefix: str) -> None:
    """CreateVideo -> SaveVideo (mp4, workflow embedded) and SaveAnimatedWEBP, both at the clip's frame rate."""
    fps = i2v.out(3)
    video = g.node("CreateVideo", fps=fps, images=frames).ui(col=col, linked_widgets={"fps": FPS})
    g.node("SaveVideo", filename_prefix=f"microcinema/{prefix}", format="mp4", codec="h264", video=video).ui(
        col=col, extra_height=250)
    g.node("SaveAnimatedWEBP", filename_prefix=f"microcinema/{prefix}", fps=fps, lossless=False, quality=85,
           method="default", images=frames).ui(col=col, extra_height=250, linked_widgets={"fps": FPS})


def loaded_keyframe(g: Graph) -> NodeRef:
    """The shipped example picture as the keyframe (column 0, under the checkpoint): no stage 1 to wait for."""
    return g.node("LoadImage", image=EXAMPLE_KEYFRAME).ui(col=0, title="Keyframe image", extra_height=240)


KEYFRAME_NOTE = (f"The keyframe is the example picture `{EXAMPLE_KEYFRAME}` (it ships in the pack's example_workflows/ "
                 "folder: copy it into ComfyUI/input/); any text-to-image graph or picture works instead.\n\n")


# -- the workflows -----------------------------------------------------------------------------------------------
@example
def text_to_video() -> Workflow:
    g = Graph()
    ckpt = checkpoint(g)
    i2v, frames = stage2(g, ckpt, keyframe_from_text(g, ckpt), col=3)
    savers(g, 6, frames, i2v, "text_to_video")
    return Workflow(
        "text_to_video", "MicroCinema: text -> image -> video",
        "## MicroCinema: text -> image -> video\nStage 1 makes a keyframe from the keyframe prompt with any SD "
        "text-to-image graph. Stage 2 (MicroCinema Apply Module + Image To Video + the stock KSampler) animates it "
        "with the motion prompt. Frames are saved as mp4 (workflow embedded) and animated WebP at the clip's frame "
        "rate.\n\n" + MODELS_NOTE + SIZES_NOTE,
        g,
        [STAGE1_GROUP, Group("Stage 2: MicroCinema animates the keyframe", (3, 4, 5), STAGE2_COLOUR),
         Group("Save", (6,), SAVE_COLOUR)],
        ["text", "keyframe", "MicroCinema", "video"])


@example
def upscaled_video() -> Workflow:
    g = Graph()
    ckpt = checkpoint(g)
    i2v, frames = stage2(g, ckpt, keyframe_from_text(g, ckpt), col=3)
    upscaler = g.node("UpscaleModelLoader", model_name=DEMO_UPSCALER).ui(col=6)
    upscaled = g.node("ImageUpscaleWithModel", upscale_model=upscaler, image=frames).ui(col=6, title="Upscale frames")
    savers(g, 7, upscaled, i2v, "upscaled_video")
    return Workflow(
        "upscaled_video", "MicroCinema: upscaled video",
        "## MicroCinema video, upscaled frame by frame\nThe decoded frames are an ordinary IMAGE batch, so any "
        "upscale model (ESRGAN, Real-ESRGAN, ...) works through the stock Upscale Image (using Model) node before "
        "saving.\n\n" + MODELS_NOTE + f"- `models/upscale_models/{DEMO_UPSCALER}`: any 2x/4x upscale model\n"
        + SIZES_NOTE,
        g,
        [STAGE1_GROUP, Group("Stage 2: MicroCinema animates the keyframe", (3, 4, 5), STAGE2_COLOUR),
         Group("Upscale", (6,), EXTRA_COLOUR), Group("Save", (7,), SAVE_COLOUR)],
        ["text", "keyframe", "MicroCinema", "upscale", "video"])


@example
def controlnet_per_frame() -> Workflow:
    g = Graph()
    ckpt = checkpoint(g)
    keyframe = keyframe_from_text(g, ckpt)
    repeated = g.node("RepeatImageBatch", amount=LENGTH, image=keyframe).ui(
        col=3, title="Repeat keyframe (one per frame)")
    hints = g.node("Canny", low_threshold=0.4, high_threshold=0.8, image=repeated).ui(
        col=3, title="Canny (hint frames)")
    g.node("PreviewImage", images=hints).ui(col=3, title="Hint frames", extra_height=200)
    model, pos, neg = motion_model_and_prompts(g, ckpt, col=4)
    controlnet = g.node("ControlNetLoader", control_net_name=DEMO_CONTROLNET).ui(col=4)
    i2v = image_to_video(g, 5, ckpt, pos, neg, keyframe)
    applied = g.node("ControlNetApplyAdvanced", strength=0.8, start_percent=0.0, end_percent=1.0,
                     positive=i2v.out(0), negative=i2v.out(1), control_net=controlnet, image=hints).ui(col=6)
    frames = sample_video(g, 7, ckpt, model, applied.out(0), applied.out(1), i2v.out(2))
    savers(g, 8, frames, i2v, "controlnet_per_frame")
    return Workflow(
        "controlnet_per_frame", "MicroCinema: ControlNet per frame",
        "## MicroCinema with ControlNet, one hint per frame\nThe stock Apply ControlNet (Advanced) takes an IMAGE "
        "batch with one hint per video frame (a single hint image is used for every frame). Here the hint frames "
        "are Canny edges of the keyframe repeated once per frame; any batch of N images works (N = length).\n\n"
        + MODELS_NOTE + f"- `models/controlnet/{DEMO_CONTROLNET}`: an SD1.5 ControlNet (e.g. canny)\n" + SIZES_NOTE,
        g,
        [STAGE1_GROUP, Group("Hint frames", (3,), EXTRA_COLOUR),
         Group("Stage 2: MicroCinema + ControlNet", (4, 5, 6, 7), STAGE2_COLOUR), Group("Save", (8,), SAVE_COLOUR)],
        ["text", "keyframe", "hint frames", "MicroCinema", "video"])


@example
def keyframe_first_last() -> Workflow:
    g = Graph()
    ckpt = checkpoint(g)
    keyframe = keyframe_from_text(g, ckpt)
    model, pos, neg = motion_model_and_prompts(g, ckpt, col=3)
    branches = []
    for position in ("first", "last"):
        i2v = image_to_video(g, 4, ckpt, pos, neg, keyframe, position=position,
                             title=f"Image To Video (keyframe {position})")
        branches.append((i2v, sample_video(g, 5, ckpt, model, i2v.out(0), i2v.out(1), i2v.out(2))))
    for col, position, (i2v, frames) in zip((6, 7), ("first", "last"), branches):
        savers(g, col, frames, i2v, f"keyframe_{position}")
    return Workflow(
        "keyframe_first_last", "MicroCinema: keyframe first / last",
        "## MicroCinema: the keyframe as first or as last frame\nThe same keyframe and prompts in two branches: "
        "`keyframe_position` first (the clip starts at the keyframe) and last (the clip ends at it). `center` is "
        "what the model is trained for; `index` picks any frame.\n\n" + MODELS_NOTE + SIZES_NOTE,
        g,
        [STAGE1_GROUP, Group("Stage 2: keyframe first (top) and last (bottom)", (3, 4, 5), STAGE2_COLOUR),
         Group("Save: keyframe first", (6,), SAVE_COLOUR), Group("Save: keyframe last", (7,), SAVE_COLOUR)],
        ["text", "keyframe", "MicroCinema", "first / last"])


@example
def image_to_video_workflow() -> Workflow:
    g = Graph()
    ckpt = checkpoint(g)
    keyframe = loaded_keyframe(g)
    i2v, frames = stage2(g, ckpt, keyframe, col=1, motion_prompt=IMAGE_MOTION_PROMPT)
    savers(g, 4, frames, i2v, "image_to_video")
    return Workflow(
        "image_to_video", "MicroCinema: image -> video",
        "## MicroCinema: image -> video\nAnimates a picture you load (any size: it is resized and centre-cropped "
        f"to the video size) with the motion prompt. The example picture `{EXAMPLE_KEYFRAME}` ships in the pack's "
        "example_workflows/ folder: copy it into ComfyUI/input/ or pick your own image.\n\n" + MODELS_NOTE + SIZES_NOTE,
        g,
        [Group("Keyframe", (0,)), Group("MicroCinema animates the keyframe", (1, 2, 3), STAGE2_COLOUR),
         Group("Save", (4,), SAVE_COLOUR)],
        ["image", "MicroCinema", "video"])


@example
def long_video() -> Workflow:
    g = Graph()
    ckpt = checkpoint(g)
    keyframe = keyframe_from_text(g, ckpt)
    model, pos, neg = motion_model_and_prompts(g, ckpt, col=3)
    i2v = image_to_video(g, 4, ckpt, pos, neg, keyframe, length=LONG_LENGTH,
                         title=f"Image To Video ({LONG_LENGTH} frames)")
    windows = g.node("MicroCinemaContextWindows", context_length=LENGTH, context_overlap=LENGTH // 4,
                     context_schedule="standard_static", context_stride=1, closed_loop=False, fuse_method="pyramid",
                     keep_keyframe=True, model=model).ui(col=4, title="Context Windows (long video)")
    frames = sample_video(g, 5, ckpt, windows, i2v.out(0), i2v.out(1), i2v.out(2))
    savers(g, 6, frames, i2v, "long_video")
    return Workflow(
        "long_video", "MicroCinema: long video (context windows)",
        f"## MicroCinema: a long video in sliding context windows\nThe video ({LONG_LENGTH} frames here) is longer "
        f"than the clips the model was trained on ({LENGTH}). MicroCinema Context Windows makes the model denoise "
        "overlapping windows of `context_length` frames and blend them (`fuse_method`), with the keyframe frame "
        "in every window (`keep_keyframe`) so the appearance reaches all of them. Memory then grows with the window, "
        "not with the video. Schedules: static (fixed windows), uniform (shifting every step, optionally with "
        "strides and a closed loop).\n\n" + MODELS_NOTE + SIZES_NOTE,
        g,
        [STAGE1_GROUP, Group("Stage 2: MicroCinema in context windows", (3, 4, 5), STAGE2_COLOUR),
         Group("Save", (6,), SAVE_COLOUR)],
        ["text", "keyframe", "context windows", "MicroCinema", f"{LONG_LENGTH} frames"])


@example
def motion_amount() -> Workflow:
    g = Graph()
    ckpt = checkpoint(g)
    keyframe = loaded_keyframe(g)
    model, pos, neg = motion_model_and_prompts(g, ckpt, 1, IMAGE_MOTION_PROMPT)
    calm = g.node("MicroCinemaMotionAmount", motion_amount=1.0, schedule=f"0:1.0, {LENGTH - 1}:0.25",
                  model=model).ui(col=2, title="Motion Amount (slows down over the clip)")
    i2v = image_to_video(g, 2, ckpt, pos, neg, keyframe)
    frames = sample_video(g, 3, ckpt, calm, i2v.out(0), i2v.out(1), i2v.out(2))
    savers(g, 4, frames, i2v, "motion_amount")
    return Workflow(
        "motion_amount", "MicroCinema: motion amount",
        "## MicroCinema: how much it moves\nMicroCinema Motion Amount scales what the temporal layers add: 1 is the "
        "trained model, 0 keeps the keyframe's appearance frame by frame with no motion, above 1 exaggerates the "
        "motion. `motion_amount` sets one value for the clip; `schedule` (frame:value pairs, linear in between) "
        "sets it per frame: here the motion fades from 1 to 0.25 over the clip. Put it anywhere between the MODEL "
        "and the sampler (LoRAs and context windows before or after it).\n\n" + KEYFRAME_NOTE + MODELS_NOTE
        + SIZES_NOTE,
        g,
        [Group("Keyframe", (0,)), Group("MicroCinema with a motion amount", (1, 2, 3), STAGE2_COLOUR),
         Group("Save", (4,), SAVE_COLOUR)],
        ["image", "Motion Amount", "MicroCinema", "video"])


@example
def prompt_travel() -> Workflow:
    g = Graph()
    ckpt = checkpoint(g)
    keyframe = loaded_keyframe(g)
    model = apply_module(g, ckpt, 1)
    half = LENGTH // 2
    travel = g.node("MicroCinemaPromptTravel", clip=ckpt.out(1), length=LENGTH, interpolation="linear",
                    schedule=f"0: a yellow triangle moving up\n{half}: a yellow triangle moving right").ui(
        col=1, title="Prompt Travel (up, then right)", extra_height=90, width=400)
    neg = g.node("CLIPTextEncode", text=MOTION_NEGATIVE, clip=ckpt.out(1)).ui(
        col=1, title="Motion negative prompt", extra_height=60, width=400)
    i2v = image_to_video(g, 2, ckpt, travel, neg, keyframe)
    frames = sample_video(g, 3, ckpt, model, i2v.out(0), i2v.out(1), i2v.out(2))
    savers(g, 4, frames, i2v, "prompt_travel")
    return Workflow(
        "prompt_travel", "MicroCinema: prompt travel",
        "## MicroCinema: prompts that change over the clip\nMicroCinema Prompt Travel takes prompts keyed at frames "
        "(`FRAME: prompt`, one per line) and gives every frame its own text context, mixed between the keys "
        "(`interpolation`: linear, smooth or hold). Connect it where a CLIP Text Encode would go, with the same "
        "`length` as Image To Video. Here the motion prompt turns from up to right halfway; how well a model follows "
        "a change mid-clip depends on the model (docs/benchmarks.md has what the demo model does).\n\n"
        + KEYFRAME_NOTE + MODELS_NOTE + SIZES_NOTE,
        g,
        [Group("Keyframe", (0,)), Group("MicroCinema with prompt travel", (1, 2, 3), STAGE2_COLOUR),
         Group("Save", (4,), SAVE_COLOUR)],
        ["image", "Prompt Travel", "MicroCinema", "video"])


V2V_DENOISE, V2V_PROMPT = 0.6, "a yellow triangle moving right"


@example
def video_to_video() -> Workflow:
    g = Graph()
    ckpt = checkpoint(g)
    keyframe = loaded_keyframe(g)
    source_i2v, source = stage2(g, ckpt, keyframe, col=1, motion_prompt=IMAGE_MOTION_PROMPT)
    model = apply_module(g, ckpt, 4)
    pos = g.node("CLIPTextEncode", text=V2V_PROMPT, clip=ckpt.out(1)).ui(
        col=4, title="New motion prompt", extra_height=90, width=400)
    neg = g.node("CLIPTextEncode", text=MOTION_NEGATIVE, clip=ckpt.out(1)).ui(
        col=4, title="Motion negative prompt", extra_height=60, width=400)
    v2v = g.node("MicroCinemaVideoToVideo", length=LENGTH, keyframe_position="first", keyframe_index=0,
                 appearance_strength=1.0, noise_prior_gamma=0.02, steps=STEPS, denoise=V2V_DENOISE,
                 sampler_name="euler", scheduler="normal", crop="center", resize_method="bilinear",
                 positive=pos, negative=neg, model=model, vae=ckpt.out(2), video=source).ui(
        col=5, title=f"Video To Video (denoise {V2V_DENOISE})")
    frames = sample_video(g, 6, ckpt, model, v2v.out(0), v2v.out(1), v2v.out(2), seed=11, denoise=V2V_DENOISE,
                          title=f"KSampler (denoise {V2V_DENOISE})", decode_title="VAE Decode (new frames)")
    savers(g, 7, frames, source_i2v, "video_to_video")
    return Workflow(
        "video_to_video", "MicroCinema: video to video",
        "## MicroCinema: re-animating a clip\nMicroCinema Video To Video starts the sampler from an existing clip's "
        f"latents instead of pure noise: at denoise {V2V_DENOISE} the result keeps the clip's layout and timing and "
        "takes the new prompt and the keyframe's appearance. The source here is a clip this workflow makes first; "
        "any IMAGE batch of frames works (e.g. Load Video -> Get Video Components), or a LATENT. Set `steps`, "
        "`denoise`, `sampler_name` and `scheduler` on Video To Video exactly as on its KSampler: the noise prior "
        "is scaled for the sampler's first noise level.\n\n" + KEYFRAME_NOTE + MODELS_NOTE + SIZES_NOTE,
        g,
        [Group("Keyframe", (0,)), Group("Source clip", (1, 2, 3)),
         Group("MicroCinema re-animates the clip", (4, 5, 6), STAGE2_COLOUR), Group("Save", (7,), SAVE_COLOUR)],
        ["clip", "Video To Video", "MicroCinema", "video"])


EXTEND_ROUNDS = 3


@example
def extend_video() -> Workflow:
    g = Graph()
    ckpt = checkpoint(g)
    keyframe = loaded_keyframe(g)
    model, pos, neg = motion_model_and_prompts(g, ckpt, 1, IMAGE_MOTION_PROMPT)
    first_i2v = video = None
    start = keyframe
    for round_ in range(EXTEND_ROUNDS):
        col = 2 + 2 * round_
        i2v = image_to_video(g, col, ckpt, pos, neg, start, position="first",
                             title=f"Image To Video (round {round_ + 1}, keyframe first)")
        clip = sample_video(g, col + 1, ckpt, model, i2v.out(0), i2v.out(1), i2v.out(2), seed=7 + round_)
        if video is None:
            first_i2v, video = i2v, clip
        else:
            video = g.node("MicroCinemaExtendVideo", videos=1, video=video, clip=clip).ui(
                col=col + 1, title=f"Extend Video (round {round_ + 1})")
        if round_ + 1 < EXTEND_ROUNDS:
            start = g.node("MicroCinemaLastFrame", videos=1, images=clip).ui(col=col + 1, title="Last frame")
    save_col = 2 + 2 * EXTEND_ROUNDS
    savers(g, save_col, video, first_i2v, "extend_video")
    total = EXTEND_ROUNDS * (LENGTH - 1) + 1
    return Workflow(
        "extend_video", "MicroCinema: extending a clip",
        "## MicroCinema: a longer video, clip by clip\nEach round animates the previous clip's last frame "
        "(MicroCinema Last Frame) as the FIRST frame of a new clip; MicroCinema Extend Video appends the new clip "
        f"without that repeated frame. {EXTEND_ROUNDS} rounds of {LENGTH} frames give {total} frames; sampling "
        "memory stays that of one clip (only the joined frames grow). Add rounds by copying the last two columns. "
        "For one long clip sampled at once, see the long-video workflow (context windows).\n\n"
        + KEYFRAME_NOTE + MODELS_NOTE + SIZES_NOTE,
        g,
        [Group("Keyframe", (0,)), Group("MicroCinema, round by round", tuple(range(1, save_col)), STAGE2_COLOUR),
         Group("Save", (save_col,), SAVE_COLOUR)],
        ["image", "MicroCinema", "Last Frame", "Extend Video"])
