"""Interruption and crashes: sampling interrupted mid-run in the in-process executor (the next graph runs; the HTTP
variant is in test_nodes_server.py), a training run interrupted after step 2 that resumes from its last checkpoint,
and checkpoint writes that crash half-way (the previous checkpoint stays intact, no partial file is left)."""
from __future__ import annotations

import gc
import importlib
import json
from pathlib import Path

import pytest
import torch

from harness.reliability import video_graph
from harness.reliability_fixtures import *  # noqa: F401,F403  (fixtures)
from harness.runner import GraphInterrupted

pytestmark = pytest.mark.reliability


def sub(mc_core, name):
    return importlib.import_module(f"{mc_core.__name__}.{name}")


@pytest.mark.graph
def test_sampling_interrupted_then_next_graph_runs(run_graph, tiny_sd_checkpoint, tally):
    import comfy.model_management
    import comfy.utils

    g, refs = video_graph(tiny_sd_checkpoint, steps=6, seed=901, length=2)
    real_hook = comfy.utils.PROGRESS_BAR_HOOK
    seen = []

    def interrupt_after_first_step(value, total, preview, *args, **kwargs):
        seen.append(value)
        if value == 1:
            comfy.model_management.interrupt_current_processing(True)
        return real_hook(value, total, preview, *args, **kwargs)

    comfy.utils.set_progress_bar_global_hook(interrupt_after_first_step)
    try:
        with pytest.raises(GraphInterrupted) as info:
            run_graph(g, outputs=[refs["ksampler"]])
    finally:
        comfy.utils.set_progress_bar_global_hook(real_hook)
    tally.add("faults")
    assert info.value.report.get("node_id") == refs["ksampler"].id
    assert max(seen) < 6
    g2, refs2 = video_graph(tiny_sd_checkpoint, steps=2, seed=902, length=2)
    out = run_graph(g2, outputs=[refs2["ksampler"]])[refs2["ksampler"].id]["samples"]
    tally.add("prompts")
    assert out.shape == (2, 4, 4, 4) and torch.isfinite(out).all()
    # the interrupted prompt itself runs to the end when queued again
    out = run_graph(g, outputs=[refs["ksampler"]])[refs["ksampler"].id]["samples"]
    tally.add("prompts")
    assert torch.isfinite(out).all()


# -- training --------------------------------------------------------------------------------------------------

def _config(mc_core, comfy_dirs, tiny_sd_checkpoint, root: Path, steps: int):
    synthetic = sub(mc_core, "training.synthetic")
    trainer_mod = sub(mc_core, "training.trainer")
    data = root / "data"
    if not data.is_dir():
        synthetic.write_dataset(data, count=2, frames=2, size=16, seed=0)
    base = str(comfy_dirs.models["checkpoints"] / tiny_sd_checkpoint)
    return trainer_mod, trainer_mod.TrainConfig(base=base, data=str(data), out=str(root / "run"), frames=2, size=16,
                                                steps=steps, save_every=1, log_every=1, text_dropout=0.5, lr=1e-3,
                                                workers=0, keep_last=0, tensorboard="no")


def _run_files(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir())


def _optimizer_tensors(optimizer) -> dict[str, torch.Tensor]:
    return {f"{i}.{name}": value for i, state in optimizer.state_dict()["state"].items()
            for name, value in state.items() if torch.is_tensor(value)}


@pytest.mark.training
def test_training_interrupted_resumes_from_last_checkpoint(mc_core, comfy_env, comfy_dirs, tiny_sd_checkpoint,
                                                            tmp_path, tally):
    trainer_mod, cfg = _config(mc_core, comfy_dirs, tiny_sd_checkpoint, tmp_path, steps=5)
    trainer = trainer_mod.Trainer(cfg)

    def ctrl_c_after_step_2(t):
        if t.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trainer.train(on_step=ctrl_c_after_step_2)
    tally.add("faults")
    assert trainer.step == 2
    run = Path(cfg.out)
    assert _run_files(run) == ["loss.jsonl", "module.safetensors", "optimizer.safetensors", "trainer_state.json"]
    assert json.loads((run / "trainer_state.json").read_text())["step"] == 2
    weights = {k: v.detach().clone() for k, v in trainer.module.state_dict().items()}
    moments = {k: v.clone() for k, v in _optimizer_tensors(trainer.optimizer).items()}
    del trainer
    gc.collect()

    cfg.steps = 3
    resumed = trainer_mod.Trainer(cfg)
    assert resumed.step == 2
    assert all(torch.equal(v, weights[k]) for k, v in resumed.module.state_dict().items())
    restored = _optimizer_tensors(resumed.optimizer)
    assert restored.keys() == moments.keys() and all(torch.equal(restored[k], moments[k]) for k in moments)
    # every sample's randomness derives from (seed, sample ordinal): the resumed run continues at the next ordinal
    assert resumed.loop.next_ordinal == 2 * resumed.loop.samples_per_step
    resumed.train()
    tally.add("prompts")
    assert resumed.step == 3
    steps = [json.loads(line)["step"] for line in (run / "loss.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    del resumed
    gc.collect()


@pytest.mark.training
def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(mc_core, comfy_env, comfy_dirs, tiny_sd_checkpoint,
                                                                  tmp_path, monkeypatch, tally):
    """safetensors' save_file writes half the file and raises (disk full, killed) on the 1st call of a save (the
    module file) and, separately, on its 2nd (the optimizer file, after the module file was written): every file of
    the previous checkpoint is intact, no partial file remains, and a new trainer resumes that checkpoint."""
    import safetensors.torch

    trainer_mod, cfg = _config(mc_core, comfy_dirs, tiny_sd_checkpoint, tmp_path, steps=1)
    trainer = trainer_mod.Trainer(cfg)
    trainer.train()
    run = Path(cfg.out)
    files = _run_files(run)
    before = {name: (run / name).read_bytes() for name in files}
    weights = {k: v.detach().clone() for k, v in trainer.module.state_dict().items()}

    real_save = safetensors.torch.save_file
    for crash_at in (1, 2):
        calls = []

        def half_then_crash(tensors, filename, metadata=None):
            calls.append(filename)
            real_save(tensors, filename, metadata=metadata)
            if len(calls) == crash_at:
                size = Path(filename).stat().st_size
                with open(filename, "r+b") as f:
                    f.truncate(size // 2)
                raise OSError(28, "No space left on device")

        monkeypatch.setattr(safetensors.torch, "save_file", half_then_crash)
        with torch.no_grad():  # the next checkpoint differs from the saved one
            for p in trainer.module.parameters():
                p.add_(0.01)
        trainer.loop.step += 1
        with pytest.raises(OSError, match="No space"):
            trainer.save()
        monkeypatch.setattr(safetensors.torch, "save_file", real_save)
        tally.add("faults")
        assert len(calls) == crash_at
        assert _run_files(run) == files, f"partial files left: {sorted(set(_run_files(run)) - set(files))}"
        changed = [name for name in files if (run / name).read_bytes() != before[name]]
        assert changed == [], f"crash at write {crash_at}: the previous checkpoint changed: {changed}"
    del trainer
    gc.collect()

    resumed = trainer_mod.Trainer(cfg)
    assert resumed.step == 1
    assert all(torch.equal(v, weights[k]) for k, v in resumed.module.state_dict().items())
    del resumed
    gc.collect()
