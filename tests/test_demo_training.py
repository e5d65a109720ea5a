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
    resumed = again.module.state_dict()
    assert all(torch.equal(resumed[k].float(), v.float()) for k, v in before.items())
    # only trainable weights changed in phase video: the UNet is the phase-image result
    spatial, _ = checkpoint.read_safetensors(str(run / "unet.safetensors"))
    assert all(torch.equal(video.unet.state_dict()[k], v) for k, v in spatial.items())

    weights = tmp_path / "weights"
    trainer_lib.publish(run, weights)
    assert {p.name for p in weights.iterdir()} == {"demo_unet_narrow.safetensors", "demo_module_narrow.safetensors"}


def test_weighted_loss_is_plain_mse_with_equal_weights(mc):
    trainer_lib = sub("training.demo_trainer")
    pred, eps = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8)
    abar = torch.full((4,), 0.5)  # 1/SNR = 1 -> every weight 2
    assert trainer_lib.weighted_mse(pred, eps, abar) == pytest.approx(((pred - eps) ** 2).mean().item(), rel=1e-6)
    abar = torch.tensor([0.9, 0.5, 0.1, 0.001])
    weights = 1 + ((1 - abar) / abar).clamp(max=20)
    per = ((pred - eps) ** 2).mean(dim=(1, 2, 3))
    expected = (weights * per).sum() / weights.sum()
    assert trainer_lib.weighted_mse(pred, eps, abar) == pytest.approx(expected.item(), rel=1e-6)
