"""Validate and execute API-format prompts in the in-process ComfyUI, the way the server's worker does.

``GraphRunner.run`` returns a ``GraphResult`` holding every executed node's outputs (tensors, LATENT dicts,
MODEL patchers...), the UI results the history would show, and every message ComfyUI sent.
"""
from __future__ import annotations

import inspect
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

from .graph import Graph

log = logging.getLogger("microcinema.tests.runner")


class GraphValidationError(AssertionError):
    """ComfyUI refused the prompt (the server would answer HTTP 400). ``node_errors`` is ComfyUI's dict
    {node_id: {"errors": [{"type", "message", "details", "extra_info"}], "class_type", ...}}."""

    def __init__(self, error: dict, node_errors: dict):
        self.error = error or {}
        self.node_errors = node_errors or {}
        lines = [f"{self.error.get('message', 'invalid prompt')}: {self.error.get('details', '')}".rstrip(": ")]
        for node_id, info in self.node_errors.items():
            for reason in info.get("errors", []):
                input_name = reason.get("extra_info", {}).get("input_name")
                where = f" input {input_name!r}" if input_name else ""
                lines.append(f"  node {node_id} ({info.get('class_type')}){where}: {reason.get('message')}: "
                             f"{reason.get('details')}")
        super().__init__("\n".join(lines))

    def input_names(self) -> set[str]:
        return {r.get("extra_info", {}).get("input_name") for info in self.node_errors.values()
                for r in info.get("errors", [])} - {None}


class GraphExecutionError(AssertionError):
    """A node raised while executing. The original exception is ``__cause__`` (in-process) so tests can
    check its type; ``node_id``/``node_type``/``exception_message``/``traceback`` are ComfyUI's report."""

    def __init__(self, report: dict):
        self.report = report
        self.node_id = report.get("node_id")
        self.node_type = report.get("node_type")
        self.exception_type = report.get("exception_type")
        self.exception_message = report.get("exception_message")
        self.traceback = "".join(report.get("traceback") or [])
        super().__init__(f"node {self.node_id} ({self.node_type}) failed: {self.exception_type}: "
                         f"{self.exception_message}\n{self.traceback}")


class GraphInterrupted(AssertionError):
    def __init__(self, report: dict):
        self.report = report
        super().__init__(f"execution interrupted at node {report.get('node_id')} ({report.get('node_type')})")


@dataclass
class GraphResult:
    prompt_id: str
    prompt: dict
    raw_outputs: dict[str, list]  # node id -> one list per output socket (ComfyUI's cache format)
    ui: dict[str, Any]  # node id -> UI dict (what /history shows under "outputs")
    history: dict  # executor.history_result
    messages: list[tuple[str, Any]] = field(default_factory=list)

    def output(self, node_id: Any, index: int = 0) -> Any:
        """Output ``index`` of a node, unwrapped from ComfyUI's per-output list when it holds one item."""
        node_id = _node_id(node_id)
        if node_id not in self.raw_outputs:
            raise KeyError(f"node {node_id} has no cached outputs (executed: {sorted(self.raw_outputs)})")
        value = self.raw_outputs[node_id][index]
        return value[0] if isinstance(value, list) and len(value) == 1 else value

    def __getitem__(self, node_id: Any) -> Any:
        return self.output(node_id, 0)

    def events(self, name: str) -> list[Any]:
        return [data for event, data in self.messages if event == name]


def _node_id(node: Any) -> str:
    return str(getattr(node, "id", getattr(node, "node_id", node)))


class GraphRunner:
    """One PromptExecutor for the session (like the server's worker), so a loaded checkpoint stays cached
    between prompts; ``fresh=True`` uses a new executor (cold caches)."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self._executor = None

    def new_executor(self):
        import execution

        # "ram_inactive" exists from 0.4x on; older versions ignore extra keys. The classic cache keeps the
        # outputs of every node of the last prompt, which is what tests read back.
        cache_args = {"lru": 0, "ram": 0.0, "ram_inactive": 0.0}
        executor = execution.PromptExecutor(self.runtime.server, cache_type=False, cache_args=cache_args)
        original = executor.handle_execution_error

        def keep_exception(prompt_id, prompt, current_outputs, executed, error, ex):
            executor._harness_exception = ex  # the report only has strings; tests want the exception
            return original(prompt_id, prompt, current_outputs, executed, error, ex)

        executor.handle_execution_error = keep_exception
        return executor

    @property
    def executor(self):
        if self._executor is None:
            self._executor = self.new_executor()
        return self._executor

    # -- validation -------------------------------------------------------------------------------------
    def validate(self, prompt: dict, outputs: Iterable[Any] | None = None, prompt_id: str = "") -> list[str]:
        """Validate like POST /prompt does; returns the node ids to execute or raises GraphValidationError.

        ``outputs`` may name non-output nodes (to read intermediate tensors): those are checked with the
        same per-node function validate_prompt uses, since validate_prompt only considers OUTPUT_NODEs.
        """
        import execution
        import nodes

        requested = [_node_id(o) for o in outputs] if outputs is not None else None
        for node_id in requested or []:
            if node_id not in prompt:
                raise GraphValidationError({"message": f"requested output node {node_id} is not in the prompt"},
                                           {})
        output_nodes = {
            node_id for node_id, node in prompt.items()
            if getattr(nodes.NODE_CLASS_MAPPINGS.get(node.get("class_type")), "OUTPUT_NODE", False) is True
        }
        plain = [n for n in (requested or []) if n not in output_nodes]
        partial = None if requested is None else [n for n in requested if n in output_nodes]

        node_errors: dict = {}
        error = None
        good: list[str] = []
        if requested is None or partial:
            valid, error, good, node_errors = self._call_validate_prompt(prompt, prompt_id, partial)
            if not valid or node_errors:  # the server would run the valid rest; tests want all or nothing
                raise GraphValidationError(error or {"message": "some outputs failed validation"}, node_errors)
        elif plain:
            # validate_prompt's own first check, so an unknown class reads the same as from the server
            for node_id, node in prompt.items():
                if "class_type" not in node or node["class_type"] not in nodes.NODE_CLASS_MAPPINGS:
                    raise GraphValidationError({"type": "invalid_prompt", "message": "Cannot execute because "
                                                f"node {node.get('class_type')} does not exist.",
                                                "details": f"Node ID '#{node_id}'"}, {})
        validated: dict = {}
        for node_id in plain:
            valid, reasons, _ = self.runtime.run(_validate_inputs(execution, prompt_id, prompt, node_id,
                                                                  validated))
            if valid is not True:
                for other, result in validated.items():
                    if result[0] is not True and len(result[1]) > 0:
                        node_errors.setdefault(other, {"errors": result[1], "dependent_outputs": [],
                                                       "class_type": prompt[other]["class_type"]})
                raise GraphValidationError({"type": "prompt_outputs_failed_validation",
                                            "message": "Prompt outputs failed validation",
                                            "details": "; ".join(r.get("message", "") for r in reasons)},
                                           node_errors)
            good.append(node_id)
        return list(dict.fromkeys(good))

    def _call_validate_prompt(self, prompt: dict, prompt_id: str, partial: list[str] | None):
        import execution

        params = inspect.signature(execution.validate_prompt).parameters
        args: list[Any] = []
        if "prompt_id" in params:
            args.append(prompt_id)
        args.append(prompt)
        if "partial_execution_list" in params:
            args.append(partial)
        result = execution.validate_prompt(*args)
        if inspect.isawaitable(result):
            result = self.runtime.run(result)
        return result

    # -- execution --------------------------------------------------------------------------------------
    def run(self, prompt: dict | Graph, outputs: Iterable[Any] | None = None, *, fresh: bool = False,
            extra_data: dict | None = None) -> GraphResult:
        """Validate then execute ``prompt`` (API dict or Graph). ``outputs``: node ids (or NodeRefs) whose
        results are wanted; default: every output node, as the server does. Raises GraphValidationError
        or GraphExecutionError."""
        if isinstance(prompt, Graph):
            prompt = prompt.to_api()
        prompt_id = str(uuid.uuid4())
        targets = self.validate(prompt, outputs, prompt_id)
        executor = self.new_executor() if fresh else self.executor
        executor._harness_exception = None
        server = self.runtime.server
        messages: list[tuple[str, Any]] = []
        real_send_sync = server.send_sync

        def record(event, data, sid=None):
            messages.append((event, data))

        # Messages go to this prompt's list instead of websocket clients (there are none in-process).
        server.send_sync = record
        try:
            data = {"client_id": "microcinema-tests", **(extra_data or {})}
            self.runtime.run(executor.execute_async(prompt, prompt_id, data, targets))
        finally:
            server.send_sync = real_send_sync
        for event, report in executor.status_messages:
            if event == "execution_error":
                raise GraphExecutionError(report) from executor._harness_exception
            if event == "execution_interrupted":
                raise GraphInterrupted(report) from executor._harness_exception
        raw = {node_id: self._cached(executor, node_id) for node_id in prompt}
        raw = {k: getattr(v, "outputs", v) for k, v in raw.items() if v is not None}
        history = getattr(executor, "history_result", {}) or {}
        return GraphResult(prompt_id=prompt_id, prompt=prompt, raw_outputs=raw, ui=history.get("outputs", {}),
                           history=history, messages=messages)

    def _cached(self, executor, node_id: str):
        entry = executor.caches.outputs.get(node_id)
        if inspect.isawaitable(entry):  # the cache became async in newer ComfyUI
            entry = self.runtime.run(entry)
        return entry


async def _validate_inputs(execution, prompt_id, prompt, node_id, validated):
    result = execution.validate_inputs(prompt_id, prompt, node_id, validated)
    if inspect.isawaitable(result):
        result = await result
    return result
