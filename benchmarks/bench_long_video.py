"""Long videos: peak memory and time per sampling step against frame count, with and without context windows.

Each configuration runs in its own process (peak RSS is a per-process high-water mark): the video UNet
(reference config = SD1.5 widths by default, untrained-but-random weights, fp32, CPU) does one CFG step, i.e. a
forward over [2 * T] frames, with AppearNet on. Reported per configuration: peak RSS, the part above the RSS
after the weights were built (activations), seconds per step and seconds per frame.

    .venv/bin/python benchmarks/bench_long_video.py                       # 16 32 64 128 frames, windows of 16
    .venv/bin/python benchmarks/bench_long_video.py --config tiny --latent 8

Goals (issue 8): with windows of 16, peak memory at 128 frames <= 1.3x that at 16 frames; time per step grows
linearly with frames (the ratio of per-frame cost at 128 vs 16 is printed).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def one(config: str, frames: int, latent: int, window: int, overlap: int, runs: int) -> dict:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from pack_import import randomize, sub, tiny_unet  # noqa: E402

    import torch

    cfg = sub("configs").reference_unet_config() if config == "reference" else sub("configs").tiny_unet_config()
    context_dim = cfg["context_dim"]
    unet = tiny_unet(cfg, seed=0, std=0.02)
    module_lib = sub("module")
    import comfy.ops

    module = module_lib.build_module(unet, module_lib.ModuleConfig(), comfy.ops.manual_cast)
    randomize(module, seed=1, std=0.02)
    net = sub("video_unet").VideoUNet(unet, module).eval()
    cw = sub("context_windows")
    conditioning = sub("conditioning")
    n = 2 * frames  # cond + uncond
    x = torch.randn(n, 4, latent, latent)
    t = torch.full((n,), 500.0)
    ctx = torch.randn(n, 77, context_dim)
    hint = conditioning.appearance_hint(torch.randn(1, 4, latent, latent), frames, frames // 2).repeat(2, 1, 1, 1)
    options = {"microcinema_context": cw.ContextSettings(length=window, overlap=overlap)} if window else {}
    base_rss = current_rss_mb()
    times, cpu_times = [], []
    with torch.no_grad():
        for _ in range(runs):
            t0, c0 = time.perf_counter(), time.process_time()
            net(x, t, ctx, transformer_options=dict(options), mc_num_frames=frames, mc_hint=hint,
                mc_strength=torch.ones(n))
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    step = sorted(times)[len(times) // 2]
    cpu = sorted(cpu_times)[len(cpu_times) // 2]
    peak = rss_peak_mb()
    return {"frames": frames, "window": window, "peak_rss_mb": peak, "activation_mb": peak - base_rss,
            "weights_rss_mb": base_rss, "step_s": step, "per_frame_ms": 1000 * step / frames,
            "cpu_step_s": cpu, "cpu_per_frame_ms": 1000 * cpu / frames}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--latent", type=int, default=8, help="latent side (8 = 64 px)")
    p.add_argument("--config", choices=("reference", "tiny"), default="reference")
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--overlap", type=int, default=4)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.one:
        frames, window = map(int, args.one.split(","))
        print(json.dumps(one(args.config, frames, args.latent, window, args.overlap, args.runs)))
        return 0
    rows = []
    for window in (0, args.window):
        for frames in args.frames:
            cmd = [sys.executable, __file__, "--one", f"{frames},{window}", "--config", args.config,
                   "--latent", str(args.latent), "--overlap", str(args.overlap), "--runs", str(args.runs),
                   "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"frames {r['frames']:4d}  windows {'off' if not window else window:>3}  peak RSS "
                  f"{r['peak_rss_mb']:8.0f} MB  activations {r['activation_mb']:7.0f} MB  step "
                  f"{r['step_s']:7.2f} s  {r['per_frame_ms']:7.1f} ms/frame  CPU {r['cpu_step_s']:7.2f} s  "
                  f"{r['cpu_per_frame_ms']:7.1f} ms/frame", flush=True)
    for window in (0, args.window):
        sel = {r["frames"]: r for r in rows if r["window"] == window}
        lo, hi = min(sel), max(sel)
        print(f"windows {'off' if not window else window}: peak RSS {hi} vs {lo} frames = "
              f"{sel[hi]['peak_rss_mb'] / sel[lo]['peak_rss_mb']:.2f}x, activations "
              f"{sel[hi]['activation_mb'] / max(sel[lo]['activation_mb'], 1):.2f}x; per-frame time "
              f"{sel[hi]['per_frame_ms'] / sel[lo]['per_frame_ms']:.2f}x (CPU time "
              f"{sel[hi]['cpu_per_frame_ms'] / sel[lo]['cpu_per_frame_ms']:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
