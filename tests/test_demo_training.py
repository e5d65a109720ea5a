"""The demo trainer (issue 6): both phases run, losses are finite, a run resumes where it stopped, and the
published narrow weights widen into files ComfyUI's stock loader takes as SD1.5."""
from __future__ import annotations

import json

import pytest
import torch

from pack_import import single_thread_fixture, sub

pytestmark = pytest.mark.training
_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread_fixture)


def test_demo_trainer_phases_resume_and_publish(mc, tmp_path):
    trainer_lib, checkpoint = sub("training.demo_trainer"), sub("checkpoint")
    run = tmp_path / "run"
    image = trainer_lib.DemoTrainer(run, "image", 5e-4, batch=2, noise_prior_lambda=0.03, appearnet=True, seed=0,
                                    base=None)
    image.train(2, save_every=1)
    video = trainer_lib.DemoTrainer(run, "video", 5e-4, batch=1, noise_prior_lambda=0.03, appearnet=True, seed=0,
                                    base=None)
    video.train(2, save_every=1)
    losses = [json.loads(line)["loss"] for name in ("image", "video")
              for line in (run / f"{name}_loss.jsonl").read_text().splitlines()]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    before, _ = checkpoint.read_safetensors(str(run / "module.safetensors"))
    again = trainer_lib.DemoTrainer(run, "video", 5e-4, batch=1, noise_prior_lambda=0.03, appearnet=True, seed=0,
                                    base=None)
    assert again.step == 2  # resumed, not restarted
    moments = lambda opt: {f"{i}.{n}": v for i, st in opt.state_dict()["state"].items()  # noqa: E731
                           for n, v in st.items() if torch.is_tensor(v)}
    saved_moments, restored = moments(video.optimizer), moments(again.optimizer)
    assert restored and restored.keys() == saved_moments.keys(), "the optimiser state is resumed too"
    assert all(torch.equal(restored[k], saved_moments[k]) for k in saved_moments)
    resumed = again.module.state_dict()
    assert all(torch.equal(resumed[k].float(), v.float()) for k, v in before.items())
    # only trainable weights changed in phase video: the UNet is the phase-image result
    spatial, _ = checkpoint.read_safetensors(str(run / "unet.safetensors"))
    assert all(torch.equal(video.unet.state_dict()[k], v) for k, v in spatial.items())

    weights = tmp_path / "weights"
    trainer_lib.publish(run, weights)
    assert {p.name for p in weights.iterdir()} == {"demo_unet_narrow.safetensors", "demo_module_narrow.safetensors"}


def test_weighted_loss_against_a_written_out_computation(mc):
    """snr20: each frame's MSE times 1 + min(1/SNR, 20), over the mean of that weight across the whole schedule (a
    constant, so that a batch's loss is the mean of its samples' losses: what makes data-parallel ranks exact)."""
    losses, demo_text = sub("training.losses"), sub("training.demo_text")
    schedule = demo_text.alphas_cumprod().double()
    norm = sum(1 + min((1 - a) / a, 20.0) for a in schedule.tolist()) / len(schedule)
    pred, eps = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8)
    abar = torch.tensor([0.9, 0.5, 0.1, 0.001])
    per = [((pred[i] - eps[i]) ** 2).mean().item() for i in range(4)]
    expected = sum((1 + min((1 - a) / a, 20.0)) * p for a, p in zip(abar.tolist(), per)) / 4 / norm
    got = losses.diffusion_loss(pred, eps, abar, "snr20", schedule.float())
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert sub("training.demo_trainer").weighted_mse(pred, eps, abar).item() == pytest.approx(expected, rel=1e-5)
    assert losses.diffusion_loss(pred, eps, abar, "mse").item() == pytest.approx(sum(per) / 4, rel=1e-6)
    # a batch's loss is the mean of its samples' losses (the property data-parallel averaging needs)
    halves = [losses.diffusion_loss(pred[i:i + 2], eps[i:i + 2], abar[i:i + 2], "snr20", schedule.float())
              for i in (0, 2)]
    assert got.item() == pytest.approx((halves[0] + halves[1]).item() / 2, rel=1e-6)
