"""The main job: render the example text -> image -> video workflow in a real ComfyUI server.

Builds the demo models if missing (.cache/demo_models), starts ComfyUI (main.py) on 127.0.0.1 with the pack
and those models, queues the workflow's API form (its UI form goes along as extra_pnginfo, so the mp4 embeds a
workflow you can drag back into ComfyUI), waits, and lists the files written under output/.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("microcinema.run_demo")


def comfyui_path() -> Path:
    env = os.environ.get("COMFYUI_PATH")
    if env:
        return Path(env).resolve()
    recorded = ROOT / ".comfyui" / "comfyui_path.txt"
    return Path(recorded.read_text().strip()) if recorded.is_file() else ROOT / ".comfyui" / "ComfyUI"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port: int, path: str, payload: dict | None = None, timeout: float = 30.0):
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def extra_paths_yaml(models: Path, comfy: Path) -> Path:
    lines = ["microcinema_demo:", f"    base_path: {models}"]
    for folder in ("checkpoints", "microcinema", "controlnet", "upscale_models", "animatediff_models"):
        lines.append(f"    {folder}: {folder}")
    # The pack: bootstrap links it into the default ComfyUI; an external COMFYUI_PATH reaches it from here.
    if not (comfy / "custom_nodes" / "ComfyUI-MicroCinema").exists():
        lines.append(f"    custom_nodes: {ROOT / '.comfyui' / 'custom_nodes'}")
    path = ROOT / ".comfyui" / "demo_extra_model_paths.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflow", type=Path, default=ROOT / "workflows" / "api" / "text_to_video.api.json",
                        help="API-format workflow (workflows/api/<name>.api.json) to render; its UI form "
                        "example_workflows/<name>.json, when present, is embedded in the saved files")
    parser.add_argument("--output", type=Path, default=ROOT / "output", help="ComfyUI output directory")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[run_demo] %(message)s")

    comfy = comfyui_path()
    models = ROOT / ".cache" / "demo_models"
    subprocess.run([sys.executable, "-m", "microcinema_core.demo", "--models-dir", str(models)], cwd=ROOT, check=True)
    prompt = json.loads(args.workflow.read_text())
    ui_form = ROOT / "example_workflows" / args.workflow.name.replace(".api.json", ".json")
    extra = {"extra_pnginfo": {"workflow": json.loads(ui_form.read_text())}} if ui_form.is_file() and \
        ui_form.resolve() != args.workflow.resolve() else {}

    args.output.mkdir(parents=True, exist_ok=True)
    port = free_port()
    front_end = tempfile.mkdtemp(prefix="mc-frontend-")  # headless: no web UI needed for the main job
    command = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
               "--disable-api-nodes", "--extra-model-paths-config", str(extra_paths_yaml(models, comfy)),
               "--output-directory", str(args.output.resolve()), "--front-end-root", front_end]
    log_file = open(ROOT / ".comfyui" / "run_demo_server.log", "w")
    started = time.time()
    server = subprocess.Popen(command, cwd=comfy, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        while True:
            try:
                http(port, "/system_stats", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if server.poll() is not None or time.time() - started > 120:
                    log.error("ComfyUI did not start; see %s", log_file.name)
                    return 1
                time.sleep(0.5)
        log.info("ComfyUI %s up on 127.0.0.1:%d after %.1f s", comfy, port, time.time() - started)
        try:
            queued = http(port, "/prompt", {"prompt": prompt, "client_id": str(uuid.uuid4()), "extra_data": extra})
        except urllib.error.HTTPError as exc:
            log.error("the workflow was refused: %s", exc.read().decode(errors="replace"))
            return 1
        prompt_id = queued["prompt_id"]
        t0 = time.time()
        while time.time() - t0 < args.timeout:
            history = http(port, f"/history/{prompt_id}").get(prompt_id)
            if history and history.get("status", {}).get("completed") is not None:
                break
            time.sleep(1.0)
        else:
            log.error("timed out after %.0f s", args.timeout)
            return 1
        status = history["status"]
        if status.get("status_str") != "success":
            log.error("the workflow failed: %s", json.dumps(status.get("messages"), indent=1)[:4000])
            return 1
        files = []
        for node_output in history["outputs"].values():
            for item in node_output.get("images", []) + node_output.get("gifs", []) + node_output.get("videos", []):
                if isinstance(item, dict) and "filename" in item:
                    files.append(args.output / item.get("subfolder", "") / item["filename"])
        log.info("rendered in %.1f s; files:", time.time() - t0)
        for f in files:
            log.info("  %s", f)
        return 0
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log_file.close()


if __name__ == "__main__":
    raise SystemExit(main())
