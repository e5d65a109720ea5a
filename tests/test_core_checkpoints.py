"""MicroCinema checkpoints: safetensors round trips, config detection from keys/shapes, and clear refusals.

Module files hold ``temporal.*``, ``inject.*``, ``appearnet.*``; full files an SD checkpoint plus the module
under ``microcinema.*``. The config is read from keys and shapes (metadata only adds what shapes cannot tell,
the head count); anything that does not fit the base model is refused with the offending keys named.
"""
from __future__ import annotations

import json
import os

import pytest
import torch

from pack_import import module_operations, randomize, single_thread_fixture, sub, tiny_unet


_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread_fixture)


@pytest.fixture(scope="module")
def unet(mc):
    return tiny_unet(seed=60)


def _module(unet, seed=61, **cfg):
    module_mod = sub("module")
    module = module_mod.build_module(unet, module_mod.ModuleConfig(**cfg), module_operations())
    return randomize(module, seed=seed, std=0.1)


@pytest.fixture(scope="module")
def module(unet):
    return _module(unet)


def _assert_same_state(a: dict, b: dict):
    assert set(a) == set(b), (sorted(set(a) ^ set(b)))[:10]
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_module_round_trip_bitwise(mc, unet, module, tmp_path):
    checkpoint = sub("checkpoint")
    path = str(tmp_path / "mc.safetensors")
    checkpoint.save_module(module, path, extra_metadata={"steps": 1200, "note": "test"})
    sd, metadata = checkpoint.read_safetensors(path)
    _assert_same_state(sd, module.state_dict())
    assert metadata["microcinema_format"] == str(mc.FORMAT_VERSION)
    assert metadata["microcinema_kind"] == "module"
    assert json.loads(metadata["microcinema_config"]) == module.config.to_dict()
    assert metadata["steps"] == "1200" and metadata["note"] == "test"
    loaded = checkpoint.module_from_state_dict(unet, sd, module_operations(), metadata)
    assert loaded.config == module.config
    _assert_same_state(loaded.state_dict(), module.state_dict())
    assert checkpoint.checkpoint_kind(sd) == "module"


def test_half_precision_save_loads_rounded_values(mc, unet, module, tmp_path):
    checkpoint = sub("checkpoint")
    path = str(tmp_path / "mc16.safetensors")
    checkpoint.save_module(module, path, dtype=torch.float16)
    sd, metadata = checkpoint.read_safetensors(path)
    assert all(v.dtype == torch.float16 for v in sd.values())
    loaded = checkpoint.module_from_state_dict(unet, sd, module_operations(), metadata)
    original = module.state_dict()
    for key, tensor in loaded.state_dict().items():
        assert tensor.dtype == torch.float32
        assert torch.equal(tensor, original[key].half().float()), key


def _expected(cfg: dict):
    module_mod = sub("module")
    expected = module_mod.ModuleConfig(**cfg)
    if not expected.motion_modules:
        expected.motion_mid_block = False  # nothing to detect: no motion module anywhere
    return expected


DETECT_CONFIGS = {
    "default": {},
    "no_appearnet": {"appearnet": False},
    "no_motion": {"motion_modules": False},
    "no_mid_motion": {"motion_mid_block": False},
    "two_motion_layers": {"motion_layers": 2},
    "no_temporal_convs": {"temporal_convs": False, "appearnet": False},
    "one_attention_ff2": {"motion_attention_blocks": 1, "motion_ff_mult": 2},
}


@pytest.mark.parametrize("name", list(DETECT_CONFIGS))
def test_detect_config_from_keys_and_shapes(mc, unet, name):
    checkpoint = sub("checkpoint")
    cfg = DETECT_CONFIGS[name]
    module = sub("module").build_module(unet, sub("module").ModuleConfig(**cfg), module_operations())
    sd = module.state_dict()
    detected = checkpoint.detect_config(sd)  # no metadata: keys and shapes only
    assert detected == _expected(cfg), (detected, cfg)
    rebuilt = sub("module").build_module(unet, detected, module_operations(), fresh=False)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in sd.items()}


def test_detect_config_heads_from_metadata(mc, unet):
    checkpoint = sub("checkpoint")
    module = sub("module").build_module(unet, sub("module").ModuleConfig(motion_heads=4), module_operations())
    meta = checkpoint.module_metadata(module.config, "module")
    assert checkpoint.detect_config(module.state_dict(), meta).motion_heads == 4
    assert checkpoint.detect_config(module.state_dict(), {"microcinema_config": "{not json"}).motion_heads == 8


def _load_error(unet, sd) -> str:
    checkpoint = sub("checkpoint")
    with pytest.raises(checkpoint.MicroCinemaCheckpointError) as info:
        checkpoint.module_from_state_dict(unet, sd, module_operations(), source="bad.safetensors")
    message = str(info.value)
    assert "bad.safetensors" in message
    return message


def test_wrong_shape_named(mc, unet, module):
    sd = dict(module.state_dict())
    key = "temporal.input.4.res.0.t1.conv.weight"
    sd[key] = torch.zeros(64, 64, 3, 3)
    message = _load_error(unet, sd)
    assert "wrong shapes" in message and key in message and "(64, 64, 3, 3)" in message


def test_missing_keys_named(mc, unet, module):
    sd = dict(module.state_dict())
    gone = ["temporal.output.5.motion.proj_out.bias", "inject.middle.attn.proj.weight"]
    for key in gone:
        del sd[key]
    message = _load_error(unet, sd)
    assert "missing keys" in message and all(key in message for key in gone)


def test_extra_keys_named(mc, unet, module):
    sd = dict(module.state_dict())
    sd["temporal.input.1.res.0.t1.surprise"] = torch.zeros(3)
    message = _load_error(unet, sd)
    assert "unexpected keys" in message and "temporal.input.1.res.0.t1.surprise" in message


@pytest.mark.parametrize("drop", [".ff.net.2.weight", ".attention_blocks.", ".transformer_blocks."])
def test_partial_motion_modules_named_not_crash(mc, unet, module, drop):
    """A damaged file whose motion modules lack the tensors the config is read from still gets the named-keys
    error (not a StopIteration / bare ValueError from config detection)."""
    sd = {k: v for k, v in module.state_dict().items() if drop not in k}
    message = _load_error(unet, sd)
    assert "missing keys" in message


def test_module_for_another_unet_refused(mc, module):
    """A module made for the 2-level tiny UNet does not fit a 4-level one of other widths."""
    other = tiny_unet(sub("configs").sd_unet_config(model_channels=64, channel_mult=(1, 1, 2, 2),
                                                    context_dim=64, num_heads=4), seed=62)
    message = _load_error(other, module.state_dict())
    assert "does not fit this base model" in message


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_refused(mc, unet, module, bad):
    sd = {k: v.clone() for k, v in module.state_dict().items()}
    key = "inject.input.1.attn.proj.weight"
    sd[key].view(-1)[3] = bad
    message = _load_error(unet, sd)
    assert "NaN/Inf" in message and key in message


def test_full_checkpoint_save_and_split(mc, unet, module, tmp_path):
    checkpoint = sub("checkpoint")
    g = torch.Generator().manual_seed(63)
    sd_part = {
        "model.diffusion_model.input_blocks.0.0.weight": torch.randn(32, 4, 3, 3, generator=g),
        "model.diffusion_model.out.2.bias": torch.randn(4, generator=g),
        "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.randn(8, generator=g),
        "first_stage_model.decoder.conv_out.weight": torch.randn(3, 8, 3, 3, generator=g).half(),
    }
    path = str(tmp_path / "full.safetensors")
    checkpoint.save_full(module, sd_part, path)
    sd, metadata = checkpoint.read_safetensors(path)
    assert metadata["microcinema_kind"] == "full"
    assert checkpoint.checkpoint_kind(sd) == "full"
    assert all(k.startswith("microcinema.") for k in sd if k not in sd_part)
    got_sd, got_module = checkpoint.split_full(sd)
    _assert_same_state(got_sd, sd_part)
    _assert_same_state(got_module, module.state_dict())
    loaded = checkpoint.module_from_state_dict(unet, got_module, module_operations(), metadata)
    _assert_same_state(loaded.state_dict(), module.state_dict())


def test_checkpoint_kind(mc, module):
    checkpoint = sub("checkpoint")
    t = torch.zeros(1)
    assert checkpoint.checkpoint_kind(module.state_dict()) == "module"
    assert checkpoint.checkpoint_kind({"temporal.input.1.res.0.t1.conv.weight": t}) == "module"
    assert checkpoint.checkpoint_kind({"model.diffusion_model.out.2.bias": t,
                                       "microcinema.temporal.middle.motion.norm.weight": t}) == "full"
    assert checkpoint.checkpoint_kind(
        {"down_blocks.0.motion_modules.0.temporal_transformer.norm.weight": t}) == "animatediff"
    assert checkpoint.checkpoint_kind({"model.diffusion_model.out.2.bias": t}) == "unknown"
    assert checkpoint.checkpoint_kind({"foo.bar": t}) == "unknown"
    assert checkpoint.checkpoint_kind({}) == "unknown"


@pytest.mark.reliability
@pytest.mark.parametrize("name", ["module.ckpt", "module.pt", "module.bin", "module.safetensors.zip"])
def test_read_safetensors_refuses_other_formats(mc, tmp_path, name):
    checkpoint = sub("checkpoint")
    path = tmp_path / name
    path.write_bytes(b"\x80\x02}q\x00.")  # a pickle; must not even be opened
    with pytest.raises(checkpoint.MicroCinemaCheckpointError, match="only .safetensors"):
        checkpoint.read_safetensors(str(path))


@pytest.mark.reliability
def test_truncated_or_garbage_safetensors(mc, module, tmp_path):
    checkpoint = sub("checkpoint")
    path = tmp_path / "ok.safetensors"
    checkpoint.save_module(module, str(path))
    data = path.read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 1):
        broken = tmp_path / f"cut{cut}.safetensors"
        broken.write_bytes(data[:cut])
        with pytest.raises(checkpoint.MicroCinemaCheckpointError, match="truncated or corrupted"):
            checkpoint.read_safetensors(str(broken))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(checkpoint.MicroCinemaCheckpointError):
        checkpoint.read_safetensors(str(garbage))
    with pytest.raises(checkpoint.MicroCinemaCheckpointError):
        checkpoint.read_safetensors(str(tmp_path / "does_not_exist.safetensors"))


@pytest.mark.reliability
def test_write_atomic_success_leaves_no_temp(mc, tmp_path):
    checkpoint = sub("checkpoint")
    path = tmp_path / "out.safetensors"
    tensors = {"a": torch.arange(6.0).reshape(2, 3).t(), "b": torch.ones(2)}  # "a" non-contiguous
    checkpoint.write_safetensors_atomic(tensors, str(path), {"k": "v"})
    assert sorted(os.listdir(tmp_path)) == ["out.safetensors"]
    sd, meta = checkpoint.read_safetensors(str(path))
    assert torch.equal(sd["a"], tensors["a"]) and meta == {"k": "v"}


@pytest.mark.reliability
def test_write_atomic_failure_keeps_target(mc, tmp_path, monkeypatch):
    import safetensors.torch

    checkpoint = sub("checkpoint")
    path = tmp_path / "out.safetensors"
    checkpoint.write_safetensors_atomic({"a": torch.ones(3)}, str(path), {"version": "old"})
    before = path.read_bytes()

    # A real failure inside safetensors: two names for one storage.
    shared = torch.zeros(4)
    with pytest.raises(Exception):
        checkpoint.write_safetensors_atomic({"x": shared, "y": shared}, str(path), {"version": "new"})
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["out.safetensors"]

    # A failure after part of the file was written (disk full, interrupted).
    real_save = safetensors.torch.save_file

    def half_then_fail(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as f:
            f.truncate(10)
        raise OSError("No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", half_then_fail)
    with pytest.raises(OSError, match="No space"):
        checkpoint.write_safetensors_atomic({"a": torch.zeros(3)}, str(path), {"version": "new"})
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["out.safetensors"]
    assert checkpoint.read_safetensors(str(path))[1] == {"version": "old"}


@pytest.mark.reliability
def test_read_weights_pickle_only_through_weights_only(mc, tmp_path):
    """loading.read_weights: plain tensor dicts in .pt/.ckpt pass torch's weights_only loader; anything that
    needs code to unpickle is refused."""
    checkpoint, loading = sub("checkpoint"), sub("loading")
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": {"a": torch.ones(2)}}, str(plain))
    sd, meta = loading.read_weights(str(plain))
    assert set(sd) == {"a"} and meta == {}
    evil = tmp_path / "evil.ckpt"
    torch.save({"a": torch.ones(2), "obj": _Opaque()}, str(evil))
    with pytest.raises(checkpoint.MicroCinemaCheckpointError, match="weights_only"):
        loading.read_weights(str(evil))


class _Opaque:
    pass
