"""The ComfyUI half of scripts/gpu_check.sh: the example workflows, and dynamic VRAM loading, in a real ComfyUI server.

    python scripts/gpu_check_comfy.py workflows --out DIR [--size 512 --frames 16 --dtypes fp16,bf16 --steps N]
    python scripts/gpu_check_comfy.py dynamic --out DIR [--size 512 --frames 16 --dtype fp16 --budget-gib 6]
    python scripts/gpu_check_comfy.py report DIR
    ... add --cpu to any run for the CPU dry run (ComfyUI --cpu, tiny sizes: the code path, not the figures)

``workflows``: for each dtype, starts ComfyUI (main.py, GPU mode, ``--<dtype>-unet --<dtype>-vae``) with the demo
models (built by ``python -m microcinema_core.demo`` if missing) and the pack, queues every workflows/api/*.api.json
rescaled to ``size x size x frames`` (the first-stage image, Image To Video's width/height/length, per-frame
ControlNet images), and after each one asks the server to unload every model (POST /free), which runs ComfyUI's
full unload of our MODEL. Per workflow it records: wall time, each KSampler's per-step times (from the server's
websocket progress messages), the peak of the GPU memory in use and of torch's reserved memory (sampled from
/system_stats every 0.2 s), and statistics of every animated WEBP written (frames, size, mean, std, mean absolute
change between consecutive frames: 0 means a still video).

``dynamic``: text_to_video at the same size, same seed, under several memory set-ups, each in a fresh server:
``full`` (--highvram: everything resident, the reference), ``dynamic`` (the newest releases' default: dynamic VRAM
loading, comfy-aimdo), ``dynamic-budget`` (dynamic VRAM with --vram-headroom leaving only --budget-gib usable, so
weights stream/offload), ``classic-lowvram`` (--disable-dynamic-vram with --reserve-vram to the same budget: the
estimate-based partial load). The video KSampler's latent is saved (SaveLatent) and compared with ``full``'s (max
absolute difference); the server log's load lines show which path ran. A set-up whose flags this ComfyUI lacks is
reported as skipped.

Every run writes DIR/<name>.json; ``report`` prints them as one table. Nothing here is ComfyUI code: it talks to the
server over HTTP/websocket as the web UI does.
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import run_demo  # noqa: E402  (comfyui_path, free_port, extra_paths_yaml: the main job's server set-up)

WORKFLOWS = ROOT / "workflows" / "api"
MODELS = ROOT / ".cache" / "demo_models"
GIB = 2 ** 30


def log(message: str) -> None:
    print(f"[gpu_check_comfy] {message}", file=sys.stderr, flush=True)


# -- the workflows, rescaled ---------------------------------------------------------------------------------

def scaled_workflow(prompt: dict, size: int, frames: int, steps: int | None) -> dict:
    """The API prompt at ``size x size x frames``: the settings the example workflows use for their shape."""
    prompt = copy.deepcopy(prompt)
    for node in prompt.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind in ("EmptyLatentImage", "MicroCinemaImageToVideo"):
            inputs["width"] = inputs["height"] = size
        if kind == "MicroCinemaImageToVideo":
            inputs["length"] = frames
            if isinstance(inputs.get("keyframe_index"), int):
                inputs["keyframe_index"] = min(inputs["keyframe_index"], frames - 1)
        if kind == "RepeatImageBatch":  # per-frame ControlNet images: one per frame
            inputs["amount"] = frames
        if kind == "MicroCinemaContextWindows":  # windows smaller than the clip, as in the long-video example
            length = max(2, min(inputs["context_length"], frames // 2))
            inputs["context_length"] = length
            inputs["context_overlap"] = min(inputs["context_overlap"], length - 1)
        if kind in ("KSampler", "KSamplerAdvanced") and steps:
            inputs["steps"] = steps
    return prompt


def video_sampler_ids(prompt: dict) -> set[str]:
    """KSamplers fed by MicroCinema Image To Video (the video stage; the others are the first-stage image)."""
    i2v = {k for k, v in prompt.items() if v["class_type"] == "MicroCinemaImageToVideo"}
    return {k for k, v in prompt.items() if v["class_type"].startswith("KSampler")
            and isinstance(v["inputs"].get("latent_image"), list) and v["inputs"]["latent_image"][0] in i2v}


def webp_stats(path: Path) -> dict:
    """Frame statistics of an animated WEBP (Pillow reads every frame)."""
    import numpy as np
    from PIL import Image, ImageSequence

    with Image.open(path) as image:
        frames = [np.asarray(f.convert("RGB"), dtype=np.float32) / 255.0 for f in ImageSequence.Iterator(image)]
    video = np.stack(frames)
    change = float(np.abs(np.diff(video, axis=0)).mean()) if len(frames) > 1 else 0.0
    return {"file": path.name, "frames": len(frames), "size": f"{video.shape[2]}x{video.shape[1]}",
            "mean": round(float(video.mean()), 4), "std": round(float(video.std()), 4),
            "frame_change": round(change, 4), "finite": bool(np.isfinite(video).all())}


# -- one ComfyUI server -----------------------------------------------------------------------------------------

class Server:
    def __init__(self, flags: list[str], out: Path, label: str) -> None:
        self.comfy = run_demo.comfyui_path()
        self.port = run_demo.free_port()
        self.output = out / f"output-{label}"
        self.output.mkdir(parents=True, exist_ok=True)
        self.log_path = out / f"server-{label}.log"
        front_end = tempfile.mkdtemp(prefix="mc-frontend-")
        self.command = [sys.executable, "main.py", "--listen", "127.0.0.1", "--port", str(self.port),
                        "--disable-api-nodes", "--extra-model-paths-config",
                        str(run_demo.extra_paths_yaml(MODELS, self.comfy)), "--output-directory", str(self.output),
                        "--front-end-root", front_end, *flags]
        self.process: subprocess.Popen | None = None

    def supports(self, flag: str) -> bool:
        return flag in (self.comfy / "comfy" / "cli_args.py").read_text()

    def __enter__(self) -> "Server":
        log(f"starting ComfyUI: {' '.join(self.command[1:])}")
        self._log_file = open(self.log_path, "w")
        self.process = subprocess.Popen(self.command, cwd=self.comfy, stdout=self._log_file, stderr=subprocess.STDOUT)
        started = time.time()
        while True:
            try:
                run_demo.http(self.port, "/system_stats", timeout=2)
                return self
            except OSError:
                if self.process.poll() is not None or time.time() - started > 300:
                    raise RuntimeError(f"ComfyUI did not start; see {self.log_path}")
                time.sleep(0.5)

    def __exit__(self, *exc) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log_file.close()

    def log_lines(self, *needles: str) -> list[str]:
        return [line.strip() for line in self.log_path.read_text(errors="replace").splitlines()
                if any(n in line for n in needles)]

    def free(self) -> None:
        """Unload every model: ComfyUI's full unload (detach + unpatch) of whatever is loaded."""
        run_demo.http(self.port, "/free", {"unload_models": True, "free_memory": True})
        time.sleep(3.0)  # /free is handled by the prompt worker when it next wakes

    def run(self, prompt: dict, timeout: float) -> dict:
        return asyncio.run(self._run(prompt, timeout))

    async def _run(self, prompt: dict, timeout: float) -> dict:
        import aiohttp

        client = str(uuid.uuid4())
        progress: list[tuple[float, str, int]] = []
        memory = {"used": 0, "torch_reserved": 0}
        started = time.monotonic()
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{self.port}/ws?clientId={client}") as ws:
                async with session.post(f"http://127.0.0.1:{self.port}/prompt",
                                        json={"prompt": prompt, "client_id": client}) as response:
                    queued = await response.json()
                    if response.status != 200:
                        return {"ok": False, "error": json.dumps(queued)[:4000]}
                prompt_id = queued["prompt_id"]
                sampler = asyncio.create_task(self._sample_memory(session, memory))
                error = None
                try:
                    while time.monotonic() - started < timeout:
                        message = await ws.receive(timeout=timeout)
                        if message.type != aiohttp.WSMsgType.TEXT:
                            continue  # binary frames are previews
                        event = json.loads(message.data)
                        kind, data = event.get("type"), event.get("data", {})
                        if data.get("prompt_id") not in (None, prompt_id):
                            continue
                        if kind == "progress":
                            progress.append((time.monotonic(), str(data.get("node")), int(data["value"])))
                        elif kind == "execution_error":
                            error = f"{data.get('node_type')}: {data.get('exception_message')}"
                            break
                        elif kind == "executing" and data.get("node") is None:
                            break
                        elif kind == "executing":  # the node starts: step 1's time counts from here
                            progress.append((time.monotonic(), str(data["node"]), 0))
                    else:
                        error = f"timed out after {timeout:.0f} s"
                finally:
                    sampler.cancel()
        wall = time.monotonic() - started
        steps: dict[str, list[float]] = {}
        last: dict[str, tuple[float, int]] = {}
        for stamp, node, value in progress:
            if node in last and value == last[node][1] + 1:
                steps.setdefault(node, []).append(stamp - last[node][0])
            last[node] = (stamp, value)
        return {"ok": error is None, "error": error, "wall_s": round(wall, 2), "step_s": steps,
                "peak_gpu_used_gib": round(memory["used"] / GIB, 3),
                "peak_torch_reserved_gib": round(memory["torch_reserved"] / GIB, 3)}

    async def _sample_memory(self, session, memory: dict) -> None:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{self.port}/system_stats") as response:
                    device = (await response.json())["devices"][0]
                memory["used"] = max(memory["used"], device["vram_total"] - device["vram_free"])
                memory["torch_reserved"] = max(memory["torch_reserved"], device.get("torch_vram_total", 0))
            except Exception:  # the server is busy or gone: keep the peak so far
                pass
            await asyncio.sleep(0.2)


def ensure_demo_models() -> None:
    subprocess.run([sys.executable, "-m", "microcinema_core.demo", "--models-dir", str(MODELS)], cwd=ROOT, check=True)


def device_flags(cpu: bool) -> list[str]:
    return ["--cpu"] if cpu else []


def summarise(result: dict, prompt: dict, output: Path, before: set[Path]) -> dict:
    video = video_sampler_ids(prompt)
    result["samplers"] = {node: {"stage": "video" if node in video else "image", "steps": len(times),
                                 "median_step_s": round(statistics.median(times), 4) if times else None}
                          for node, times in result.pop("step_s").items()}
    new = sorted(p for p in output.rglob("*") if p.is_file() and p not in before)
    result["files"] = [str(p.relative_to(output)) for p in new]
    result["videos"] = [webp_stats(p) for p in new if p.suffix == ".webp"]
    return result


# -- subcommands -------------------------------------------------------------------------------------------------

def cmd_workflows(args) -> int:
    ensure_demo_models()
    names = args.workflows.split(",") if args.workflows else sorted(p.name[:-len(".api.json")]
                                                                     for p in WORKFLOWS.glob("*.api.json"))
    failures = 0
    for dtype in args.dtypes.split(","):
        flags = device_flags(args.cpu) + [f"--{dtype}-unet", f"--{dtype}-vae"]
        rows = []
        with Server(flags, args.out, f"workflows-{dtype}") as server:
            for name in names:
                prompt = scaled_workflow(json.loads((WORKFLOWS / f"{name}.api.json").read_text()), args.size,
                                         args.frames, args.steps)
                before = set(server.output.rglob("*"))
                log(f"{dtype} {name} at {args.size}x{args.size}x{args.frames}")
                result = summarise(server.run(prompt, args.timeout), prompt, server.output, before)
                result.update(workflow=name, dtype=dtype)
                failures += not result["ok"]
                server.free()
                rows.append(result)
                log(json.dumps(result))
            loads = server.log_lines("loaded completely", "loaded partially", "prepared for dynamic VRAM",
                                     "Traceback", "Error")
        record = {"kind": "workflows", "dtype": dtype, "size": args.size, "frames": args.frames, "cpu": args.cpu,
                  "runs": rows, "server_log_load_lines": loads[-40:]}
        (args.out / f"workflows-{dtype}.json").write_text(json.dumps(record, indent=1))
    return 1 if failures else 0


def setups(budget_gib: float, total_gib: float, cpu: bool) -> dict[str, list[str]]:
    spare = max(0.0, total_gib - budget_gib)
    if cpu:  # the same prompts through the CPU server: only the comparison machinery is exercised
        return {"full": ["--cpu"], "dynamic-budget": ["--cpu", "--reserve-vram", "0"]}
    return {"full": ["--highvram"],
            "dynamic": [],
            "dynamic-budget": ["--vram-headroom", f"{spare:.2f}", "--reserve-vram", f"{spare:.2f}"],
            "classic-lowvram": ["--disable-dynamic-vram", "--reserve-vram", f"{spare:.2f}"]}


def total_vram_gib(cpu: bool) -> float:
    if cpu:
        return 0.0
    import torch

    return torch.cuda.mem_get_info()[1] / GIB


def latents_of(output: Path) -> list:
    """Every latent SaveLatent wrote, in order (its counter is in the file name)."""
    import safetensors.torch

    return [safetensors.torch.load_file(str(p))["latent_tensor"].float() for p in sorted(output.rglob("*.latent"))]


def cmd_dynamic(args) -> int:
    ensure_demo_models()
    prompt = scaled_workflow(json.loads((WORKFLOWS / "text_to_video.api.json").read_text()), args.size, args.frames,
                             args.steps)
    video = sorted(video_sampler_ids(prompt))[0]
    prompt["900"] = {"class_type": "SaveLatent", "inputs": {"samples": [video, 0],
                                                             "filename_prefix": "gpu_check/latent"}}
    total = total_vram_gib(args.cpu)
    results, reference, failures = {}, None, 0
    for label, flags in setups(args.budget_gib, total, args.cpu).items():
        server = Server(device_flags(False) + flags + [f"--{args.dtype}-unet", f"--{args.dtype}-vae"], args.out,
                        f"dynamic-{label}")
        missing = [f for f in flags if f.startswith("--") and not server.supports(f)]
        if missing:
            results[label] = {"ok": None, "skipped": f"this ComfyUI has no {', '.join(missing)}"}
            continue
        with server:
            before = set(server.output.rglob("*"))
            first = summarise(server.run(prompt, args.timeout), prompt, server.output, before)
            # full unload of the video MODEL, then the video sampler again with the next seed (a changed input, so
            # ComfyUI's cache cannot skip it): the MODEL is loaded again; its latent is compared with full's
            server.free()
            reseeded = copy.deepcopy(prompt)
            reseeded[video]["inputs"]["seed"] += 1
            second = server.run(reseeded, args.timeout)
            loads = server.log_lines("loaded completely", "loaded partially", "prepared for dynamic VRAM",
                                     "DynamicVRAM", "Traceback", "Error")
        latents = latents_of(server.output)
        entry = {**first, "second_run_ok": second["ok"], "second_run_error": second["error"],
                 "server_log_load_lines": loads[-20:], "flags": flags}
        if label == "full":
            reference = latents
        if reference:  # run by run (first load; after a full unload and reload), against the same run of full
            diffs = [float((a - b).abs().max()) for a, b in zip(latents, reference)]
            entry["max_abs_diff_vs_full"] = diffs[0] if diffs else None
            entry["max_abs_diff_after_reload"] = diffs[1] if len(diffs) > 1 else None
        failures += not (first["ok"] and second["ok"])
        results[label] = entry
        log(f"{label}: {json.dumps(entry)[:2000]}")
    record = {"kind": "dynamic", "size": args.size, "frames": args.frames, "dtype": args.dtype, "cpu": args.cpu,
              "budget_gib": args.budget_gib, "total_vram_gib": round(total, 2), "setups": results}
    (args.out / "dynamic.json").write_text(json.dumps(record, indent=1))
    return 1 if failures else 0


def cmd_report(args) -> int:
    lines = []
    for path in sorted(args.dir.glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("kind") == "workflows":
            lines.append(f"== workflows {record['dtype']} at {record['size']}x{record['size']}x{record['frames']}"
                         f"{' (CPU dry run)' if record['cpu'] else ''}")
            for run in record["runs"]:
                steps = ", ".join(f"{s['stage']} {s['median_step_s']} s/step x{s['steps']}"
                                  for s in run["samplers"].values())
                videos = "; ".join(f"{v['frames']}f {v['size']} mean {v['mean']} std {v['std']} "
                                   f"change {v['frame_change']}" for v in run["videos"])
                lines.append(f"  {run['workflow']:<22} {'ok ' if run['ok'] else 'FAIL'} {run['wall_s']:>7} s  "
                             f"peak used {run['peak_gpu_used_gib']} GiB, torch reserved "
                             f"{run['peak_torch_reserved_gib']} GiB | {steps} | {videos}"
                             + (f" | {run['error']}" if run["error"] else ""))
        elif record.get("kind") == "dynamic":
            lines.append(f"== dynamic VRAM loading, text_to_video {record['size']}x{record['size']}x"
                         f"{record['frames']} {record['dtype']}, budget {record['budget_gib']} GiB of "
                         f"{record['total_vram_gib']}")
            for label, entry in record["setups"].items():
                if entry.get("skipped"):
                    lines.append(f"  {label:<16} skipped: {entry['skipped']}")
                    continue
                video = [s for s in entry["samplers"].values() if s["stage"] == "video"]
                lines.append(f"  {label:<16} {'ok ' if entry['ok'] and entry['second_run_ok'] else 'FAIL'} "
                             f"video {video[0]['median_step_s'] if video else '?'} s/step, peak used "
                             f"{entry['peak_gpu_used_gib']} GiB, max |latent - full| "
                             f"{entry.get('max_abs_diff_vs_full', 'n/a')}, after unload + reload "
                             f"{entry.get('max_abs_diff_after_reload', 'n/a')}"
                             + (f" | {entry['error'] or entry['second_run_error']}"
                                if entry["error"] or entry["second_run_error"] else ""))
                for line in entry["server_log_load_lines"][-4:]:
                    lines.append(f"      log: {line[:160]}")
    print("\n".join(lines) if lines else f"no results in {args.dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("workflows", "dynamic"):
        p = commands.add_parser(name)
        p.add_argument("--out", type=Path, required=True, help="where results, outputs and server logs go")
        p.add_argument("--size", type=int, default=512, help="frame width = height in pixels")
        p.add_argument("--frames", type=int, default=16, help="frames per video")
        p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the workflow's)")
        p.add_argument("--timeout", type=float, default=1200.0, help="seconds per prompt")
        p.add_argument("--cpu", action="store_true", help="ComfyUI --cpu (the dry run)")
    commands.choices["workflows"].add_argument("--dtypes", default="fp16,bf16")
    commands.choices["workflows"].add_argument("--workflows", default="",
                                               help="comma-separated names (default: every workflows/api file)")
    commands.choices["dynamic"].add_argument("--dtype", default="fp16")
    commands.choices["dynamic"].add_argument("--budget-gib", type=float, default=6.0,
                                             help="VRAM left usable in the budget set-ups")
    report = commands.add_parser("report")
    report.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "report":
        return cmd_report(args)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.cpu:
        import torch

        if not torch.cuda.is_available():
            log("no CUDA device here; pass --cpu for the dry run")
            return 1
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return cmd_workflows(args) if args.command == "workflows" else cmd_dynamic(args)


if __name__ == "__main__":
    raise SystemExit(main())
