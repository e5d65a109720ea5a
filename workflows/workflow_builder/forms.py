"""A Workflow (a Graph plus a title, a description and groups) -> its API form and its UI form.

The UI form needs each node's widget values in the exact order the front end creates widgets: the node's inputs
in /object_info ``input_order`` (required, then optional), skipping sockets (MODEL, IMAGE...), plus the extra
values the front end adds itself: a "control after generate" value after every INT input whose options have
``control_after_generate`` and an "image" value for the upload button after combos with ``image_upload``.
Layout: nodes are placed in columns (``NodeRef.ui(col=...)``), stacked downwards in id (creation) order.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from .graph import Graph, is_link
from .specs import VIRTUAL_NODES, is_widget

DEFAULT_WIDTH = 320


class WorkflowError(ValueError):
    pass


@dataclass
class Group:
    title: str
    cols: tuple[int, ...]
    color: str = "#3f789e"


@dataclass
class Workflow:
    name: str
    title: str
    description: str  # MarkdownNote text shown above the graph
    graph: Graph
    groups: list[Group]
    thumbnail_steps: list[str]  # pipeline boxes drawn on the template-browser thumbnail

    @property
    def nodes(self) -> list["Node"]:
        return [Node.of(self.graph, ref.id) for ref in self.graph]


@dataclass
class Node:
    """One node as the forms see it: integer id, widget values and links apart, and its layout options."""
    id: int
    type: str
    col: int
    widgets: dict[str, Any] = field(default_factory=dict)
    links: dict[str, tuple[int, int]] = field(default_factory=dict)  # input -> (source node id, output index)
    title: str | None = None
    control: str = "fixed"  # "control after generate" of seed inputs: fixed keeps the documented output
    extra_height: int = 0  # room for text boxes and previews
    width: int = DEFAULT_WIDTH
    linked_widgets: dict[str, Any] = field(default_factory=dict)  # value a widget fed by a link shows

    @classmethod
    def of(cls, graph: Graph, node_id: str) -> "Node":
        data, ui = graph[node_id], graph.ui_options(node_id)
        if "col" not in ui:
            raise WorkflowError(f"node {node_id} ({data['class_type']}) has no column: call .ui(col=...)")
        links = {k: (int(v[0]), v[1]) for k, v in data["inputs"].items() if is_link(v)}
        widgets = {k: v for k, v in data["inputs"].items() if not is_link(v)}
        return cls(int(node_id), data["class_type"], ui["col"], widgets, links, ui.get("title"),
                   ui.get("control", "fixed"), ui.get("extra_height", 0), ui.get("width", DEFAULT_WIDTH),
                   ui.get("linked_widgets", {}))


# -- checks ------------------------------------------------------------------------------------------------------
def node_inputs(node: Node, spec: dict) -> tuple[list[dict], list[dict]]:
    """(sockets, widgets) of the node's spec, after checking the node gives every input it must."""
    sockets = [i for i in spec["inputs"] if not is_widget(i)]
    widgets = [i for i in spec["inputs"] if is_widget(i)]
    known = {i["name"] for i in spec["inputs"]}
    for name in list(node.widgets) + list(node.links):
        if name not in known:
            raise WorkflowError(f"node {node.id} ({node.type}) has no input {name!r}")
    for inp in sockets:
        if inp["section"] == "required" and inp["name"] not in node.links:
            raise WorkflowError(f"node {node.id} ({node.type}): required input {inp['name']!r} is not connected")
    for inp in widgets:
        if inp["name"] not in node.widgets and inp["name"] not in node.links:
            raise WorkflowError(f"node {node.id} ({node.type}): widget {inp['name']!r} has no value")
    return sockets, widgets


def check(wf: Workflow, specs: dict) -> list[Node]:
    nodes = wf.nodes
    by_id = {n.id: n for n in nodes}
    for node in nodes:
        if node.type not in specs:
            raise WorkflowError(f"{wf.name}: no spec for {node.type}: run --refresh-specs")
        for src, index in node.links.values():
            if src not in by_id or index >= len(specs[by_id[src].type]["outputs"]):
                raise WorkflowError(f"{wf.name}: node {node.id} links to a missing output {src}:{index}")
    return nodes


# -- API form ----------------------------------------------------------------------------------------------------
def api_form(wf: Workflow, specs: dict) -> dict:
    prompt = {}
    for node in sorted(check(wf, specs), key=lambda n: n.id):
        if node.type in VIRTUAL_NODES:
            continue
        spec = specs[node.type]
        node_inputs(node, spec)
        inputs = {}
        for inp in spec["inputs"]:
            name = inp["name"]
            if name in node.links:
                src, index = node.links[name]
                inputs[name] = [str(src), index]
            elif is_widget(inp):
                inputs[name] = node.widgets[name]
        prompt[str(node.id)] = {"inputs": inputs, "class_type": node.type,
                                "_meta": {"title": node.title or spec["display_name"]}}
    return prompt


# -- UI form -----------------------------------------------------------------------------------------------------
def widget_values(node: Node, spec: dict) -> list:
    """widgets_values in the front end's order (control-after-generate and upload values included)."""
    _, widgets = node_inputs(node, spec)
    values = []
    for inp in widgets:
        values.append(node.widgets.get(inp["name"], node.linked_widgets.get(inp["name"], inp.get("default"))))
        if inp.get("control_after_generate"):
            values.append(node.control)
        if inp.get("image_upload"):
            values.append("image")
    return values


def _topological_order(nodes: list[Node]) -> dict[int, int]:
    deps = {n.id: {src for src, _ in n.links.values()} for n in nodes}
    order, done = {}, set()
    while len(done) < len(nodes):
        ready = sorted(i for i, d in deps.items() if i not in done and d <= done)
        if not ready:
            raise WorkflowError("the graph has a cycle")
        for i in ready:
            order[i] = len(order)
            done.add(i)
    return order


SLOT_H, WIDGET_H, BODY_PAD, TITLE_H = 20, 24, 14, 30
COL_GAP, ROW_GAP = 60, 50


def _node_height(node: Node, spec: dict) -> int:
    sockets, widgets = node_inputs(node, spec)
    rows = len(widgets) + sum(1 for i in widgets if i.get("control_after_generate") or i.get("image_upload"))
    return SLOT_H * max(len(sockets), len(spec["outputs"])) + WIDGET_H * rows + BODY_PAD + node.extra_height


def _layout(nodes: list[Node], specs: dict) -> dict[int, tuple[list[float], list[float]]]:
    cols = sorted({n.col for n in nodes})
    widths = {c: max(n.width for n in nodes if n.col == c) for c in cols}
    x, xs = 0.0, {}
    for c in cols:
        xs[c] = x
        x += widths[c] + COL_GAP
    placed = {}
    for c in cols:
        y = 0.0
        for node in sorted((n for n in nodes if n.col == c), key=lambda n: n.id):
            h = _node_height(node, specs[node.type])
            placed[node.id] = ([xs[c], y], [float(node.width), float(h)])
            y += h + TITLE_H + ROW_GAP
    return placed


def _ui_input_names(spec: dict) -> list[str]:
    """Slot order of a node's inputs as the front end builds it: sockets first, then widget inputs."""
    return [i["name"] for i in spec["inputs"] if not is_widget(i)] + [i["name"] for i in spec["inputs"] if is_widget(i)]


def ui_form(wf: Workflow, specs: dict) -> dict:
    nodes_in = sorted(check(wf, specs), key=lambda n: n.id)
    by_id = {n.id: n for n in nodes_in}
    placed = _layout(nodes_in, specs)
    order = _topological_order(nodes_in)
    links, link_ids = [], {}
    for node in nodes_in:
        spec = specs[node.type]
        for inp in spec["inputs"]:
            if inp["name"] in node.links:
                src, index = node.links[inp["name"]]
                src_type = specs[by_id[src].type]["outputs"][index]["type"]
                link_id = len(links) + 1
                link_ids[(node.id, inp["name"])] = link_id
                links.append([link_id, src, index, node.id, _ui_input_names(spec).index(inp["name"]), src_type])
    nodes = []
    for node in nodes_in:
        spec = specs[node.type]
        sockets, widgets = node_inputs(node, spec)
        inputs = []
        for inp in sockets + widgets:
            entry = {"name": inp["name"], "localized_name": inp["name"], "type": inp["type"]}
            if is_widget(inp):
                entry["widget"] = {"name": inp["name"]}
            if inp["section"] == "optional" and not is_widget(inp):
                entry["shape"] = 7  # the front end draws optional sockets hollow
            entry["link"] = link_ids.get((node.id, inp["name"]))
            inputs.append(entry)
        outputs = []
        for index, out in enumerate(spec["outputs"]):
            out_links = [link[0] for link in links if link[1] == node.id and link[2] == index]
            outputs.append({"name": out["name"], "localized_name": out["name"], "type": out["type"],
                            "slot_index": index, "links": out_links})
        pos, size = placed[node.id]
        entry = {"id": node.id, "type": node.type, "pos": pos, "size": size, "flags": {}, "order": order[node.id],
                 "mode": 0, "inputs": inputs, "outputs": outputs,
                 "properties": {"Node name for S&R": node.type}, "widgets_values": widget_values(node, spec)}
        if node.title:
            entry["title"] = node.title
        nodes.append(entry)

    groups = []
    for gi, group in enumerate(wf.groups, start=1):
        members = [placed[n.id] for n in nodes_in if n.col in group.cols]
        x0 = min(p[0] for p, _ in members) - 20
        y0 = min(p[1] for p, _ in members) - TITLE_H - 50
        x1 = max(p[0] + s[0] for p, s in members) + 20
        y1 = max(p[1] + s[1] for p, s in members) + 20
        groups.append({"id": gi, "title": group.title, "bounding": [x0, y0, x1 - x0, y1 - y0], "color": group.color,
                       "font_size": 24, "flags": {}})
    # the description as a Markdown note above the graph
    top = min(g["bounding"][1] for g in groups) if groups else 0.0
    note_id = max(n.id for n in nodes_in) + 1
    nodes.append({"id": note_id, "type": "MarkdownNote", "pos": [0.0, top - 330.0], "size": [900.0, 280.0],
                  "flags": {}, "order": len(nodes), "mode": 0, "inputs": [], "outputs": [],
                  "properties": {}, "widgets_values": [wf.description], "title": "About this workflow",
                  "color": "#432", "bgcolor": "#653"})
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://github.com/ComfyUI-MicroCinema/{wf.name}")),
        "revision": 0,
        "last_node_id": note_id,
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": groups,
        "config": {},
        "extra": {"ds": _initial_view(nodes, groups),
                  "microcinema": {"workflow": wf.name, "title": wf.title,
                                  "api_form": f"workflows/api/{wf.name}.api.json"}},
        "version": 0.4,
    }


def _initial_view(nodes: list[dict], groups: list[dict]) -> dict:
    """Canvas scale/offset that shows as much of the graph as fits a ~1500x850 px canvas right of the side bar,
    from its top-left corner, but never below 0.65: under 0.6 the front end draws nodes without text
    (LiteGraph: screen = (graph + offset) * scale)."""
    boxes = [(n["pos"][0], n["pos"][1] - TITLE_H, n["size"][0], n["size"][1] + TITLE_H) for n in nodes]
    boxes += [tuple(g["bounding"]) for g in groups]
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    scale = round(max(0.65, min(1.0, 1450 / (x1 - x0), 820 / (y1 - y0))), 2)
    return {"scale": scale, "offset": [round(80 / scale - x0, 1), round(110 / scale - y0, 1)]}


def build(workflows: list[Callable[[], Workflow]], specs: dict) -> dict[str, dict]:
    """{name: {"ui": ..., "api": ..., "workflow": Workflow}} for each workflow function."""
    out = {}
    for make in workflows:
        wf = make()
        if wf.name in out:
            raise WorkflowError(f"two workflows are named {wf.name!r}")
        out[wf.name] = {"ui": ui_form(wf, specs), "api": api_form(wf, specs), "workflow": wf}
    return out
