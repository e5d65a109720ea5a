"""A tiny builder for ComfyUI API-format prompts.

    g = Graph()
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name="tiny.safetensors")
    pos = g.node("CLIPTextEncode", text="a cat", clip=ckpt.out(1))
    g.to_api()  # {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {...}}, "2": {...}}

Links are ``[node_id, output_index]`` as in ComfyUI's API format. A NodeRef used directly as an input value
means its output 0.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


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

    def to_api(self) -> dict[str, dict[str, Any]]:
        """The API-format prompt (a deep copy: ComfyUI may add keys to the dict it is given)."""
        return copy.deepcopy(self._nodes)
