"""ComfyUI's real web front end in headless Chromium, driven by Playwright (browser tests).

Chromium comes from Debian (`scripts/install_browser.sh`: apt-get install chromium); Playwright only drives it
(``executable_path``), it never downloads a browser. Every browser gets a new, empty profile directory.

The front end writes some console errors that have nothing to do with a workflow; they are recorded but not
held against it (see BENIGN_CONSOLE_ERRORS): 404s for optional user files (user.css, userdata listings) and a
settings TypeError at start-up, and blocked look-ups of api.comfy.org (ComfyUI's Content-Security-Policy keeps
the page offline: connect-src 'self').
"""
from __future__ import annotations

import importlib.util
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # --headless and --user-data-dir come from Playwright (headless=True, launch_persistent_context)
VIEWPORT = {"width": 1600, "height": 1000}
BENIGN_CONSOLE_ERRORS = [
    re.compile(r"violates the following Content Security Policy directive.*", re.S),  # api.comfy.org, offline
    # Front end 1.49 (ComfyUI 0.33) sizes the models of its own default template (z_image_turbo on huggingface.co)
    # and the page's CSP refuses the fetch; our workflows carry no model URLs, so nothing of ours is fetched.
    re.compile(r"^Fetch API cannot load https://\S+\. Refused to connect because it violates the document's "
               r"Content Security Policy"),
    re.compile(r"^Failed to load resource: the server responded with a status of 404"),
]
BENIGN_PAGE_LOAD_ERRORS = [
    re.compile(r"^TypeError: Cannot read properties of undefined \(reading 'id'\)\s+at onChange", re.S),
    # Logged by front end 1.49 (ComfyUI 0.33.0) while it starts, with every custom node disabled too (checked with
    # --disable-all-custom-nodes): the front end's own start-up order, not a pack's.
    re.compile(r"^ComfyApp graph accessed before initialization"),
]
# The ComfyApp object: window.comfyAPI.app.app on the current front ends, window.app on old ones.
APP_JS = "((window.comfyAPI && window.comfyAPI.app && window.comfyAPI.app.app) || window.app)"


def skip_reason() -> str | None:
    """Why browser tests cannot run here, or None."""
    if shutil.which(str(CHROMIUM)) is None:
        return f"{CHROMIUM} is missing: run `sudo bash scripts/install_browser.sh` (Debian chromium + playwright)"
    if importlib.util.find_spec("playwright") is None:
        return "the python package playwright is missing: run `bash scripts/install_browser.sh`"
    if importlib.util.find_spec("comfyui_frontend_package") is None:
        return "comfyui-frontend-package is not installed (ComfyUI's requirements.txt; run scripts/bootstrap.sh)"
    return None


@dataclass
class ConsoleLog:
    entries: list[tuple[str, str]] = field(default_factory=list)  # (kind, text); kind: console type or pageerror
    mark: int = 0

    def since_mark(self) -> list[tuple[str, str]]:
        return self.entries[self.mark:]

    def set_mark(self) -> None:
        self.mark = len(self.entries)

    def errors_since_mark(self, extra_benign: list[re.Pattern] | None = None) -> list[str]:
        benign = BENIGN_CONSOLE_ERRORS + (extra_benign or [])
        return [f"{kind}: {text}" for kind, text in self.since_mark()
                if kind in ("error", "pageerror") and not any(p.search(text) for p in benign)]


class ComfyPage:
    """One page of the front end on a ComfyServer."""

    def __init__(self, context, base_url: str):
        self.page = context.new_page()
        self.base_url = base_url
        self.console = ConsoleLog()
        self.page.on("console", lambda m: self.console.entries.append((m.type, m.text)))
        self.page.on("pageerror", lambda e: self.console.entries.append(("pageerror", str(e))))

    def open(self, node_types: tuple[str, ...] = ("KSampler", "MicroCinemaImageToVideo"), timeout: float = 180):
        """Load the page and wait until the node definitions are registered and the page is quiet; start-up
        errors are checked against BENIGN_PAGE_LOAD_ERRORS, then the console mark is set."""
        self.page.goto(self.base_url, wait_until="load", timeout=timeout * 1000)
        check = " && ".join(f"window.LiteGraph.registered_node_types[{t!r}]" for t in node_types)
        self.page.wait_for_function(f"() => window.LiteGraph && window.LiteGraph.registered_node_types && {check}",
                                    timeout=timeout * 1000)
        self.page.wait_for_load_state("networkidle", timeout=timeout * 1000)
        startup = self.console.errors_since_mark(BENIGN_PAGE_LOAD_ERRORS)
        assert not startup, "front-end errors while the page loaded:\n" + "\n".join(startup)
        self.console.set_mark()
        return self

    def evaluate(self, script: str, arg: Any = None) -> Any:
        return self.page.evaluate(script, arg)

    def load_workflow(self, workflow: dict) -> None:
        """What dropping a workflow file on the canvas does: app.loadGraphData(workflow)."""
        self.evaluate(f"async (wf) => {{ const app = {APP_JS}; await app.loadGraphData(wf); }}", workflow)
        self.page.wait_for_timeout(500)

    def dialogs(self) -> list[str]:
        return self.evaluate("() => Array.from(document.querySelectorAll('.p-dialog')).map(d => d.innerText)")

    def missing_node_problems(self) -> list[str]:
        """Missing-nodes dialog text and nodes the front end has no definition for (drawn red)."""
        problems = [d[:500] for d in self.dialogs() if "missing" in d.lower() and "node" in d.lower()]
        problems += self.evaluate(f"""() => {{
            const app = {APP_JS};
            return app.graph.nodes.filter(n => !window.LiteGraph.registered_node_types[n.type] || n.has_errors)
                                  .map(n => `node ${{n.id}} ${{n.type}}`);
        }}""")
        return problems

    def graph_to_prompt(self) -> dict:
        """The API prompt the front end would queue for the loaded graph."""
        return self.evaluate(f"async () => {{ const app = {APP_JS}; return (await app.graphToPrompt()).output; }}")

    def serialized_workflow(self) -> dict:
        return self.evaluate(f"() => {APP_JS}.graph.serialize()")

    def queue_with_run_button(self, timeout: float = 60) -> str:
        """Click the Run (queue) button as a user does; returns the prompt id the server answered."""
        with self.page.expect_response(lambda r: r.url.endswith("/api/prompt") and r.request.method == "POST",
                                       timeout=timeout * 1000) as response_info:
            button = self.page.get_by_test_id("queue-button")
            if button.count():
                button.first.click()
            else:  # older front ends
                self.evaluate(f"async () => {{ await {APP_JS}.queuePrompt(0, 1); }}")
        response = response_info.value
        body = response.json()
        assert response.status == 200, f"POST /prompt from the front end -> {response.status}: {body}"
        return body["prompt_id"]

    def wait_for_node_outputs(self, node_ids: list[str], timeout: float = 60) -> None:
        """Until the front end shows results (previews) for node_ids, i.e. it got the 'executed' messages."""
        deadline = time.monotonic() + timeout
        script = f"""(ids) => {{
            const app = {APP_JS};
            const outputs = app.nodeOutputs || {{}};
            return ids.filter(id => !outputs[id] && !(app.graph.getNodeById(Number(id))?.imgs?.length));
        }}"""
        missing = node_ids
        while time.monotonic() < deadline:
            missing = self.evaluate(script, node_ids)
            if not missing:
                return
            time.sleep(0.5)
        raise AssertionError(f"the front end shows no output for nodes {missing}")

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.page.close()


def launch(playwright, user_data_dir: Path):
    """A persistent context on a new empty profile (Playwright passes it as --user-data-dir)."""
    user_data_dir.mkdir(parents=True, exist_ok=True)
    assert not any(user_data_dir.iterdir()), f"{user_data_dir} is not empty"
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS, viewport=VIEWPORT)
