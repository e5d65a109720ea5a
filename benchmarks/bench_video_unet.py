"""Cost of MicroCinema's video UNet against the plain SD UNet it inflates: time ratio vs FLOP ratio.

Three forwards over the same T frames (SD1.5 widths by default, fp32, torch.no_grad, CPU unless --device):
  (a) spatial   ComfyUI's own UNetModel on the T frames (the image model frame by frame)
  (b) video     VideoUNet with temporal convs + motion modules, AppearNet strength 0 (AppearNet skipped)
  (c) video+AN  the same at strength 1 (AppearNet runs and injects)
For each: median step time over --runs after --warmup, and FLOPs counted by torch.utils.flop_counter
(matmuls, convolutions, attention; element-wise ops such as GroupNorm/SiLU/copies count zero, so time spent
there shows up as "time ratio above FLOP ratio"). Goal: time ratio / FLOP ratio - 1 <= 15 %.

    .venv/bin/python benchmarks/bench_video_unet.py --frames 16 --latent 16 --runs 3
    .venv/bin/python benchmarks/bench_video_unet.py --profile   # + where the extra time goes, op by op
    # on a GPU machine (issue 8.4: 512x512 = latent 64, 16 frames, fp16, reference config):
    python benchmarks/bench_video_unet.py --device cuda --dtype fp16 --latent 64 --frames 16 --runs 5

ComfyUI is found as the tests find it (COMFYUI_PATH or .comfyui/comfyui_path.txt); the repository root is never
put on sys.path (its nodes/ package would shadow ComfyUI's nodes module).
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pack_import import core, randomize, sub  # noqa: E402


DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=16, help="frames per video (T)")
    p.add_argument("--latent", type=int, default=16, help="latent height = width")
    p.add_argument("--videos", type=int, default=1, help="videos in the batch")
    p.add_argument("--context", type=int, default=77, help="text tokens")
    p.add_argument("--runs", type=int, default=3, help="timed runs per model (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (the first one counts the FLOPs)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--config", choices=("reference", "tiny"), default="reference",
                   help="reference: SD1.5 widths 320/640/1280/1280; tiny: the test config")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP counting passes")
    p.add_argument("--profile", action="store_true",
                   help="also profile one forward of each model (torch.profiler) and print the ops that take the "
                        "extra time of the video models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (then ComfyUI boots in its normal GPU mode)")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="fp32", help="weights and activations")
    return p.parse_args(argv)


def build(args):
    core()
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    configs, module_mod, video_unet = sub("configs"), sub("module"), sub("video_unet")
    cfg = configs.reference_unet_config() if args.config == "reference" else configs.tiny_unet_config()
    with torch.no_grad():
        unet = UNetModel(**cfg, operations=comfy.ops.disable_weight_init)
        module_mod.initialise_new_weights(unet)
        randomize(unet, seed=args.seed, std=0.02)
        # All weights random (zero-initialised layers too): no shortcut for special values anywhere.
        module = module_mod.build_module(unet, module_mod.ModuleConfig(), comfy.ops.manual_cast)
        randomize(module, seed=args.seed + 1, std=0.02)
    unet = unet.eval().to(args.device, DTYPES[args.dtype])
    module = module.eval().to(args.device, DTYPES[args.dtype])
    video = video_unet.VideoUNet(unet, module).eval()
    return cfg, unet, module, video


def inputs(args, cfg):
    g = torch.Generator().manual_seed(args.seed + 2)
    n = args.videos * args.frames
    s = args.latent
    batch = {
        "x": torch.randn(n, 4, s, s, generator=g),
        "timesteps": torch.full((n,), 500.0),
        "context": torch.randn(n, args.context, cfg["context_dim"], generator=g),
        # the hint Image To Video builds: keyframe latent, keyframe mask, frame offset (conditioning.py)
        "hint": sub("conditioning").appearance_hint(torch.randn(args.videos, 4, s, s, generator=g), args.frames,
                                                    args.frames // 2),
    }
    dtype = DTYPES[args.dtype]
    return {k: v.to(args.device, torch.float32 if k == "timesteps" else dtype) for k, v in batch.items()}


def forwards(unet, video, batch, frames):
    n = batch["x"].shape[0]

    def spatial():
        return unet(batch["x"], batch["timesteps"], batch["context"])

    def video_strength(strength):
        def run():
            return video(batch["x"], batch["timesteps"], batch["context"], mc_num_frames=frames,
                         mc_hint=batch["hint"], mc_strength=torch.full((n,), strength, device=batch["x"].device))
        return run

    return {"spatial": spatial, "video": video_strength(0.0), "video_appearnet": video_strength(1.0)}


def time_it(fn, runs: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each run. On a machine shared with other processes the CPU time
    of a single-threaded run (--threads 1) is the steadier measure: time spent waiting for a core is left out."""
    wall, cpu = [], []
    with torch.no_grad():
        for _ in range(runs):
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # GPU work is asynchronous: the step ends when the kernels do
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
    return wall, cpu


def count_flops(fn) -> int:
    """FLOPs of one forward (it doubles as a warm-up run)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def profile_ops(fn) -> dict[str, tuple[float, int]]:
    """op name -> (self CPU seconds, calls) of one forward (after one untimed forward)."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch.no_grad():
        fn()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
    return {e.key: (e.self_cpu_time_total / 1e6, e.count) for e in prof.key_averages()}


def print_profile_diff(fns, rows: int = 25) -> None:
    """Where the extra time of the video models goes, op by op, next to the spatial UNet."""
    names = list(fns)
    ops = {name: profile_ops(fns[name]) for name in names}
    keys = set().union(*ops.values())
    last = names[-1]
    order = sorted(keys, key=lambda k: -(ops[last].get(k, (0.0, 0))[0] - ops["spatial"].get(k, (0.0, 0))[0]))
    header = "".join(f" {n[:16]:>16s}" for n in names)
    print(f"\nself CPU seconds per op (one forward each; sorted by the extra time of {last}):")
    print(f"{'op':36s}{header}   calls")
    for key in order[:rows]:
        cells = "".join(f" {ops[n].get(key, (0.0, 0))[0]:16.3f}" for n in names)
        calls = "/".join(str(ops[n].get(key, (0.0, 0))[1]) for n in names)
        print(f"{key[:36]:36s}{cells}   {calls}")
    totals = "".join(f" {sum(v[0] for v in ops[n].values()):16.3f}" for n in names)
    print(f"{'total':36s}{totals}")


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    core(cpu=args.device == "cpu")  # ComfyUI on sys.path (CPU mode as the tests boot it), then microcinema_core
    import comfy.ldm.modules.attention as attention

    cfg, unet, module, video = build(args)
    batch = inputs(args, cfg)
    fns = forwards(unet, video, batch, args.frames)
    params_unet = sum(p.numel() for p in unet.parameters())
    params_module = sum(p.numel() for p in module.parameters())
    print(f"config={args.config} (model_channels {cfg['model_channels']}, mult {cfg['channel_mult']}), "
          f"{args.videos} video(s) x {args.frames} frames, latent {args.latent}x{args.latent}, "
          f"context {args.context}, {args.dtype}, {device_name(args.device)}, threads {torch.get_num_threads()}, "
          f"attention {attention.optimized_attention.__name__}, torch {torch.__version__}")
    print(f"params: UNet {params_unet / 1e6:.1f} M, MicroCinema module {params_module / 1e6:.1f} M "
          f"(AppearNet {sum(p.numel() for p in module.appearnet.parameters()) / 1e6:.1f} M)")
    sys.stdout.flush()

    results = {}
    for name, fn in fns.items():
        gc.collect()
        flops = None
        with torch.no_grad():
            for i in range(args.warmup):
                if i == 0 and not args.no_flops:
                    flops = count_flops(fn)
                else:
                    fn()
        if flops is None and not args.no_flops:
            flops = count_flops(fn)
        on_gpu = args.device.startswith("cuda")
        if on_gpu:
            torch.cuda.reset_peak_memory_stats(args.device)
        wall, cpu = time_it(fn, args.runs)
        results[name] = (statistics.median(wall), statistics.median(cpu), flops)
        peak = f" | peak GPU memory {torch.cuda.max_memory_allocated(args.device) / 2**30:.2f} GiB" if on_gpu else ""
        print(f"  {name:16s} wall {', '.join(f'{t:.3f}' for t in wall)} s | cpu {', '.join(f'{t:.3f}' for t in cpu)} s"
              + ("" if flops is None else f" | {flops / 1e9:.1f} GFLOP") + peak)
        sys.stdout.flush()

    base_wall, base_cpu, base_f = results["spatial"]
    print(f"\nmedians of {args.runs} runs; 'cpu' = process CPU time (steadier on a shared machine with --threads 1)")
    print("| model | wall (s) | cpu (s) | GFLOP | wall ratio | cpu ratio | FLOP ratio | wall/FLOP - 1 | cpu/FLOP - 1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    worst = {"wall": float("-inf"), "cpu": float("-inf")}
    for name, (wall, cpu, f) in results.items():
        wall_ratio, cpu_ratio = wall / base_wall, cpu / base_cpu
        if f is None:
            print(f"| {name} | {wall:.3f} | {cpu:.3f} | - | {wall_ratio:.3f} | {cpu_ratio:.3f} | - | - | - |")
            continue
        flop_ratio = f / base_f
        excess = {"wall": wall_ratio / flop_ratio - 1.0, "cpu": cpu_ratio / flop_ratio - 1.0}
        if name != "spatial":
            worst = {k: max(worst[k], excess[k]) for k in worst}
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {f / 1e9:.1f} | {wall_ratio:.3f} | {cpu_ratio:.3f} | "
              f"{flop_ratio:.3f} | {100 * excess['wall']:+.1f} % | {100 * excess['cpu']:+.1f} % |")
    if not args.no_flops:
        for kind, value in worst.items():
            verdict = "OK" if value <= 0.15 else "ABOVE GOAL"
            print(f"worst excess of the {kind} time ratio over the FLOP ratio: {100 * value:+.1f} % "
                  f"(goal <= +15 %): {verdict}")

    if args.profile:
        print_profile_diff(fns)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
