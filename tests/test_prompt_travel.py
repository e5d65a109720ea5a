"""Prompt travel: schedule parsing, per-frame weights and mixing against independent computations, and graphs that
record the text context the video UNet receives (stock KSampler, two videos, cond/uncond halves, our context
windows, the MicroCinema Sampler) plus the exact single-prompt parity with CLIP Text Encode."""
from __future__ import annotations

import math

import pytest
import torch

from harness.graph import Graph
from pack_import import sub

NODE = "MicroCinema Prompt Travel"


@pytest.fixture(scope="module")
def pt(comfy_env):
    return sub("prompt_travel")


# -- schedule syntax ------------------------------------------------------------------------------------------
def test_schedule_syntax(pt):
    text = "# a comment\n\n  12: c: with a colon  \n0: a\n5:\n"
    keys = pt.parse_schedule(text, 16)
    assert [(k.frame, k.prompt, k.line) for k in keys] == [(0, "a", 4), (5, "", 5), (12, "c: with a colon", 3)]


@pytest.mark.parametrize("text,length,expected", [
    ("", 8, "is empty"),
    ("# only a comment\n\n", 8, "is empty"),
    ("0 a ball", 8, "line 1: expected 'FRAME: prompt'"),
    ("x: a ball", 8, "line 1: expected 'FRAME: prompt'"),
    ("1.5: a ball", 8, "line 1: expected 'FRAME: prompt'"),
    ("0: a\n8: b", 8, "line 2: frame 8 is outside a clip of 8 frames"),
    ("-1: a", 8, "line 1: frame -1 is outside"),
    ("0: a\n3: b\n3: c", 8, "line 3: frame 3 is keyed twice \\(also on line 2\\)"),
])
def test_bad_schedules_name_the_node_input_and_line(pt, text, length, expected):
    with pytest.raises(pt.ScheduleError, match=f"^{NODE}: input 'schedule'.*{expected}"):
        pt.parse_schedule(text, length)


def _expected_weight(t: int, keys: list[tuple[int, str]], mode: str) -> dict[str, float]:
    """Independent per-frame rule, written from the docstring: {prompt: weight} of frame t."""
    keys = sorted(keys)
    if t <= keys[0][0]:
        return {keys[0][1]: 1.0}
    if t >= keys[-1][0]:
        return {keys[-1][1]: 1.0}
    for (k0, p0), (k1, p1) in zip(keys, keys[1:]):
        if k0 <= t < k1:
            u = (t - k0) / (k1 - k0)
            w = {"linear": u, "smooth": 0.5 - 0.5 * math.cos(math.pi * u), "hold": 0.0}[mode]
            out = {p0: 1.0 - w}
            out[p1] = out.get(p1, 0.0) + w
            return out
    raise AssertionError("unreachable")


@pytest.mark.parametrize("mode", ["linear", "smooth", "hold"])
@pytest.mark.parametrize("keys,length", [
    ([(0, "a"), (8, "b")], 16),
    ([(3, "a"), (7, "b"), (12, "c")], 14),
    ([(2, "a"), (5, "b"), (9, "a")], 10),  # a prompt keyed twice: one column
    ([(0, "a"), (1, "b")], 2),
    ([(4, "only")], 9),
])
def test_frame_weights_match_an_independent_rule(pt, mode, keys, length):
    text = "\n".join(f"{f}: {p}" for f, p in reversed(keys))  # reversed: order in the text does not matter
    prompts, weights = pt.frame_weights(pt.parse_schedule(text, length), length, mode)
    assert prompts == list(dict.fromkeys(p for _, p in sorted(keys)))
    assert weights.shape == (length, len(prompts))
    for t in range(length):
        expected = [_expected_weight(t, keys, mode).get(p, 0.0) for p in prompts]
        assert weights[t].tolist() == pytest.approx(expected, abs=1e-12), (t, mode)
        assert (weights[t] != 0).sum() <= 2
    assert torch.allclose(weights.sum(1), torch.ones(length, dtype=weights.dtype))
    for frame, prompt in keys:  # a keyed frame is that prompt alone, exactly
        assert weights[frame, prompts.index(prompt)].item() == 1.0


def test_unknown_interpolation_is_refused(pt):
    with pytest.raises(ValueError, match="input 'interpolation'"):
        pt.frame_weights(pt.parse_schedule("0: a", 4), 4, "cubic")


# -- mixing encodings --------------------------------------------------------------------------------------------
def _encoding(tokens: int, seed: int, dim: int = 12, extra: dict | None = None) -> list:
    g = torch.Generator().manual_seed(seed)
    options = {"pooled_output": torch.randn(1, dim, generator=g), **(extra or {})}
    return [[torch.randn(1, tokens, dim, generator=g), options]]


def test_blend_mixes_contexts_and_pooled_per_frame(pt):
    keys = [(0, "a"), (3, "b"), (7, "c")]
    length = 9
    prompts, weights = pt.frame_weights(pt.parse_schedule("\n".join(f"{f}: {p}" for f, p in keys), length),
                                        length, "linear")
    marker = object()
    encodings = [_encoding(5, seed, extra={"hook_thing": marker}) for seed in range(3)]
    [[context, options]] = pt.blend(encodings, weights)
    assert context.shape == (length, 5, 12) and options["pooled_output"].shape == (length, 12)
    for t in range(length):
        w = _expected_weight(t, keys, "linear")
        expected = sum(w.get(p, 0.0) * e[0][0][0] for p, e in zip(prompts, encodings))
        pooled = sum(w.get(p, 0.0) * e[0][1]["pooled_output"][0] for p, e in zip(prompts, encodings))
        assert torch.allclose(context[t], expected, atol=1e-6)
        assert torch.allclose(options["pooled_output"][t], pooled, atol=1e-6)
    for frame, prompt in keys:  # keyed frames: the prompt's own encoding, bitwise
        tensor, own = encodings[prompts.index(prompt)][0]
        assert torch.equal(context[frame], tensor[0])
        assert torch.equal(options["pooled_output"][frame], own["pooled_output"][0])
    assert options["hook_thing"] is marker  # non-tensor options pass through
    assert options["model_conds"][pt.TEXT_FRAMES].cond == length
    assert "model_conds" not in encodings[0][0][1]  # the inputs are not modified


def test_prompts_of_different_token_counts_are_repeated_to_a_common_length(pt):
    a, b = _encoding(77, 0)[0][0], _encoding(154, 1)[0][0]
    pa, pb = pt.pad_tokens([a, b])
    assert pa.shape == pb.shape == (1, 154, 12)
    assert torch.equal(pa[:, :77], a) and torch.equal(pa[:, 77:], a) and torch.equal(pb, b)
    weights = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    [[context, _]] = pt.blend([_encoding(77, 0), _encoding(154, 1)], weights)
    assert torch.allclose(context[1], 0.5 * torch.cat([a, a], 1)[0] + 0.5 * b[0], atol=1e-6)
    # why repeating is harmless: attention over a context repeated k times equals attention over the context
    q = torch.randn(3, 12)
    attend = lambda ctx: torch.softmax(q @ ctx.T, -1) @ ctx  # noqa: E731
    assert torch.allclose(attend(pa[0]), attend(a[0]), atol=1e-5)


def test_frames_problem_names_the_node_and_length(pt):
    assert pt.frames_problem(None, 8) is None and pt.frames_problem(8, 8) is None
    message = pt.frames_problem(16, 8, [1])
    assert "negative conditioning" in message and NODE in message and "'length' 16" in message and "8 frames" in message


# -- graphs ------------------------------------------------------------------------------------------------------
T, SIZE = 6, 32
POS = ("a red circle moving left", "a red circle moving right")
NEG = ("blurry", "static picture")


def _travel(g: Graph, clip, prompts: tuple[str, str], *, length: int = T, at: int = 4, mode: str = "linear"):
    return g.node("MicroCinemaPromptTravel", clip=clip, schedule=f"0: {prompts[0]}\n{at}: {prompts[1]}",
                  length=length, interpolation=mode)


def _i2v(g: Graph, ckpt, pos, neg, *, videos: int, length: int = T):
    image = g.node("EmptyImage", width=SIZE, height=SIZE, batch_size=1, color=0xFF0000)
    if videos == 2:
        other = g.node("EmptyImage", width=SIZE, height=SIZE, batch_size=1, color=0x0000FF)
        image = g.node("ImageBatch", image1=image, image2=other)
    return g.node("MicroCinemaImageToVideo", positive=pos, negative=neg, vae=ckpt.out(2), image=image, width=SIZE,
                  height=SIZE, length=length, keyframe_position="first", keyframe_index=0, appearance_strength=1.0,
                  noise_prior_gamma=0.02, crop="center", frame_rate=8.0, resize_method="bilinear")


def _ksampler(g: Graph, model, i2v, *, cfg: float = 2.0, seed: int = 3):
    return g.node("KSampler", model=model, seed=seed, steps=2, cfg=cfg, sampler_name="euler", scheduler="normal",
                  positive=i2v.out(0), negative=i2v.out(1), latent_image=i2v.out(2), denoise=1.0)


@pytest.fixture
def recorded(monkeypatch, comfy_env):
    """Every inner forward of the video UNet (one per model call, or per context window): its context, the frame
    of each row (from the hint's offset channel: keyframe first, so offset = t / T), the CFG halves it holds."""
    video_unet = sub("video_unet")
    conditioning = sub("conditioning")
    calls = []
    original = video_unet.VideoUNet._forward_clip

    def spy(self, x, timesteps, context, y, control, transformer_options, num_frames, kwargs):
        frames = (conditioning.hint_offset(kwargs["mc_hint"])[:, 0, 0, 0] * T).round().long()
        calls.append({"context": context.detach().clone(), "frames": frames.tolist(), "window": num_frames,
                      "halves": list(transformer_options.get("cond_or_uncond") or [0])})
        return original(self, x, timesteps, context, y, control, transformer_options, num_frames, kwargs)

    monkeypatch.setattr(video_unet.VideoUNet, "_forward_clip", spy)
    return calls


def _check_rows(calls: list, travels: dict[int, torch.Tensor], videos: int) -> set:
    """Every row of every recorded call holds the travel context of its own half and frame. Returns the set of
    (half, video, frame) seen."""
    seen = set()
    for call in calls:
        rows_per_group = call["window"]
        groups = len(call["context"]) // rows_per_group
        assert groups == len(call["halves"]) * videos
        for n, frame in enumerate(call["frames"]):
            group = n // rows_per_group
            half, video = call["halves"][group // videos], group % videos
            assert torch.equal(call["context"][n], travels[half][frame]), (half, video, frame)
            seen.add((half, video, frame))
    return seen


@pytest.mark.graph
def test_each_frame_gets_its_own_context_in_frame_order(run_graph, tiny_sd_checkpoint, recorded):
    """Two videos, CFG 2 (both halves are prompt travels: one batched call), through the stock KSampler, our context
    windows and the MicroCinema Sampler; the travel rows themselves are checked against CLIP Text Encode's
    encodings mixed independently."""
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    model = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name="[new untrained module]",
                   motion_module="none")
    windows = g.node("MicroCinemaContextWindows", model=model, context_length=4, context_overlap=2,
                     context_schedule=sub("context_windows").SCHEDULES[0], context_stride=1, closed_loop=False,
                     fuse_method="pyramid", keep_keyframe=False)
    pos, neg = _travel(g, ckpt.out(1), POS), _travel(g, ckpt.out(1), NEG, at=3, mode="smooth")
    plain = [g.node("CLIPTextEncode", text=text, clip=ckpt.out(1)) for text in POS + NEG]
    i2v = _i2v(g, ckpt, pos, neg, videos=2)
    stock = _ksampler(g, model, i2v)
    result = run_graph(g, outputs=[pos, neg, *plain, stock])
    travels = {0: result[pos.id][0][0], 1: result[neg.id][0][0]}
    assert travels[0].shape == (T, 77, 768) and result[pos.id][0][1]["pooled_output"].shape == (T, 768)

    # the travel rows: CLIP Text Encode's encodings, mixed by an independent rule
    encodings = [result[p.id][0][0][0] for p in plain]
    for half, (first, second), at, mode in ((0, encodings[:2], 4, "linear"), (1, encodings[2:], 3, "smooth")):
        for t in range(T):
            w = _expected_weight(t, [(0, "a"), (at, "b")], mode)
            expected = w.get("a", 0.0) * first + w.get("b", 0.0) * second
            assert torch.allclose(travels[half][t], expected, atol=1e-5), (half, t)
        assert torch.equal(travels[half][0], first) and torch.equal(travels[half][at], second)

    assert len(recorded) == 2  # 2 steps, cond and uncond in one call each
    assert all(sorted(c["halves"]) == [0, 1] for c in recorded)
    assert _check_rows(recorded, travels, videos=2) == {(h, v, t) for h in (0, 1) for v in (0, 1) for t in range(T)}

    recorded.clear()  # the same through our context windows: each window slices the contexts with its frames
    windowed = _ksampler(g, windows, i2v)
    run_graph(g, outputs=[windowed])
    assert recorded and max(c["window"] for c in recorded) == 4
    assert _check_rows(recorded, travels, videos=2) == {(h, v, t) for h in (0, 1) for v in (0, 1) for t in range(T)}

    recorded.clear()  # and through the MicroCinema Sampler (one node for all of stage 2)
    image = g.node("EmptyImage", width=SIZE, height=SIZE, batch_size=1, color=0xFF0000)
    sampler = g.node("MicroCinemaSampler", model=model, positive=pos, negative=neg, vae=ckpt.out(2), image=image,
                     width=SIZE, height=SIZE, length=T, seed=1, steps=1, cfg=2.0, sampler_name="euler",
                     scheduler="normal", keyframe_position="first", keyframe_index=0, appearance_strength=1.0,
                     noise_prior_gamma=0.02, frame_rate=8.0)
    run_graph(g, outputs=[sampler])
    assert _check_rows(recorded, travels, videos=1) == {(h, 0, t) for h in (0, 1) for t in range(T)}


@pytest.mark.graph
def test_a_plain_negative_is_batched_with_a_travel_positive(run_graph, tiny_sd_checkpoint, recorded):
    """Travel positive + CLIP Text Encode negative: Image To Video gives both halves the same model conds, so
    ComfyUI runs them in one batched call; each still gets its own contexts (the negative's one row repeated to
    every frame)."""
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    model = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name="[new untrained module]",
                   motion_module="none")
    pos, neg = _travel(g, ckpt.out(1), POS, mode="hold"), g.node("CLIPTextEncode", text="", clip=ckpt.out(1))
    ks = _ksampler(g, model, _i2v(g, ckpt, pos, neg, videos=1))
    result = run_graph(g, outputs=[pos, neg, ks])
    travels = {0: result[pos.id][0][0], 1: result[neg.id][0][0].expand(T, -1, -1)}
    assert len(recorded) == 2 and all(sorted(c["halves"]) == [0, 1] for c in recorded)
    assert _check_rows(recorded, travels, videos=1) == {(h, 0, t) for h in (0, 1) for t in range(T)}


@pytest.mark.graph
@pytest.mark.parity
def test_a_single_prompt_schedule_is_exactly_clip_text_encode(run_graph, tiny_sd_checkpoint):
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    model = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name="[new untrained module]",
                   motion_module="none")
    neg = g.node("CLIPTextEncode", text="blurry", clip=ckpt.out(1))
    plain = g.node("CLIPTextEncode", text=POS[0], clip=ckpt.out(1))
    travel = g.node("MicroCinemaPromptTravel", clip=ckpt.out(1), schedule=f"# one prompt, keyed twice\n0: {POS[0]}\n"
                    f"4: {POS[0]}", length=T, interpolation="linear")
    runs = [_ksampler(g, model, _i2v(g, ckpt, pos, neg, videos=2), cfg=3.0) for pos in (plain, travel)]
    result = run_graph(g, outputs=[plain, travel, *runs])
    [[a, a_options]], [[b, b_options]] = result[plain.id], result[travel.id]
    assert torch.equal(a, b) and a_options.keys() == b_options.keys()
    assert torch.equal(a_options["pooled_output"], b_options["pooled_output"])
    assert torch.equal(result[runs[0].id]["samples"], result[runs[1].id]["samples"])


@pytest.mark.graph
def test_a_length_other_than_the_videos_is_refused(run_graph, tiny_sd_checkpoint):
    from harness.runner import GraphExecutionError

    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    model = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name="[new untrained module]",
                   motion_module="none")
    pos = _travel(g, ckpt.out(1), POS, length=T + 2)
    ks = _ksampler(g, model, _i2v(g, ckpt, pos, pos, videos=1), cfg=1.0)
    # refused by Image To Video, before anything is encoded or sampled, naming its input
    with pytest.raises(GraphExecutionError, match=f"MicroCinema Image To Video, input 'positive': it holds one text "
                                                  f"context per frame for {T + 2} frames") as info:
        run_graph(g, outputs=[ks])
    assert info.value.node_type == "MicroCinemaImageToVideo"
    # the video model keeps its own check (conds combined after Image To Video reach it unchecked)
    assert f"but the videos have {T} frames" in sub("prompt_travel").frames_problem(T + 2, T, [0])


@pytest.mark.graph
@pytest.mark.parametrize("inputs,expected", [
    ({"schedule": "0: a\n0: b"}, "line 2: frame 0 is keyed twice"),
    ({"schedule": "  \n"}, "is empty"),
    ({"schedule": "zero: a"}, "line 1: expected 'FRAME: prompt'"),
])
def test_bad_schedules_are_refused_before_the_run(run_graph, tiny_sd_checkpoint, inputs, expected):
    from harness.runner import GraphValidationError

    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    travel = _travel(g, ckpt.out(1), POS).set(**inputs)
    with pytest.raises(GraphValidationError, match=f"{NODE}: input 'schedule'.*{expected}") as error:
        run_graph(g, outputs=[g.node("ConditioningZeroOut", conditioning=travel)])
    assert error.value.input_names() == {"schedule"}  # reported once, on the schedule


@pytest.mark.graph
@pytest.mark.parametrize("inputs,name,expected", [
    ({"schedule": "0: a\n6: b", "length": 6}, "schedule", f"{NODE}: input 'schedule', line 2: frame 6 is outside a "
                                                           "clip of 6 frames"),
    ({"interpolation": "cubic"}, "interpolation", "cubic"),
    ({"length": 0}, "length", "0"),
])
def test_bad_values_are_refused_naming_the_input(run_graph, tiny_sd_checkpoint, inputs, name, expected):
    """Before the run where ComfyUI can tell (its own range and, from 0.33, combo checks), else when the node runs."""
    from harness.runner import GraphExecutionError, GraphValidationError

    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
    travel = _travel(g, ckpt.out(1), POS).set(**inputs)
    with pytest.raises((GraphValidationError, GraphExecutionError)) as error:
        run_graph(g, outputs=[g.node("ConditioningZeroOut", conditioning=travel)])
    if isinstance(error.value, GraphValidationError):
        assert error.value.input_names() == {name} and expected in str(error.value)
    else:
        assert f"{NODE}: input '{name}'" in error.value.exception_message and expected in error.value.exception_message
