"""Pytest fixtures of the reliability tests. Test modules import them with
``from harness.reliability_fixtures import *`` (conftest.py is shared and left alone); what is expensive is cached
at module level so a fixture imported into several test modules still does its work once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from . import reliability as rel
from .locations import REPO_ROOT

__all__ = ["tally", "test_image_node", "koala_checkpoint", "inpaint_checkpoint", "taesd16_vae", "tiny_module",
           "mc_core"]

REPORT_PATH = REPO_ROOT / ".cache" / "reliability_counts.json"
_cache: dict[str, object] = {}


class _TestTally:
    def __init__(self, test: str) -> None:
        self.test = test

    def add(self, kind: str, n: int = 1) -> None:
        rel.TALLY.add(kind, n, self.test)

    def time(self, name: str, seconds: float) -> None:
        rel.TALLY.timings[name] = seconds

    def note(self, name: str, text: str) -> None:
        rel.TALLY.notes[name] = text


@pytest.fixture(autouse=True)
def tally(request) -> _TestTally:
    """Counts for the session summary (see harness.reliability.Tally)."""
    rel.install_summary(request.config, REPORT_PATH if not os.environ.get("PYTEST_XDIST_WORKER") else None)
    name = request.node.originalname or request.node.name
    recorder = _TestTally(f"{Path(request.node.fspath).stem}::{name}")
    return recorder


@pytest.fixture
def mc_core(comfy_env):
    """The loaded pack's microcinema_core (the copy the nodes use)."""
    import importlib

    return importlib.import_module(comfy_env.pack_module + ".microcinema_core")


@pytest.fixture
def test_image_node(comfy_env) -> str:
    rel.register_test_nodes(comfy_env.nodes)
    return rel.TEST_IMAGE_NODE


@pytest.fixture
def koala_checkpoint(comfy_dirs) -> str:
    """An SDXL-family (KOALA-700M-shaped) UNet as a checkpoint in the checkpoints folder."""
    if "koala" not in _cache:
        path = rel.ensure_unet_checkpoint("koala700m-unet", rel.KOALA_UNET)
        _cache["koala"] = comfy_dirs.place_model("checkpoints", path, "rel_koala700m_unet.safetensors")
    return _cache["koala"]


@pytest.fixture
def inpaint_checkpoint(comfy_dirs) -> str:
    """A 9-input-channel (SD1.5 inpainting-shaped) tiny UNet as a checkpoint in the checkpoints folder."""
    if "inpaint" not in _cache:
        path = rel.ensure_unet_checkpoint("tiny-sd15-inpaint-unet", rel.INPAINT_SD15_UNET)
        _cache["inpaint"] = comfy_dirs.place_model("checkpoints", path, "rel_tiny_sd15_inpaint_unet.safetensors")
    return _cache["inpaint"]


@pytest.fixture
def taesd16_vae(comfy_dirs, comfy_env) -> str:
    """A 16-latent-channel TAESD (Flux/SD3 family) VAE file in the vae folder."""
    if "taesd16" not in _cache:
        _cache["taesd16"] = comfy_dirs.place_model("vae", rel.ensure_taesd_vae(16), "rel_taesd16.safetensors")
    return _cache["taesd16"]


@pytest.fixture
def tiny_module(run_graph, comfy_dirs, tiny_sd_checkpoint, mc_core):
    """(module, file name): a MicroCinema module built by the node for the tiny SD1.5 base, with every zero-initialised
    layer made non-zero (so a loaded file is distinguishable from a fresh module), saved in models/microcinema."""
    if "module" not in _cache:
        import copy
        import importlib

        import torch

        from .graph import Graph

        g = Graph()
        ckpt = g.node("CheckpointLoaderSimple", ckpt_name=tiny_sd_checkpoint)
        mc = g.node("MicroCinemaApplyModule", model=ckpt.out(0), module_name=rel.NEW_MODULE, motion_module="none")
        model = run_graph(g, outputs=[mc])[mc.id]
        # a copy: the MODEL (and its fresh module) stays in the executor's cache for other tests
        module = copy.deepcopy(model.get_model_object("diffusion_model").microcinema)
        gen = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for key, tensor in module.state_dict().items():
                if tensor.is_floating_point() and not bool(tensor.any()):
                    tensor.copy_(0.01 * torch.randn(tensor.shape, generator=gen).to(tensor.dtype))
        name = "rel_tiny_module.safetensors"
        importlib.import_module(mc_core.__name__ + ".checkpoint").save_module(module, str(comfy_dirs.models["microcinema"] / name))
        _cache["module"] = (module, name)
    return _cache["module"]
