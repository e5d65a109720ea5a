"""Training with our own code: a few steps on synthetic clips, resume, and the checkpoint loading in a graph."""
from __future__ import annotations

import json

import pytest
import torch

from harness.sd_graphs import trained_module_graph


@pytest.mark.training
def test_synthetic_clips_move_as_captioned(mc, tmp_path):
    synthetic = importlib_sub(mc, "training.synthetic")
    specs = synthetic.write_dataset(tmp_path, count=6, frames=6, size=48, seed=1)
    for i, spec in enumerate(specs):
        folder = tmp_path / f"clip_{i:05d}"
        assert (folder / "caption.txt").read_text().strip() == spec.caption
        frames = [synthetic.render_frame(spec, t, 48) for t in (0, 5)]
        masks = [(f.astype(int) == synthetic.COLOURS[spec.colour]).all(-1) for f in frames]
        ys, xs = [torch.tensor(m).nonzero().float().mean(0) for m in masks]
        dx, dy = synthetic.DIRECTIONS[spec.direction]
        moved = (xs - ys).tolist()  # (dy, dx) of the centroid
        assert moved[1] * dx >= 0 and moved[0] * dy >= 0 and abs(moved[0]) + abs(moved[1]) > 2


def importlib_sub(mc, name):
    import importlib

    return importlib.import_module(mc.__name__ + "." + name)


@pytest.mark.training
def test_train_resume_and_load_in_comfyui(mc, comfy_env, comfy_dirs, tiny_sd_checkpoint, run_graph, tmp_path):
    synthetic = importlib_sub(mc, "training.synthetic")
    trainer_mod = importlib_sub(mc, "training.trainer")
    data = tmp_path / "data"
    synthetic.write_dataset(data, count=2, frames=4, size=32, seed=0)
    base = str(comfy_dirs.models["checkpoints"] / tiny_sd_checkpoint)
    cfg = trainer_mod.TrainConfig(base=base, data=str(data), out=str(tmp_path / "run"), frames=4, size=32,
                                  steps=2, save_every=1, log_every=1, text_dropout=0.5, lr=1e-3,
                                  workers=0)
    trainer = trainer_mod.Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.module.state_dict().items()}
    loss = trainer.train()
    assert loss == loss and loss > 0  # finite
    changed = [k for k, v in trainer.module.state_dict().items() if not torch.equal(v, before[k])]
    assert any(".t2.conv." in k for k in changed), "temporal convs must receive gradients"
    log_lines = [json.loads(line) for line in (tmp_path / "run" / "loss.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log_lines] == [1, 2]

    # resume: a new trainer on the same folder continues at step 2 with the saved weights and optimizer
    cfg.steps = 3
    resumed = trainer_mod.Trainer(cfg)
    assert resumed.step == 2
    saved = trainer.module.state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in resumed.module.state_dict().items())
    assert resumed.optimizer.state_dict()["state"], "optimizer state restored"
    resumed.train()
    assert resumed.step == 3

    # the module file loads through the node on the same base, and samples
    target = comfy_dirs.models["microcinema"] / "trained_run.safetensors"
    target.write_bytes((tmp_path / "run" / "module.safetensors").read_bytes())
    g, ks = trained_module_graph(tiny_sd_checkpoint, target.name)
    result = run_graph(g, outputs=[ks])
    assert torch.isfinite(result[ks.id]["samples"]).all()


@pytest.mark.training
def test_train_cli_help_runs(comfy_env):
    import subprocess
    import sys

    from pack_import import REPO_ROOT

    out = subprocess.run([sys.executable, "-m", "microcinema_core.train", "--help"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--noise-prior-lambda" in out.stdout and "--data" in out.stdout
