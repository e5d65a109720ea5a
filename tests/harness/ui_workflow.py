"""UI-format workflows (what the front end saves and users drag in) -> API-format prompts (what POST /prompt
takes), independently of the workflow builder, from the links, the widgets_values and /object_info.

The front end gives a node one widget per widget input (INT, FLOAT, STRING, BOOLEAN, COMBO / option list,
unless ``forceInput``), in /object_info ``input_order`` (required, then optional), plus a "control after
generate" value after an input whose options have ``control_after_generate`` and an upload-button value after
a combo with ``image_upload``. A widget input connected by a link keeps its value in widgets_values (the link
wins). Notes are front-end only and have no API form; muted (mode 2) and bypassed (mode 4) nodes are not
supported here (no shipped workflow uses them).
"""
from __future__ import annotations

import json
from typing import Any, Iterable

# COMFY_DYNAMICCOMBO_V3: newer ComfyUI's combo whose options carry sub-inputs (SaveVideo's format): one widget.
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "COMFY_DYNAMICCOMBO_V3"}
FRONT_END_ONLY = {"Note", "MarkdownNote"}


class WorkflowFormatError(AssertionError):
    pass


def input_specs(info: dict) -> list[tuple[str, str, Any, dict]]:
    """(name, section, type, options) in the order the front end creates inputs and widgets."""
    order = info.get("input_order") or {s: list(info.get("input", {}).get(s, {})) for s in ("required", "optional")}
    out = []
    for section in ("required", "optional"):
        for name in order.get(section, []):
            spec = info["input"][section][name]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            out.append((name, section, spec[0], opts))
    return out


def is_widget(kind: Any, opts: dict) -> bool:
    return (isinstance(kind, list) or kind in WIDGET_TYPES) and not opts.get("forceInput")


def ui_to_api(workflow: dict, object_info: dict, *, with_meta: bool = True) -> dict:
    links = {}
    for link in workflow.get("links", []):
        if isinstance(link, dict):  # the newer serialisation
            links[link["id"]] = (link["origin_id"], link["origin_slot"])
        else:
            link_id, origin_id, origin_slot = link[0], link[1], link[2]
            links[link_id] = (origin_id, origin_slot)
    prompt = {}
    for node in workflow["nodes"]:
        node_type = node["type"]
        if node_type in FRONT_END_ONLY:
            continue
        if node_type not in object_info:
            raise WorkflowFormatError(f"node {node['id']}: unknown node type {node_type!r} (a missing node pack?)")
        if node.get("mode", 0) not in (0,):
            raise WorkflowFormatError(f"node {node['id']} ({node_type}): mode {node['mode']} is not supported")
        info = object_info[node_type]
        node_links = {i["name"]: i.get("link") for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values") or [])
        if isinstance(node.get("widgets_values"), dict):
            raise WorkflowFormatError(f"node {node['id']} ({node_type}): dict widgets_values are not supported")
        inputs: dict[str, Any] = {}
        cursor = 0

        def take(what: str):
            nonlocal cursor
            if cursor >= len(values):
                raise WorkflowFormatError(f"node {node['id']} ({node_type}): widgets_values ends before {what} "
                                          f"(has {len(values)}: {values})")
            cursor += 1
            return values[cursor - 1]

        for name, section, kind, opts in input_specs(info):
            widget = is_widget(kind, opts)
            if widget and section == "optional" and cursor >= len(values) and name not in node_links:
                continue  # an optional widget newer than the file: the front end and the executor use its default
            value = take(name) if widget else None
            if widget and opts.get("control_after_generate"):
                control = take(f"{name}'s control_after_generate value")
                if control not in ("fixed", "increment", "decrement", "randomize"):
                    raise WorkflowFormatError(f"node {node['id']} ({node_type}): {control!r} after {name} is not a "
                                              "control_after_generate value (widgets out of order?)")
            if widget and opts.get("image_upload"):
                take(f"{name}'s upload value")
            if name in node_links:
                link_id = node_links[name]
                if link_id not in links:
                    raise WorkflowFormatError(f"node {node['id']} ({node_type}) input {name}: no link {link_id}")
                origin_id, origin_slot = links[link_id]
                inputs[name] = [str(origin_id), origin_slot]
            elif widget:
                inputs[name] = value
            elif section == "required":
                raise WorkflowFormatError(f"node {node['id']} ({node_type}): required input {name} is not connected")
        if cursor != len(values):
            raise WorkflowFormatError(f"node {node['id']} ({node_type}): {len(values) - cursor} widgets_values left "
                                      f"over: {values[cursor:]}")
        entry = {"inputs": inputs, "class_type": node_type}
        if with_meta:
            entry["_meta"] = {"title": node.get("title") or info.get("display_name") or node_type}
        prompt[str(node["id"])] = entry
    return prompt


def object_info_in_process(runtime, classes: Iterable[str] | None = None) -> dict:
    """GET /object_info answered by the in-process ComfyUI's own route handler (no HTTP server needed)."""
    handler = None
    for route in runtime.server.routes:
        if getattr(route, "method", None) == "GET" and getattr(route, "path", None) == "/object_info":
            handler = route.handler
            break
    if handler is None:
        raise RuntimeError("the in-process PromptServer has no GET /object_info route")
    response = runtime.run(handler(None))
    info = json.loads(response.body)
    return info if classes is None else {c: info[c] for c in classes if c in info}


def load_workflow_builder():
    """workflows/build_workflows.py as a module (workflows/ is not a package: ComfyUI owns the pack's root)."""
    import importlib.util
    import sys

    from .locations import REPO_ROOT

    name = "microcinema_build_workflows"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "workflows" / "build_workflows.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class body runs
    spec.loader.exec_module(module)
    return module
