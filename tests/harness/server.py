"""A real ComfyUI server process (main.py) on 127.0.0.1 with the pack loaded, plus a small HTTP/websocket
client. Slower than the in-process runner but exactly what users run: argument parsing, custom node
discovery, the prompt queue and worker thread, websocket messages, /history.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .locations import PACK_NAME, REPO_ROOT, SessionDirs, comfyui_path, pack_custom_nodes_dir, venv_python

log = logging.getLogger("microcinema.tests.server")
HOST = "127.0.0.1"  # never anything else: tests must not expose a server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def pack_already_in_checkout(comfy: Path) -> bool:
    """bootstrap links the pack into its own ComfyUI's custom_nodes; adding our folder too would load the
    pack twice."""
    link = comfy / "custom_nodes" / PACK_NAME
    return link.exists() and link.resolve() == REPO_ROOT


def write_extra_paths_yaml(dirs: SessionDirs, comfy: Path, with_pack: bool = True) -> Path:
    """Model folders -> session dirs (is_default: new files land there); custom_nodes -> the pack link."""
    entries = {name: str(path) for name, path in dirs.models.items()}
    if with_pack and not pack_already_in_checkout(comfy):
        entries["custom_nodes"] = str(pack_custom_nodes_dir())
    lines = ["microcinema_tests:", "  is_default: true"]
    lines += [f"  {name}: {json.dumps(path)}" for name, path in entries.items()]
    path = dirs.root / ("extra_model_paths.yaml" if with_pack else "extra_model_paths_nopack.yaml")
    path.write_text("\n".join(lines) + "\n")
    return path


def main_command(dirs: SessionDirs, *, port: int | None = None, with_pack: bool = True,
                 isolate_custom_nodes: bool = True, extra: list[str] | None = None) -> list[str]:
    """The main.py command line the tests use. ``isolate_custom_nodes`` loads only our pack (a user's
    COMFYUI_PATH checkout may hold other packs that would slow down or break the tests)."""
    comfy = comfyui_path()
    cmd = [venv_python(), str(comfy / "main.py"), "--cpu", "--listen", HOST, "--disable-api-nodes",
           "--extra-model-paths-config", str(write_extra_paths_yaml(dirs, comfy, with_pack)),
           "--output-directory", str(dirs.output), "--input-directory", str(dirs.input),
           "--temp-directory", str(dirs.temp), "--user-directory", str(dirs.user),
           "--database-url", "sqlite:///:memory:", "--disable-auto-launch"]
    if port is not None:
        cmd += ["--port", str(port)]
    if isolate_custom_nodes or not with_pack:
        cmd += ["--disable-all-custom-nodes"]
        if with_pack:
            cmd += ["--whitelist-custom-nodes", PACK_NAME]
    if importlib.util.find_spec("comfyui_frontend_package") is None:
        cmd += ["--front-end-root", str(dirs.empty_front_end)]
    return cmd + list(extra or [])


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# "   0.0 seconds: /path/pack" (0.33 prefixes log lines with a coloured "[INFO]")
IMPORT_LINE = re.compile(r"(?:^|\s)([0-9]+\.[0-9]+) seconds( \(IMPORT FAILED\))?: (.+)$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def custom_node_import_times(log_text: str) -> dict[str, tuple[float, bool]]:
    """ComfyUI's "Import times for custom nodes" block -> {folder name: (seconds, imported ok)}."""
    times = {}
    for line in ANSI.sub("", log_text).splitlines():
        m = IMPORT_LINE.search(line)
        if m:
            times[Path(m.group(3).strip()).name] = (float(m.group(1)), m.group(2) is None)
    return times


class PromptRejected(AssertionError):
    """POST /prompt answered with an error status (400 for validation failures)."""

    def __init__(self, status: int, body: dict):
        self.status = status
        self.body = body
        self.node_errors = body.get("node_errors", {}) if isinstance(body, dict) else {}
        super().__init__(f"POST /prompt -> HTTP {status}: {json.dumps(body)[:2000]}")


@dataclass
class ServerRun:
    prompt_id: str
    messages: list[dict] = field(default_factory=list)  # websocket JSON messages for this prompt, in order
    history: dict = field(default_factory=dict)  # GET /history/{prompt_id}[prompt_id]

    def events(self, kind: str) -> list[dict]:
        return [m["data"] for m in self.messages if m.get("type") == kind]

    @property
    def succeeded(self) -> bool:
        return bool(self.events("execution_success"))

    @property
    def outputs(self) -> dict:
        return self.history.get("outputs", {})


class ComfyServer:
    def __init__(self, dirs: SessionDirs, port: int, process: subprocess.Popen, log_path: Path) -> None:
        self.dirs = dirs
        self.port = port
        self.process = process
        self.log_path = log_path
        self.base_url = f"http://{HOST}:{port}"

    @classmethod
    def start(cls, dirs: SessionDirs, extra: list[str] | None = None, timeout: float = 180.0) -> "ComfyServer":
        port = free_port()
        return cls.launch(main_command(dirs, port=port, extra=extra), port, dirs, comfyui_path(), server_env(),
                          timeout)

    @classmethod
    def launch(cls, cmd: list[str], port: int, dirs: SessionDirs, cwd: Path, env: dict[str, str],
               timeout: float = 180.0) -> "ComfyServer":
        """Run a main.py command line of the caller's (``port``: its --port) and wait until it answers."""
        log_path = dirs.root / f"server-{port}.log"
        log.info("starting %s", " ".join(cmd))
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(cmd, cwd=str(cwd), stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)
        server = cls(dirs, port, process, log_path)
        try:
            server._wait_ready(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode} during start:\n{self.log_tail()}")
            try:
                status, _ = self.request("GET", "/object_info", timeout=5)
                if status == 200:
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"ComfyUI did not answer /object_info within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_text()[-chars:]

    # -- HTTP -------------------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, _decode(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, _decode(err.read())

    def object_info(self, node_class: str | None = None) -> dict:
        status, body = self.request("GET", "/object_info" + (f"/{node_class}" if node_class else ""))
        assert status == 200, body
        return body

    def queue_prompt(self, prompt: dict, client_id: str | None = None, **fields: Any) -> str:
        """POST /prompt; returns the prompt id or raises PromptRejected (with ComfyUI's node_errors)."""
        status, body = self.request("POST", "/prompt", {"prompt": prompt, "client_id": client_id or "", **fields})
        if status != 200:
            raise PromptRejected(status, body)
        return body["prompt_id"]

    def history(self, prompt_id: str) -> dict:
        status, body = self.request("GET", f"/history/{prompt_id}")
        assert status == 200, body
        return body.get(prompt_id, {})

    # -- a whole run ------------------------------------------------------------------------------------
    def run(self, prompt: dict, timeout: float = 300.0) -> ServerRun:
        """Queue ``prompt`` and follow it over the websocket until it finishes; returns messages and history.
        Raises PromptRejected for a 400; an execution error is reported in the result (see ``succeeded``)."""
        import websocket  # websocket-client

        client_id = uuid.uuid4().hex
        ws = websocket.create_connection(f"ws://{HOST}:{self.port}/ws?clientId={client_id}", timeout=timeout)
        try:
            prompt_id = self.queue_prompt(prompt, client_id)
            run = ServerRun(prompt_id)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                raw = ws.recv()
                if not isinstance(raw, str):
                    continue  # binary frames: previews
                message = json.loads(raw)
                data = message.get("data") or {}
                if data.get("prompt_id") not in (None, prompt_id):
                    continue
                run.messages.append(message)
                kind = message.get("type")
                if kind in ("execution_error", "execution_interrupted"):
                    break
                if kind == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                    break  # ComfyUI's "this prompt is done" signal (after execution_success)
            else:
                raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout:.0f} s:\n{self.log_tail()}")
        finally:
            ws.close()
        run.history = self._wait_history(prompt_id)
        return run

    def _wait_history(self, prompt_id: str, timeout: float = 30.0) -> dict:
        # The worker writes history right after the last message; poll briefly instead of racing it.
        deadline = time.monotonic() + timeout
        while True:
            entry = self.history(prompt_id)
            if entry.get("status", {}).get("completed") is not None or entry.get("outputs") \
                    or time.monotonic() > deadline:
                return entry
            time.sleep(0.1)


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")
