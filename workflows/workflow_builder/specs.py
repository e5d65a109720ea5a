"""Node specs: a trimmed copy of ComfyUI's /object_info for the node types the workflows use
(workflows/spec/node_specs.json). The UI form needs each node's widget order and socket types from it;
tests/test_workflows.py checks it against the running ComfyUI."""
from __future__ import annotations

import json
from pathlib import Path

SPECS_PATH = Path(__file__).resolve().parent.parent / "spec" / "node_specs.json"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
VIRTUAL_NODES = {"Note", "MarkdownNote"}  # front-end only: in the UI form, never in the API form
SPEC_OPTION_KEYS = ("default", "control_after_generate", "image_upload", "forceInput")


def trim_object_info(info: dict) -> dict:
    """What the builder needs of one /object_info entry: input order and kinds, outputs, display name."""
    inputs = []
    order = info.get("input_order") or {s: list(info["input"].get(s, {})) for s in ("required", "optional")}
    for section in ("required", "optional"):
        for name in order.get(section, []):
            spec = info["input"][section][name]
            kind = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            entry = {"name": name, "section": section, "type": "COMBO" if isinstance(kind, list) else kind}
            entry.update({k: opts[k] for k in SPEC_OPTION_KEYS if k in opts})
            inputs.append(entry)
    outputs = [{"name": n, "type": t} for n, t in zip(info.get("output_name") or info["output"], info["output"])]
    return {"display_name": info.get("display_name", info.get("name")), "output_node": bool(info.get("output_node")),
            "inputs": inputs, "outputs": outputs}


def is_widget(inp: dict) -> bool:
    return inp["type"] in WIDGET_TYPES and not inp.get("forceInput")


def load_specs(path: Path = SPECS_PATH) -> dict[str, dict]:
    return json.loads(path.read_text())


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def refresh_specs(object_info_path: Path, used: set[str], path: Path = SPECS_PATH) -> None:
    """Rewrite node_specs.json from a saved GET /object_info answer, for the node types in ``used``."""
    object_info = json.loads(object_info_path.read_text())
    used = sorted(set(used) - VIRTUAL_NODES)
    missing = [t for t in used if t not in object_info]
    if missing:
        raise SystemExit(f"{object_info_path} lacks {missing}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps({t: trim_object_info(object_info[t]) for t in used}))
    print(f"wrote {path}")
