"""Does the demo video model use the direction word of the prompt? (issue 6, the motion gap)

    .venv/bin/python benchmarks/direction_probe.py                     # the shipped demo model
    .venv/bin/python benchmarks/direction_probe.py --module RUN/module.safetensors [--unet RUN/unet.safetensors]

Two figures for a trained narrow twin (exactly the shipped model's arithmetic, see narrow.py):
1. text-direction correlation per timestep: for a held-out clip and its mirror (same keyframe at the centre, the
   opposite direction), the model's clean-clip estimate x0 is taken from the same noisy clip under the caption and
   under the opposite caption; cos(x0(caption) - x0(opposite), clip - mirror) is averaged over clips. 0: the
   direction word changes nothing useful; 1: it moves the object exactly as the data does. The noisy clip itself
   shows the motion more and more as t falls, so a model can learn motion from it without ever using the word:
   this figure says whether it did;
2. generation: 20 held-out keyframes (5 per direction) animated through ComfyUI's KSampler code as in
   tests/test_demo_model.py; the share whose object moves in the prompted direction (chance: about 1/4);
3. with --overfit-steps N: how fast the module learns the word at all. A copy is trained on ONE clip and its
   mirror (captions "... left" / "... right", same keyframe, timesteps in --overfit-t), with the trainer's loss;
   figure 1 on that pair is printed every 20 steps. The only thing that tells the two examples apart at high t is
   the word, so a model that can use it should separate them within a few dozen steps.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FRAMES, SIZE = 8, 64
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
CASES = {"left": ("red", "circle"), "right": ("blue", "square"), "up": ("green", "square"),
         "down": ("white", "circle")}


def mirrored(synthetic, spec, key: int):
    """The same clip moving the opposite way, through the same position at frame ``key``."""
    dx, dy = synthetic.DIRECTIONS[spec.direction]
    at_key = (spec.start[0] + dx * spec.speed * key, spec.start[1] + dy * spec.speed * key)
    other = OPPOSITE[spec.direction]
    ox, oy = synthetic.DIRECTIONS[other]
    return synthetic.ClipSpec(**{**spec.__dict__, "direction": other,
                                 "start": (at_key[0] - ox * spec.speed * key, at_key[1] - oy * spec.speed * key)})


def clean_estimate(zt, eps_pred, abar_t):
    """x0 from an eps prediction: (z_t - sqrt(1 - abar) eps) / sqrt(abar)."""
    a = abar_t.view(-1, 1, 1, 1)
    return (zt - (1 - a).sqrt() * eps_pred) / a.sqrt()


def word_effect(model, zt, t, abar_t, contexts, hint, truth_difference) -> float:
    """cos(x0 under contexts[0] - x0 under contexts[1], truth_difference), both from the same noisy clip."""
    import torch

    frames = zt.shape[0]
    with torch.no_grad():
        x0 = [clean_estimate(zt, model(zt, t.float(), context, mc_num_frames=frames, mc_hint=hint,
                                       mc_strength=torch.ones(frames)), abar_t)
              for context in contexts]
    return torch.nn.functional.cosine_similarity((x0[0] - x0[1]).flatten(), truth_difference.flatten(), dim=0).item()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unet", type=Path, help="narrow UNet (default: the shipped one)")
    parser.add_argument("--module", type=Path, help="narrow module (default: the shipped one)")
    parser.add_argument("--clips", type=int, default=16, help="held-out clips per timestep (figure 1)")
    parser.add_argument("--timesteps", type=int, nargs="+", default=[999, 900, 800, 700, 500, 300])
    parser.add_argument("--steps", type=int, default=8, help="sampling steps (figure 2)")
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--overfit-steps", type=int, default=0)
    parser.add_argument("--overfit-t", type=int, nargs=2, default=[900, 1000], metavar=("FROM", "TO"))
    parser.add_argument("--overfit-lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE.parent / "tests"))
    from pack_import import core, sub  # noqa: E402  (ComfyUI on sys.path, the pack as microcinema_core)

    import torch

    torch.set_num_threads(args.threads)
    core()
    demo, narrow, synthetic, metrics = sub("demo"), sub("narrow"), sub("training.synthetic"), sub("training.video_metrics")
    trainer_lib, noise_prior, conditioning, demo_vae = (sub("training.demo_trainer"), sub("noise_prior"),
                                                        sub("conditioning"), sub("demo_vae"))
    unet, module = narrow.load_twin(str(args.unet or demo.NARROW_UNET), str(args.module or demo.NARROW_MODULE))
    video_model = sub("video_unet").VideoUNet(unet, module).eval()
    abar = trainer_lib.alphas_cumprod()
    text = trainer_lib.encode_captions(trainer_lib.captions())
    key = FRAMES // 2

    def frames_of(spec) -> torch.Tensor:
        return torch.from_numpy(synthetic.render_clip(spec, FRAMES, SIZE)).float() / 255.0

    def latents(spec) -> torch.Tensor:
        return demo_vae.model_space_latents(frames_of(spec))

    print(f"1. text-direction correlation ({args.clips} held-out clips per timestep, keyframe at the centre)")
    torch.manual_seed(0)
    for t_value in args.timesteps:
        rng, scores = random.Random(9), []
        for _ in range(args.clips):
            spec = synthetic.random_spec(rng, FRAMES)
            other = mirrored(synthetic, spec, key)
            z, z_other = latents(spec), latents(other)
            hint = conditioning.appearance_hint(z[key:key + 1], FRAMES, key)
            eps = noise_prior.training_noise(torch.randn_like(z), z[key:key + 1], 0.03)
            t = torch.full((FRAMES,), t_value)
            zt = noise_prior.noisy_latent(z, eps, abar[t])
            contexts = [text[c].expand(FRAMES, -1, -1) for c in (spec.caption, other.caption)]
            scores.append(word_effect(video_model, zt, t, abar[t], contexts, hint, z - z_other))
        print(f"   t={t_value:<4} cos mean {np.mean(scores):+.3f}  (min {min(scores):+.3f}, max {max(scores):+.3f})",
              flush=True)

    if args.overfit_steps:
        overfit(args, unet, module, synthetic, trainer_lib, noise_prior, conditioning, text, abar, latents)

    DemoSampler = sub("demo_sampler").DemoSampler

    sampler = DemoSampler(HERE.parent / ".cache" / "direction_probe")
    patched = sampler.with_twin(unet, module)
    good, report = 0, []
    for n, (direction, (colour, shape)) in enumerate(CASES.items()):
        rng, done = random.Random(100 + n), 0
        while done < 5:
            spec = synthetic.random_spec(rng, FRAMES)
            if spec.direction != direction:
                continue
            spec.colour, spec.shape = colour, shape
            video = sampler.animate(patched, frames_of(spec)[key], f"a {colour} {shape} moving {direction}", FRAMES,
                                    key, 11 + 7 * n + done, args.steps, args.cfg, 0.02)
            target = synthetic.COLOURS[colour]
            ok = metrics.moves_as_prompted(video, target, synthetic.DIRECTIONS[direction])
            moved = metrics.displacement(video, target, synthetic.DIRECTIONS[direction])
            good += ok
            report.append(f"{direction}:" + ("lost" if moved is None else f"{moved[0]:+.0f}/{moved[1]:.0f}") +
                          ("" if ok else "x"))
            done += 1
    print(f"2. generation ({args.steps} euler steps, cfg {args.cfg}, gamma 0.02): {good}/20 move in the prompted "
          f"direction (along/across px, x = wrong)\n   " + " ".join(report))
    return 0


def overfit(args, unet, module, synthetic, trainer_lib, noise_prior, conditioning, text, abar, latents):
    import copy

    import torch
    from pack_import import sub

    module_copy = copy.deepcopy(module).train().requires_grad_(True)
    model = sub("video_unet").VideoUNet(unet, module_copy)
    key = FRAMES // 2
    spec = synthetic.ClipSpec("circle", "red", "left", (0.7, 0.5), 0.06, 0.15, (30, 30, 40), 0)
    other = mirrored(synthetic, spec, key)
    z = torch.cat([latents(spec), latents(other)])
    keyframes = z[[key, FRAMES + key]]
    hint = torch.cat([conditioning.appearance_hint(keyframes[:1], FRAMES, key)] * 2)
    context = torch.cat([text[spec.caption].expand(FRAMES, -1, -1), text[other.caption].expand(FRAMES, -1, -1)])
    optimizer = torch.optim.AdamW(module_copy.parameters(), lr=args.overfit_lr, weight_decay=1e-2)
    lo, hi = args.overfit_t

    def separation() -> float:
        t = torch.full((FRAMES,), (lo + hi) // 2)
        scores = []
        for _ in range(4):
            zt = noise_prior.noisy_latent(z[:FRAMES], torch.randn_like(z[:FRAMES]), abar[t])
            scores.append(word_effect(model, zt, t, abar[t], (context[:FRAMES], context[FRAMES:]), hint[:FRAMES],
                                      z[:FRAMES] - z[FRAMES:]))
        return float(np.mean(scores))

    print(f"3. overfitting one clip pair, t in [{lo}, {hi}), lr {args.overfit_lr}: cos before {separation():+.3f}")
    for step in range(1, args.overfit_steps + 1):
        eps = noise_prior.training_noise(torch.randn_like(z), keyframes, 0.03)
        t = torch.randint(lo, hi, (2,)).repeat_interleave(FRAMES)
        zt = noise_prior.noisy_latent(z, eps, abar[t])
        pred = model(zt, t.float(), context, mc_num_frames=FRAMES, mc_hint=hint, mc_strength=torch.ones(2 * FRAMES))
        loss = trainer_lib.weighted_mse(pred, eps, abar[t])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 20 == 0:
            print(f"   step {step:<4} loss {loss.item():.5f}  cos {separation():+.3f}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
