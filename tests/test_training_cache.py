"""The latent cache (python -m microcinema_core.precompute): it holds the VAE latents and text embeddings the
training step would compute from the videos, and training from it gives the same loss on the same samples as
training from the videos (first window, same seed). Unusable clips are skipped and listed; all-bad data exits 2."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from harness.tiny_models import ensure_tiny_sd15_checkpoint
from pack_import import single_thread_fixture, sub

pytestmark = pytest.mark.training
_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread_fixture)
FRAMES, SIZE = 4, 32


def moving_square(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 255, 3, dtype=np.uint8)
    colour = rng.integers(0, 255, 3, dtype=np.uint8)
    frames = []
    for t in range(count):
        frame = np.empty((48, 64, 3), np.uint8)
        frame[:] = background
        frame[10:26, 4 + 3 * t:20 + 3 * t] = colour
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def videos(mc, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache_videos")
    vd = sub("training.video_decode")
    for i, caption in enumerate(["a red square moving right", "a blue square moving right", "a green square"]):
        vd.write_video(str(folder / f"clip{i}.mp4"), moving_square(12, i), 8, codec="mpeg4", gop=4)
        (folder / f"clip{i}.txt").write_text(caption)
    return folder


def precompute(args: list[str]) -> int:
    return sub("precompute").main(args)


def train_args(data, out, seed: int = 5) -> list[str]:
    return ["--base", str(ensure_tiny_sd15_checkpoint()), "--data", str(data), "--out", str(out), "--frames",
            str(FRAMES), "--size", str(SIZE), "--window", "first", "--keyframe", "mixed", "--text-dropout", "0.4",
            "--seed", str(seed), "--steps", "2", "--workers", "0", "--device", "cpu", "--log-every", "1"]


def test_cache_holds_what_the_training_step_computes_and_trains_the_same(videos, tmp_path):
    cache = tmp_path / "cache"
    assert precompute(["--base", str(ensure_tiny_sd15_checkpoint()), "--data", str(videos), "--out", str(cache),
                       "--frames", str(FRAMES), "--size", str(SIZE), "--shard-size", "2", "--workers", "0"]) == 0
    index = json.loads((cache / "cache.json").read_text())
    assert index["count"] == 3 and len(index["shards"]) == 2 and index["frames"] == FRAMES

    train = sub("train")
    from_videos = sub("training.trainer").Trainer(train.parse_args(train_args(videos, tmp_path / "run_v")))
    from_cache = sub("training.trainer").Trainer(train.parse_args(train_args(cache, tmp_path / "run_c")))
    assert type(from_cache.dataset).__name__ == "CachedLatents"
    assert all(torch.equal(v, from_cache.module.state_dict()[k]) for k, v in from_videos.module.state_dict().items())

    # the same ordinals give the same clip, keyframe and caption drop, and the cached tensors are the live ones
    # rounded to fp16
    seen_drop = set()
    for n in range(6):
        live, cached = from_videos.dataset[n], from_cache.dataset[n]
        assert live["key_index"] == cached["key_index"]
        z = from_videos.setup.latents(live["frames"][None])
        assert cached["latents"].dtype == torch.float16
        torch.testing.assert_close(cached["latents"].float(), z, rtol=2e-3, atol=2e-3)
        context = from_videos.setup.contexts([live["caption"]])[0]
        torch.testing.assert_close(cached["context"].float(), context, rtol=2e-3, atol=2e-3)
        seen_drop.add(live["caption"] == "")
    assert seen_drop == {True, False}, "the samples checked include dropped and kept captions"

    collate = sub("training.batching").collate
    for ordinals in ([0, 1], [2, 3], [4, 5]):
        live = from_videos.loop.loss(collate([from_videos.dataset[n] for n in ordinals]))
        cached = from_cache.loop.loss(collate([from_cache.dataset[n] for n in ordinals]))
        assert cached.item() == pytest.approx(live.item(), rel=2e-3)

    # and a short run from the cache, with DataLoader workers, trains
    from_cache.loop.cfg.workers = 2
    assert from_cache.train() > 0
    assert (tmp_path / "run_c" / "module.safetensors").is_file()


def test_precompute_skips_bad_clips_and_refuses_all_bad_data(videos, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("clip0.mp4", "clip0.txt"):
        (mixed / name).write_bytes((videos / name).read_bytes())
    (mixed / "empty.mp4").write_bytes(b"")
    (mixed / "empty.txt").write_text("an empty file")
    base = str(ensure_tiny_sd15_checkpoint())
    common = ["--base", base, "--frames", str(FRAMES), "--size", str(SIZE), "--workers", "0"]
    assert precompute([*common, "--data", str(mixed), "--out", str(tmp_path / "c1")]) == 0
    assert json.loads((tmp_path / "c1" / "cache.json").read_text())["count"] == 1
    assert "empty.mp4" in (tmp_path / "c1" / "skipped.txt").read_text()

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "empty.txt").write_text("x")
    assert precompute([*common, "--data", str(bad), "--out", str(tmp_path / "c2")]) == 2
    assert not (tmp_path / "c2" / "cache.json").exists()


def test_train_cli_names_bad_data_in_one_line(videos, tmp_path, capsys):
    """A source with no usable clip stops the CLI with one error line naming the source, exit status 2."""
    bad = tmp_path / "all_bad"
    bad.mkdir()
    (bad / "a.mp4").write_bytes(b"")
    (bad / "a.txt").write_text("nothing")
    for workers in ("0", "2"):  # in the training process, and raised in a DataLoader worker
        args = train_args(bad, tmp_path / f"run{workers}") + ["--workers", workers]
        assert sub("train").main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and str(bad) in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
