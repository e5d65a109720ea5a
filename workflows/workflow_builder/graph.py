"""A small builder for ComfyUI API-format prompts, with automatic node ids.

    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name="tiny.safetensors")
    pos = g.node("CLIPTextEncode", text="a cat", clip=ckpt.out(1))
    g.to_api()  # {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {...}}, "2": {...}}

Node ids are "1", "2", ... in creation order (an explicit ``_id`` is possible, for tests that need one). Links are
``[node_id, output_index]`` as in ComfyUI's API format; a NodeRef used directly as an input value means its
output 0. ``NodeRef.ui(...)`` records how the example-workflow builder draws the node (column, title, size);
prompts ignore it.

The one graph builder of the repository: the example workflows (workflows/workflow_builder) and the tests
(tests/harness/graph.py re-exports it) both use it. Standard library only.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

UI_OPTIONS = ("col", "title", "width", "extra_height", "control", "linked_widgets")


@dataclass(frozen=True)
class Output:
    node_id: str
    index: int

    def link(self) -> list:
        return [self.node_id, self.index]


@dataclass(frozen=True)
class NodeRef:
    graph: "Graph"
    id: str
    class_type: str

    def out(self, index: int = 0) -> Output:
        return Output(self.id, index)

    def set(self, **inputs: Any) -> "NodeRef":
        """Change or add inputs after creation (e.g. to build a bad variant of a good graph)."""
        self.graph._nodes[self.id]["inputs"].update(_encode(inputs))
        return self

    def ui(self, **options: Any) -> "NodeRef":
        """How the workflow builder draws the node: col (column), title, width, extra_height, control (the
        seed's "control after generate"), linked_widgets ({input: value} a widget fed by a link shows)."""
        unknown = set(options) - set(UI_OPTIONS)
        if unknown:
            raise ValueError(f"unknown UI options {sorted(unknown)}; known: {UI_OPTIONS}")
        self.graph._ui.setdefault(self.id, {}).update(options)
        return self


def is_link(value: Any) -> bool:
    """ComfyUI's rule for API-form inputs: a [node_id, output_index] pair is a link, anything else a value."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _encode(inputs: dict[str, Any]) -> dict[str, Any]:
    encoded = {}
    for name, value in inputs.items():
        if isinstance(value, NodeRef):
            value = value.out(0)
        encoded[name] = value.link() if isinstance(value, Output) else value
    return encoded


class Graph:
    def __init__(self) -> None:
        self._nodes: dict[str, dict[str, Any]] = {}
        self._ui: dict[str, dict[str, Any]] = {}
        self._next = 1

    def node(self, class_type: str, _id: str | int | None = None, **inputs: Any) -> NodeRef:
        node_id = str(_id) if _id is not None else str(self._next)
        if node_id in self._nodes:
            raise ValueError(f"node id {node_id} is used twice")
        self._next = max(self._next, int(node_id) + 1 if node_id.isdigit() else self._next)
        self._nodes[node_id] = {"class_type": class_type, "inputs": _encode(inputs)}
        return NodeRef(self, node_id, class_type)

    def __getitem__(self, node_id: str | int) -> dict[str, Any]:
        return self._nodes[str(node_id)]

    def __iter__(self):
        """NodeRefs in creation order."""
        return iter([NodeRef(self, i, n["class_type"]) for i, n in self._nodes.items()])

    def ui_options(self, node_id: str) -> dict[str, Any]:
        return dict(self._ui.get(str(node_id), {}))

    def to_api(self) -> dict[str, dict[str, Any]]:
        """The API-format prompt (a deep copy: ComfyUI may add keys to the dict it is given)."""
        return copy.deepcopy(self._nodes)
