"""Knowing whether training works: EMA of the weights (formula, save, resume, loads in ComfyUI), the learning-rate
schedule, numbered checkpoints kept to the last K, the training log (JSONL + TensorBoard) and validation videos
written during training with figures that are those of the written files."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from harness.sd_graphs import trained_module_graph
from harness.tiny_models import ensure_tiny_sd15_checkpoint
from pack_import import single_thread_fixture, sub

pytestmark = pytest.mark.training
_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread_fixture)


# -- formulas against independent computations --------------------------------------------------------------------

def test_ema_follows_the_warmed_up_decay(mc):
    ema_lib = sub("training.ema")
    model = torch.nn.Linear(3, 2)
    ema = ema_lib.EMA(model, decay=0.9, warmup=10)
    expected = None
    for n in range(6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        current = [p.detach().clone() for p in model.parameters()]
        if expected is None:
            expected = current  # the first update copies the weights
        else:
            d = min(0.9, (1 + n) / (10 + n))  # n updates so far
            expected = [d * e + (1 - d) * c for e, c in zip(expected, current)]
        ema.update(model)
    for got, want in zip(ema.module.parameters(), expected):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    assert ema.updates == 6


def test_learning_rate_schedule(mc):
    schedule = sub("training.schedule")
    assert [schedule.lr_factor(s, 4, 100) for s in (0, 1, 3, 50)] == [0.25, 0.5, 1.0, 1.0]
    # cosine: lr(t) = min + (1 - min) (1 + cos(pi (t - w) / (T - w))) / 2 after the warm-up
    for step in (4, 10, 52, 99, 150):
        progress = min(1.0, (step - 4) / 96)
        want = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
        assert schedule.lr_factor(step, 4, 100, "cosine", 0.1) == pytest.approx(want, rel=1e-12)
    assert schedule.lr_factor(0, 0, 10, "cosine") == 1.0
    with pytest.raises(ValueError, match="lr-schedule"):
        schedule.lr_factor(0, 0, 10, "linear")


# -- a run with everything on --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data(mc, tmp_path_factory):
    folder = tmp_path_factory.mktemp("monitor_data")
    sub("training.synthetic").write_dataset(folder, count=5, frames=6, size=32, seed=4)
    return folder


def args_for(data, out, steps: int, *extra: str) -> list[str]:
    return ["--base", str(ensure_tiny_sd15_checkpoint()), "--data", str(data), "--out", str(out), "--frames", "4",
            "--size", "32", "--steps", str(steps), "--workers", "0", "--device", "cpu", "--log-every", "1",
            "--save-every", "1", "--lr", "1e-3", "--ema-decay", "0.8", "--lr-schedule", "cosine",
            "--warmup-steps", "1", "--seed", "2", *extra]


def train(args: list[str]):
    trainer = sub("training.trainer").Trainer(sub("train").parse_args(args))
    trainer.train()
    return trainer


def test_ema_saved_resumed_and_numbered_checkpoints(data, tmp_path):
    straight = train(args_for(data, tmp_path / "straight", 4, "--keep-last", "2"))
    reference = {k: v.clone() for k, v in straight.loop.ema.module.state_dict().items()}
    run = tmp_path / "straight"
    saved = sub("checkpoint").read_safetensors(str(run / "module_ema.safetensors"))[0]
    assert all(torch.equal(saved[k], v) for k, v in reference.items())
    # keep-last 2: the last two saves, each with the module and its EMA, linked or copied from that step's files
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000003", "step-0000004"]
    last = run / "checkpoints" / "step-0000004"
    assert sorted(p.name for p in last.iterdir()) == ["module.safetensors", "module_ema.safetensors"]
    assert (last / "module.safetensors").read_bytes() == (run / "module.safetensors").read_bytes()
    assert not [p for p in (run / "checkpoints").iterdir() if "staged" in p.name]

    interrupted = tmp_path / "interrupted"
    train(args_for(data, interrupted, 2))
    resumed = train(args_for(data, interrupted, 4))
    assert resumed.loop.ema.updates == 4
    for k, v in resumed.loop.ema.module.state_dict().items():
        torch.testing.assert_close(v, reference[k], rtol=1e-5, atol=1e-7)
    # the log: lr on the cosine curve, grad norm, throughput, data wait; one line per step across the resume
    log = [json.loads(line) for line in (interrupted / "loss.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3, 4]
    schedule = sub("training.schedule")
    assert [e["lr"] for e in log] == pytest.approx([1e-3 * schedule.lr_factor(s, 1, 4, "cosine") for s in range(4)])
    assert all(e["grad_norm"] > 0 and e["clips_per_second"] > 0 and e["data_wait"] >= 0 for e in log)


def test_tensorboard_events_when_installed(data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(args_for(data, tmp_path / "tb", 2, "--tensorboard", "yes"))
    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard"))
    events.Reload()
    losses = [e.value for e in events.Scalars("train/loss")]
    logged = [json.loads(line)["loss"] for line in (tmp_path / "tb" / "loss.jsonl").read_text().splitlines()]
    assert losses == pytest.approx(logged, rel=1e-6)


def test_ema_module_loads_in_comfyui(data, tmp_path, comfy_dirs, tiny_sd_checkpoint, run_graph):
    train(args_for(data, tmp_path / "load", 1))
    target = comfy_dirs.models["microcinema"] / "trained_ema.safetensors"
    shutil.copyfile(tmp_path / "load" / "module_ema.safetensors", target)
    g, ks = trained_module_graph(tiny_sd_checkpoint, target.name)
    assert torch.isfinite(run_graph(g, outputs=[ks])[ks.id]["samples"]).all()


# -- validation during training ------------------------------------------------------------------------------------

def decode_independently(path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(np.float32) / 255


def test_validation_writes_videos_and_logs_the_figures_of_those_files(data, tmp_path):
    import kornia
    from PIL import Image

    run = tmp_path / "val"
    train(args_for(data, run, 2, "--val-every", "1", "--val-holdout", "2", "--val-count", "2", "--val-steps", "2",
                   "--val-weights", "both", "--val-frames", "4", "--val-size", "32"))
    entries = [json.loads(line) for line in (run / "validation.jsonl").read_text().splitlines()]
    assert [(e["step"], e["weights"]) for e in entries] == [(1, "raw"), (1, "ema"), (2, "raw"), (2, "ema")]
    for entry in entries:
        folder = run / entry["folder"]
        sheet = np.asarray(Image.open(folder / "contact_sheet.png"))
        assert sheet.shape == (2 * 32, 4 * 32, 3)
        assert len(entry["samples"]) == 2
        ssims, motions = [], []
        for sample in entry["samples"]:
            frames = decode_independently(folder / sample["file"])
            assert frames.shape == (4, 32, 32, 3)
            motion = float(np.abs(np.diff(frames.astype(np.float64), axis=0)).mean())
            assert sample["motion"] == pytest.approx(motion, rel=1e-6)
            motions.append(motion)
            ssims.append(sample["keyframe_ssim"])
        assert entry["motion"] == pytest.approx(float(np.mean(motions)), rel=1e-9)
        assert entry["keyframe_ssim"] == pytest.approx(float(np.mean(ssims)), rel=1e-9)
    # the keyframe SSIM of each sample, recomputed from its mp4 and its keyframe reference PNG; the reference is the
    # held-out clip's centre frame as the VAE reproduces it
    entry = entries[-1]
    for sample in entry["samples"]:
        frames = decode_independently(run / entry["folder"] / sample["file"])
        reference = np.asarray(Image.open(run / entry["folder"] / sample["keyframe"]).convert("RGB"), np.float32) / 255
        ssim = kornia.metrics.ssim(torch.from_numpy(frames[2]).permute(2, 0, 1)[None],  # key: centre of 4 frames
                                   torch.from_numpy(reference).permute(2, 0, 1)[None], window_size=7).mean().item()
        assert sample["keyframe_ssim"] == pytest.approx(ssim, rel=1e-5)
    dataset = sub("training.data").ClipDataset(str(data), frames=4, size=32, window="first", holdout=2)
    held = list(dataset.held_out())
    clip = dataset.clip_sample(held[0], held[0])
    keyframe = (clip["frames"][2].float() / 255).numpy()  # the window's centre frame
    import comfy.sd

    _, _, vae, *_ = comfy.sd.load_checkpoint_guess_config(str(ensure_tiny_sd15_checkpoint()), output_vae=True,
                                                         output_clip=False)
    expected = sub("training.validation").reference_keyframe(vae, keyframe, 32, 32)
    written = np.asarray(Image.open(run / entry["folder"] / entry["samples"][0]["keyframe"]).convert("RGB"))
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 1
