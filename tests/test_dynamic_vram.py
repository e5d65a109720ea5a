"""ComfyUI's dynamic VRAM loading (ModelPatcherDynamic + comfy-aimdo, the default on NVIDIA GPUs in the newest
releases) and the MicroCinema MODEL, as far as it runs without CUDA (issue 17 part 4).

comfy-aimdo's virtual-memory arena and pinned host buffers need CUDA; what they act on is ComfyUI Python that runs
here: lazily built comfy.ops layers (``comfy.memory_management.aimdo_enabled``), which modules a dynamic load
visits (``ModelPatcher._load_list``), and the order in which ModelPatcherDynamic undoes object patches and restores
the weights it force-loaded. The real load/offload/partial load on a GPU is scripts/gpu_check.sh's business
(scripts/gpu_check_comfy.py dynamic).
"""
from __future__ import annotations

import pytest
import torch

from pack_import import single_thread_fixture, sub

pytestmark = pytest.mark.graph

_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread_fixture)


def _base(comfy_dirs, tiny_sd_checkpoint):
    import comfy.sd

    path = str(comfy_dirs.models["checkpoints"] / tiny_sd_checkpoint)
    return comfy.sd.load_checkpoint_guess_config(path, output_vae=False, output_clip=False)[0]


def _needs_dynamic_vram():
    import comfy.model_patcher

    if not hasattr(comfy.model_patcher, "ModelPatcherDynamic"):
        pytest.skip("this ComfyUI has no dynamic VRAM loading (ModelPatcherDynamic)")
    return comfy.model_patcher.ModelPatcherDynamic


@pytest.fixture
def lazy_layers(comfy_env, monkeypatch):
    """Call it to put comfy.ops as ComfyUI's main.py leaves it when dynamic VRAM is on: Linear/Embedding built
    without weights. (Only after the checkpoint is loaded: with the flag on, ComfyUI's loader memory-maps files
    through comfy-aimdo, which needs CUDA.)"""
    memory_management = pytest.importorskip("comfy.memory_management")
    if not hasattr(memory_management, "aimdo_enabled"):
        pytest.skip("this ComfyUI builds every layer with its weights")
    return lambda: monkeypatch.setattr(memory_management, "aimdo_enabled", True)


def test_lazy_layers_are_what_comfyui_builds(comfy_env, lazy_layers):
    """The premise: with dynamic VRAM on, a comfy.ops Linear has no weight until a state dict is loaded."""
    import comfy.ops

    lazy_layers()
    assert comfy.ops.manual_cast.Linear(4, 4).weight is None


def test_new_module_with_dynamic_vram_is_the_eager_one(mc, comfy_dirs, tiny_sd_checkpoint, lazy_layers, monkeypatch):
    """Exact parity: a fresh module (text sign on, so Linear layers of our own are in it) built while dynamic VRAM
    is on equals, tensor for tensor, the one built with it off; its Linear layers have weights."""
    import comfy.memory_management

    model = _base(comfy_dirs, tiny_sd_checkpoint)
    cfg = sub("module", mc).ModuleConfig(motion_text_sign=2)
    lazy_layers()
    torch.manual_seed(0)
    lazy = sub("patching", mc).new_module(model, cfg)
    monkeypatch.setattr(comfy.memory_management, "aimdo_enabled", False)
    torch.manual_seed(0)
    eager = sub("patching", mc).new_module(model, cfg)
    assert comfy.memory_management.aimdo_enabled is False
    a, b = lazy.state_dict(), eager.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(isinstance(m, torch.nn.Linear) for m in lazy.modules())
    assert all(p is not None for m in lazy.modules() for p in m.parameters(recurse=False))


def test_module_loads_from_a_file_with_dynamic_vram(mc, comfy_dirs, tiny_sd_checkpoint, lazy_layers):
    """A saved module loads (the checkpoint loader copies into the built layers' tensors) and samples."""
    model = _base(comfy_dirs, tiny_sd_checkpoint)
    lazy_layers()
    patching, checkpoint = sub("patching", mc), sub("checkpoint", mc)
    module = patching.new_module(model, sub("module", mc).ModuleConfig(motion_text_sign=2))
    sd = {k: torch.randn_like(v) * 0.01 for k, v in module.state_dict().items()}
    loaded = checkpoint.module_from_state_dict(patching.module_base(model), sd, patching.MODULE_OPERATIONS)
    got = loaded.state_dict()
    assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k].to(got[k].dtype)) for k in sd)


def test_dynamic_load_visits_every_module_weight(mc, comfy_dirs, tiny_sd_checkpoint):
    """Every parameter of the module sits in a leaf layer a (dynamic) load moves: a comfy.ops layer (cast per call,
    staged in the VRAM arena) or a layer whose weights the loader moves itself. A parameter held by a module with
    children would only be moved by ``default_device`` without a backup. The patcher's size counts the module."""
    import comfy.model_management

    model = _base(comfy_dirs, tiny_sd_checkpoint)
    video = sub("loading", mc).microcinema_model(model, None)
    module = video.get_model_object("diffusion_model").microcinema
    assert video.model_size() == model.model_size() + comfy.model_management.module_size(module)
    video.patch_model(load_weights=False)
    try:
        try:
            listed = video._load_list(for_dynamic=True)
        except TypeError:  # releases before dynamic VRAM
            listed = video._load_list()
        visited = {f"{name}.{p}" for *_, name, _m, params in listed for p in params}
        ours = {k for k, _ in video.model.named_parameters() if k.startswith("diffusion_model.microcinema.")}
        assert ours and ours <= visited, sorted(ours - visited)[:5]
        assert not list(module.buffers()), "buffers are force-moved and backed up by name: none expected"
    finally:
        video.unpatch_model(unpatch_weights=False)
    assert type(model.model.diffusion_model).__name__ == "UNetModel"


class _EmptyPins(dict):
    """ModelPatcherDynamic's per-device pin state with nothing pinned (pinning needs CUDA; nothing here pins)."""

    def __missing__(self, key):
        return (None, [], [-1], [0], [0], {})


def _as_dynamic(patcher):
    """``patcher`` (a CPU ModelPatcher) viewed as a ModelPatcherDynamic on a CUDA device that is never touched:
    no VRAM arena exists, no pin is registered, so ModelPatcherDynamic's own unpatch code runs in pure Python."""
    dynamic_class = _needs_dynamic_vram()
    dynamic = object.__new__(dynamic_class)
    dynamic.__dict__.update(patcher.__dict__)
    dynamic.load_device = torch.device("cuda", 0)
    dynamic.non_dynamic_delegate_model = None
    patcher.model.dynamic_vbars = {}
    patcher.model.dynamic_pins = {dynamic.load_device: _EmptyPins(hostbufs_initialized=True)}
    return dynamic


def _loaded_dynamic_video(mc, comfy_dirs, tiny_sd_checkpoint):
    """What ModelPatcherDynamic.load leaves, in ComfyUI's own code: the object patch applied, and the module's small
    weights (and one SD weight) force-cast to the load device with a backup by name, as load's force_load_param
    does. Returns (plain SD patcher, video patcher, original tensors by key, the module's keys)."""
    model = _base(comfy_dirs, tiny_sd_checkpoint)
    video = _as_dynamic(sub("loading", mc).microcinema_model(model, None))
    video.patch_model(load_weights=False)
    params = dict(video.model.named_parameters())
    small = [k for k, p in params.items()
             if k.startswith("diffusion_model.microcinema.") and p.numel() * p.element_size() <= 16 * 1024][:6]
    sd_key = next(k for k in params if k.startswith("diffusion_model.input_blocks."))
    originals = {k: params[k] for k in small + [sd_key]}
    for key in originals:
        video.patch_weight_to_device(key, device_to=torch.device("cpu"), force_cast=True)
    # force-cast copies now stand in the model (a real load would have put them on the GPU)
    assert all(dict(video.model.named_parameters())[k].data_ptr() != originals[k].data_ptr() for k in originals)
    return model, video, originals, small


def _assert_restored(model, video, originals, small):
    assert type(model.model.diffusion_model).__name__ == "UNetModel"
    assert not video.backup
    module = video.get_model_object("diffusion_model").microcinema
    now = dict(module.named_parameters(prefix="diffusion_model.microcinema"))
    # ComfyUI re-wraps a restored tensor in a new Parameter: the storage is the original's
    assert all(now[k].data_ptr() == originals[k].data_ptr() for k in small)
    sd_now = dict(model.model.named_parameters())
    assert all(sd_now[k].data_ptr() == originals[k].data_ptr() for k in originals if k not in small)


def test_dynamic_unload_restores_module_weights(mc, comfy_dirs, tiny_sd_checkpoint):
    """Full unload (LoadedModel.model_unload -> detach -> ModelPatcherDynamic.unpatch_model): ComfyUI undoes the
    object patches, then restores backups by name. Without the pack's eject hook: AttributeError ('UNetModel'
    object has no attribute 'microcinema')."""
    model, video, originals, small = _loaded_dynamic_video(mc, comfy_dirs, tiny_sd_checkpoint)
    video.detach(unpatch_all=True)
    _assert_restored(model, video, originals, small)


def test_stage_one_model_loads_after_the_video_model(mc, comfy_dirs, tiny_sd_checkpoint):
    """The demo workflows' order on a GPU: the video MODEL is loaded, then another clone of the same checkpoint
    (stage 1's plain SD) is. load_models_gpu detaches the loaded clone without unpatching, and the new clone's
    ModelPatcherDynamic.partially_load undoes the old object patches, applies its own (none) and starts load() with
    restore_loaded_backups over the backups all clones share. Without the eject hook: AttributeError."""
    model, video, originals, small = _loaded_dynamic_video(mc, comfy_dirs, tiny_sd_checkpoint)
    video.detach(unpatch_all=False)  # load_models_gpu, for the loaded clone of the model it is about to load
    plain = _as_dynamic(model.clone())
    assert plain.backup is video.backup, "clones share the backups"
    plain.unpatch_model(plain.offload_device, unpatch_weights=False)  # partially_load's first steps, then load()'s
    plain.patch_model(load_weights=False)
    plain.restore_loaded_backups()
    _assert_restored(model, video, originals, small)
