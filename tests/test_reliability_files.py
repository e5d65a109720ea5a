"""Broken and hostile model files given to the MicroCinema loaders in real ComfyUI graphs: truncated or corrupted
safetensors, integer tensors, NaN/Inf weights, pickles (only torch's weights_only loader may open them: a malicious
one must never run its code, a plain tensor one is accepted) and names that try to leave the model folders.
Each gives a node error naming the node, the input and the file; nothing outside the model folders is read."""
from __future__ import annotations

import importlib
import os
import struct
import subprocess
import sys

import pytest
import torch

from harness.graph import Graph
from harness.reliability import (NEW_MODULE, animatediff_from_module, write_malicious_pickle,
                                 write_raw_malicious_pickle)
from harness.reliability_fixtures import *  # noqa: F401,F403  (fixtures)
from harness.runner import GraphExecutionError, GraphValidationError

pytestmark = [pytest.mark.reliability, pytest.mark.graph]

APPLY = "MicroCinemaApplyModule"


def sub(mc_core, name):
    return importlib.import_module(f"{mc_core.__name__}.{name}")


def apply_graph(ckpt_name: str, module_name: str = NEW_MODULE, motion_module: str = "none"):
    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=ckpt_name)
    apply = g.node(APPLY, model=ckpt.out(0), module_name=module_name, motion_module=motion_module)
    return g, apply


def expect_node_error(run_graph, graph, node, node_type: str, words, tally) -> str:
    """The graph fails at ``node`` with a ValueError whose message holds every word (no other exception type)."""
    try:
        run_graph(graph, outputs=[node])
    except GraphExecutionError as err:
        message = err.exception_message or ""
        if err.node_type != node_type or not isinstance(err.__cause__, ValueError):
            tally.add("failures")
            raise
        missing = [w for w in words if w not in message]
        assert not missing, f"{missing} not in: {message}"
        return message
    tally.add("failures")
    pytest.fail(f"{node_type} accepted a broken file ({words})")


def _state_bytes(sd: dict, metadata: dict | None = None) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in sd.items()}, metadata=metadata)


def module_variants(module, metadata: dict) -> dict[str, bytes]:
    """name -> file bytes of a broken module file."""
    sd = {k: v.detach().clone() for k, v in module.state_dict().items()}
    good = _state_bytes(sd, metadata)
    header_len = struct.unpack("<Q", good[:8])[0]
    key = "inject.middle.attn.proj.weight" if "inject.middle.attn.proj.weight" in sd else sorted(sd)[-1]
    variants = {
        "empty": b"",
        "eight_bytes": good[:8],
        "cut_in_header": good[: 8 + header_len // 2],
        "cut_after_header": good[: 8 + header_len + 16],
        "cut_half": good[: len(good) // 2],
        "cut_last_byte": good[:-1],
        "garbage": os.urandom(4096),
        "huge_header_length": struct.pack("<Q", 2**62) + good[8:200],
        "header_not_json": struct.pack("<Q", 32) + b"{this is not json at all!!!!!!!}" + good[40:],
        "offsets_past_end": good[:8] + good[8:8 + header_len].replace(b'"data_offsets":[0,', b'"data_offsets":[9,')
                                                                + good[8 + header_len:],
    }
    as_int = {k: (v * 1000).to(torch.int32) if v.is_floating_point() else v for k, v in sd.items()}
    variants["int32_tensors"] = _state_bytes(as_int, metadata)
    one_int = dict(sd)
    one_int[key] = sd[key].to(torch.int64)
    variants["one_int64_tensor"] = _state_bytes(one_int, metadata)
    one_bool = dict(sd)
    one_bool[key] = sd[key] > 0
    variants["one_bool_tensor"] = _state_bytes(one_bool, metadata)
    for name, bad in (("nan", float("nan")), ("inf", float("inf")), ("minus_inf", float("-inf"))):
        broken = dict(sd)
        broken[key] = sd[key].clone()
        broken[key].view(-1)[0] = bad
        variants[f"{name}_weight"] = _state_bytes(broken, metadata)
    half_nan = {k: v.half() for k, v in sd.items()}
    half_nan[key] = torch.full_like(half_nan[key], float("nan"))
    variants["fp16_all_nan"] = _state_bytes(half_nan, metadata)
    return variants


def test_broken_module_files(run_graph, comfy_dirs, tiny_sd_checkpoint, tiny_module, mc_core, tally):
    module, good_name = tiny_module
    checkpoint = sub(mc_core, "checkpoint")
    metadata = checkpoint.module_metadata(module.config, "module")
    folder = comfy_dirs.models["microcinema"]
    # the good file loads (the variants below differ from it only by the fault)
    g, apply = apply_graph(tiny_sd_checkpoint, good_name)
    loaded = run_graph(g, outputs=[apply])[apply.id].get_model_object("diffusion_model").microcinema
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in loaded.state_dict().items())
    for name, data in module_variants(module, metadata).items():
        file_name = f"rel_broken_{name}.safetensors"
        (folder / file_name).write_bytes(data)
        tally.add("faults")
        g, apply = apply_graph(tiny_sd_checkpoint, file_name)
        expect_node_error(run_graph, g, apply, APPLY, ("MicroCinema Apply Module", "'module_name'", file_name), tally)
    g, apply = apply_graph(tiny_sd_checkpoint, NEW_MODULE)
    run_graph(g, outputs=[apply])
    tally.add("prompts")


def test_broken_full_checkpoints(run_graph, comfy_dirs, tiny_module, mc_core, tally):
    """The checkpoint loader: truncated files, a module file where a full checkpoint is expected, NaN module part."""
    module, _ = tiny_module
    checkpoint = sub(mc_core, "checkpoint")
    folder = comfy_dirs.models["microcinema"]
    variants = module_variants(module, checkpoint.module_metadata(module.config, "module"))
    cases = {name: variants[name] for name in ("cut_half", "garbage", "empty")}
    cases["module_not_full"] = (folder / tiny_module[1]).read_bytes()
    for name, data in cases.items():
        file_name = f"rel_broken_full_{name}.safetensors"
        (folder / file_name).write_bytes(data)
        tally.add("faults")
        g = Graph()
        loader = g.node("MicroCinemaCheckpointLoader", ckpt_name=file_name)
        expect_node_error(run_graph, g, loader, "MicroCinemaCheckpointLoader",
                          ("MicroCinema Checkpoint Loader", "'ckpt_name'", file_name), tally)


def test_broken_motion_modules(run_graph, comfy_dirs, tiny_sd_checkpoint, tiny_module, mc_core, tally):
    """AnimateDiff-format files (made from the module's own temporal transformers, so the good one fits): the good
    one loads; truncated, integer, NaN/Inf and foreign ones are refused naming 'motion_module'."""
    from safetensors.torch import save

    module, _ = tiny_module
    motion = animatediff_from_module(module, sub(mc_core, "animatediff"))
    assert motion, "the tiny module has temporal transformers"
    folder = comfy_dirs.models["animatediff_models"]
    (folder / "rel_motion_good.safetensors").write_bytes(save(motion))
    g, apply = apply_graph(tiny_sd_checkpoint, NEW_MODULE, "rel_motion_good.safetensors")
    loaded = run_graph(g, outputs=[apply])[apply.id].get_model_object("diffusion_model").microcinema
    key = next(k for k in loaded.state_dict() if ".motion." in k and k.endswith("proj_out.weight"))
    assert torch.equal(loaded.state_dict()[key], module.state_dict()[key]), "the good motion module loads"

    any_key = next(k for k in motion if k.endswith("proj_out.weight"))
    good = save(motion)
    cases = {"cut_half": good[: len(good) // 2], "garbage": os.urandom(2048)}
    for name, bad in (("nan", float("nan")), ("inf", float("inf"))):
        broken = dict(motion)
        broken[any_key] = motion[any_key].clone()
        broken[any_key].view(-1)[0] = bad
        cases[f"{name}_weight"] = save(broken)
    cases["int32_tensors"] = save({k: (v * 1000).to(torch.int32) for k, v in motion.items()})
    cases["not_a_motion_module"] = save({"model.diffusion_model.out.2.bias": torch.zeros(4)})
    for name, data in cases.items():
        file_name = f"rel_motion_{name}.safetensors"
        (folder / file_name).write_bytes(data)
        tally.add("faults")
        g, apply = apply_graph(tiny_sd_checkpoint, NEW_MODULE, file_name)
        expect_node_error(run_graph, g, apply, APPLY, ("MicroCinema Apply Module", "'motion_module'", file_name),
                          tally)


# -- pickles -------------------------------------------------------------------------------------------------

def test_malicious_pickles_never_run(run_graph, comfy_dirs, tiny_sd_checkpoint, tmp_path, tally):
    """.ckpt/.pt/.pth/.bin pickles whose unpickling writes a marker file: refused with a clear error naming the
    input and torch's weights_only loader, and the marker is never written. The payload is real: unpickling a
    copy (in a throw-away subprocess) does write its marker."""
    proof_marker = tmp_path / "proof_marker.txt"
    proof = write_malicious_pickle(tmp_path / "proof.ckpt", proof_marker)
    subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(proof)!r}, weights_only=False)"],
                   cwd=str(tmp_path), capture_output=True, timeout=120)
    assert proof_marker.is_file(), "the malicious pickle fixture must really run code when unpickled unsafely"

    marker = tmp_path / "marker_must_not_exist.txt"
    made = []
    for folder, ext, raw in (("microcinema", "ckpt", False), ("microcinema", "pt", True),
                             ("microcinema", "pth", False), ("animatediff_models", "bin", False),
                             ("animatediff_models", "ckpt", True)):
        name = f"rel_evil_{'raw' if raw else 'zip'}.{ext}"
        path = comfy_dirs.models[folder] / name
        (write_raw_malicious_pickle if raw else write_malicious_pickle)(path, marker)
        made.append((folder, name))
    for folder, name in made:
        tally.add("faults")
        if folder == "microcinema":
            g, apply = apply_graph(tiny_sd_checkpoint, name)
            words = ("'module_name'", name, "weights_only")
        else:
            g, apply = apply_graph(tiny_sd_checkpoint, NEW_MODULE, name)
            words = ("'motion_module'", name, "weights_only")
        expect_node_error(run_graph, g, apply, APPLY, words, tally)
        assert not marker.exists(), f"{name}: unpickling ran code"
    g = Graph()  # the checkpoint loader too
    loader = g.node("MicroCinemaCheckpointLoader", ckpt_name=made[0][1])
    tally.add("faults")
    expect_node_error(run_graph, g, loader, "MicroCinemaCheckpointLoader", ("'ckpt_name'", "weights_only"), tally)
    assert not marker.exists()


def test_plain_weights_only_pickle_is_accepted(run_graph, comfy_dirs, tiny_sd_checkpoint, tiny_module, tally):
    """A .pt holding only tensors (plain or under 'state_dict') loads through torch's weights_only loader."""
    module, _ = tiny_module
    folder = comfy_dirs.models["microcinema"]
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    torch.save(state, str(folder / "rel_plain_module.pt"))
    torch.save({"state_dict": state}, str(folder / "rel_wrapped_module.ckpt"))
    for name in ("rel_plain_module.pt", "rel_wrapped_module.ckpt"):
        g, apply = apply_graph(tiny_sd_checkpoint, name)
        loaded = run_graph(g, outputs=[apply])[apply.id].get_model_object("diffusion_model").microcinema
        tally.add("inputs")
        assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    torch.save({"weights": [1, 2, 3], "note": "no tensors"}, str(folder / "rel_no_tensors.pt"))
    g, apply = apply_graph(tiny_sd_checkpoint, "rel_no_tensors.pt")
    tally.add("faults")
    expect_node_error(run_graph, g, apply, APPLY, ("'module_name'", "rel_no_tensors.pt"), tally)


# -- names that leave the model folders ------------------------------------------------------------------------

ESCAPES = ["../checkpoints/{ckpt}", "../../outside_module.safetensors", "{outside_abs}", "..\\..\\outside.safetensors",
           "sub/../../checkpoints/{ckpt}", "./../microcinema/../checkpoints/{ckpt}"]


@pytest.fixture
def outside_module(comfy_dirs, tiny_module, mc_core):
    """A valid module file next to (not inside) the model folders: anything that loads it escaped."""
    module, _ = tiny_module
    path = comfy_dirs.root / "outside_module.safetensors"
    if not path.is_file():
        sub(mc_core, "checkpoint").save_module(module, str(path))
    return path


def _escapes(tiny_sd_checkpoint, outside_module):
    return [e.format(ckpt=tiny_sd_checkpoint, outside_abs=str(outside_module)) for e in ESCAPES]


def test_escaping_names_fail_validation(run_graph, tiny_sd_checkpoint, outside_module, tally):
    for name in _escapes(tiny_sd_checkpoint, outside_module):
        for node_type, field in ((APPLY, "module_name"), (APPLY, "motion_module"),
                                 ("MicroCinemaCheckpointLoader", "ckpt_name")):
            g = Graph()
            ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
            if node_type == APPLY:
                node = g.node(APPLY, model=ckpt.out(0), module_name=NEW_MODULE, motion_module="none")
            else:
                node = g.node(node_type, ckpt_name="x")
            node.set(**{field: name})
            tally.add("inputs")
            with pytest.raises(GraphValidationError) as info:
                run_graph(g, outputs=[node])
            assert field in info.value.input_names() and repr(name) in str(info.value), str(info.value)


def test_loader_path_resolution_stays_inside(comfy_env, comfy_dirs, run_graph, tiny_sd_checkpoint, outside_module,
                                             mc_core, monkeypatch, tally):
    """Direct calls (no validation in front): the folder lookup never resolves outside the model folders and the
    nodes never open the outside file."""
    loading = sub(mc_core, "loading")
    model_folders = importlib.import_module(comfy_env.pack_module + ".nodes.model_folders")
    roots = [os.path.realpath(p) for p in comfy_dirs.models.values()]
    opened = []
    real_read = loading.read_weights

    def spy(path):
        opened.append(path)
        return real_read(path)

    monkeypatch.setattr(loading, "read_weights", spy)
    g, apply = apply_graph(tiny_sd_checkpoint)
    model = run_graph(g, outputs=[apply])[apply.id]
    apply_cls = comfy_env.node_class(APPLY)
    loader_cls = comfy_env.node_class("MicroCinemaCheckpointLoader")
    for name in _escapes(tiny_sd_checkpoint, outside_module):
        for folder in ("microcinema", "animatediff_models", "checkpoints"):
            try:
                path = model_folders.full_path(folder, name)
            except FileNotFoundError:
                path = None
            assert path is None or any(os.path.realpath(path).startswith(root + os.sep) for root in roots), path
            assert path is None or os.path.realpath(path) != os.path.realpath(outside_module)
        tally.add("inputs", 3)
        with pytest.raises(ValueError, match="module_name"):
            apply_cls.execute(model, name, "none")
        with pytest.raises(ValueError, match="motion_module"):
            apply_cls.execute(model, NEW_MODULE, name)
        with pytest.raises(ValueError, match="ckpt_name"):
            loader_cls.execute(name)
    assert opened == [], f"files were opened: {opened}"
