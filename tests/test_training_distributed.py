"""Data-parallel training under torchrun (gloo, 2 CPU processes, tiny SD1.5-shaped base): every rank ends with the
same weights; 2 ranks x batch 1 train like 1 process x batch 2 and like 1 process x batch 1 x grad_accum 2; a
run stopped on 2 ranks resumes on 1 (and 1 -> 2) and ends where an uninterrupted run ends; no staged file is left.

One-process runs execute in this process; two-rank runs are real ``torchrun`` launches of the trainer."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.tiny_models import ensure_tiny_sd15_checkpoint
from pack_import import REPO_ROOT, single_thread_fixture, sub

pytestmark = pytest.mark.training
_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread_fixture)

WORKER = Path(__file__).resolve().parent / "harness" / "ddp_train_worker.py"
STEPS, STOP = 4, 2
TOLERANCE = 1e-5  # relative (norm of the difference over the norm), the bound


def relative_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    num = sum(float(((a[k].double() - b[k].double()) ** 2).sum()) for k in a)
    den = sum(float((b[k].double() ** 2).sum()) for k in b)
    return (num / den) ** 0.5


@pytest.fixture(scope="module")
def setting(mc, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    sub("training.synthetic").write_dataset(root / "data", count=5, frames=6, size=32, seed=2)
    base = ensure_tiny_sd15_checkpoint()
    return root, ["--base", str(base), "--data", str(root / "data"), "--frames", "4", "--size", "32",
                  "--save-every", "1", "--log-every", "1", "--lr", "1e-3", "--text-dropout", "0.3",
                  "--keyframe", "mixed", "--seed", "3", "--device", "cpu"]


def train_here(args: list[str]) -> dict:
    cfg = sub("train").parse_args(args)
    trainer = sub("training.trainer").Trainer(cfg)
    trainer.train()
    return {k: v.detach().clone() for k, v in trainer.module.state_dict().items()}


def torchrun(args: list[str], dump: Path, ranks: int = 2) -> list[dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", str(WORKER),
           str(dump), "--", *args]
    out = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    checkpoint = sub("checkpoint")
    return [checkpoint.read_safetensors(str(dump / f"rank{r}.safetensors"))[0] for r in range(ranks)]


def no_staged_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".") or "staged" in p.name]
    assert not leftovers, f"staged files left in {folder}: {leftovers}"


@pytest.fixture(scope="module")
def reference(setting):
    """1 process x batch 2, uninterrupted."""
    root, args = setting
    return train_here([*args, "--out", str(root / "one_batch2"), "--steps", str(STEPS), "--batch-size", "2",
                       "--workers", "0"])


def test_two_ranks_hold_identical_weights_equal_to_one_process_batch_two(setting, reference):
    root, args = setting
    run = root / "two_batch1"
    ranks = torchrun([*args, "--out", str(run), "--steps", str(STEPS), "--batch-size", "1", "--workers", "1"],
                     root / "dump_two")
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0]), "ranks diverged"
    assert relative_difference(ranks[0], reference) < TOLERANCE
    written = sub("checkpoint").read_safetensors(str(run / "module.safetensors"))[0]
    assert relative_difference(written, reference) < TOLERANCE  # rank 0 wrote what it held
    log = [json.loads(line) for line in (run / "loss.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == list(range(1, STEPS + 1)), "one log line per step (rank 0 only)"
    assert all(e["loss"] > 0 and e["grad_norm"] >= 0 for e in log)
    state = json.loads((run / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["next_ordinal"] == STEPS * 2
    no_staged_files(run)


def test_gradient_accumulation_matches_batch(setting, reference):
    root, args = setting
    accumulated = train_here([*args, "--out", str(root / "one_accum2"), "--steps", str(STEPS), "--batch-size", "1",
                              "--grad-accum", "2", "--workers", "0"])
    assert relative_difference(accumulated, reference) < TOLERANCE


def test_stopped_on_two_ranks_resumes_on_one(setting, reference):
    root, args = setting
    run = root / "two_then_one"
    torchrun([*args, "--out", str(run), "--steps", str(STOP), "--batch-size", "1", "--workers", "0"],
             root / "dump_a")
    assert json.loads((run / "trainer_state.json").read_text())["step"] == STOP
    resumed = train_here([*args, "--out", str(run), "--steps", str(STEPS), "--batch-size", "2", "--workers", "0"])
    assert relative_difference(resumed, reference) < TOLERANCE
    no_staged_files(run)


def test_stopped_on_one_resumes_on_two_ranks(setting, reference):
    root, args = setting
    run = root / "one_then_two"
    train_here([*args, "--out", str(run), "--steps", str(STOP), "--batch-size", "2", "--workers", "0"])
    ranks = torchrun([*args, "--out", str(run), "--steps", str(STEPS), "--batch-size", "1", "--workers", "0"],
                     root / "dump_b")
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    assert relative_difference(ranks[0], reference) < TOLERANCE
    lines = (run / "loss.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, STEPS + 1))
    no_staged_files(run)


def test_gradient_checkpointing_bf16_ema_and_validation_under_ddp(setting):
    """bf16 autocast with the frozen UNet stored in bf16 and gradient checkpointing; rank 0 alone keeps the EMA
    and validates (the other rank waits at the barrier) and the run still ends with identical weights."""
    root, args = setting
    run = root / "ckpt_bf16"
    ranks = torchrun([*args, "--out", str(run), "--steps", "2", "--batch-size", "1", "--workers", "0",
                      "--gradient-checkpointing", "yes", "--mixed-precision", "bf16", "--frozen-dtype", "bf16",
                      "--ema-decay", "0.9", "--val-every", "1", "--val-data", "synthetic:1", "--val-steps", "1",
                      "--val-frames", "4", "--val-size", "32"], root / "dump_c")
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    log = [json.loads(line) for line in (run / "loss.jsonl").read_text().splitlines()]
    assert all(e["loss"] == e["loss"] and e["loss"] > 0 for e in log)
    validations = [json.loads(line) for line in (run / "validation.jsonl").read_text().splitlines()]
    assert [(v["step"], v["weights"]) for v in validations] == [(1, "ema"), (2, "ema")]
    assert (run / "module_ema.safetensors").is_file()
    no_staged_files(run)
