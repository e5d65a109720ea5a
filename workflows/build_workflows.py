"""Builds the example workflows of ComfyUI-MicroCinema, both forms, from one Python function each.

    python workflows/build_workflows.py            # (re)write every workflow file
    python workflows/build_workflows.py --check    # exit 1 when a committed file differs from what this builds
    python workflows/build_workflows.py --refresh-specs OBJECT_INFO.json   # update workflows/spec/node_specs.json

Outputs (see docs/workflows.md):
    example_workflows/<name>.json      UI form: what ComfyUI's template browser lists and users drag into the page
    workflows/api/<name>.api.json      API form: what POST /prompt takes (scripts, CI, scripts/run_demo.py)

The workflows are functions in workflows/workflow_builder/examples.py (node ids are given automatically by the
graph builder the tests share, workflow_builder/graph.py); forms.py turns each into both forms from
workflows/spec/node_specs.json, a trimmed /object_info that tests/test_workflows.py checks against the live
ComfyUI.

No top-level .json file may live in workflows/: ComfyUI lists every *.json of a pack's example_workflows/,
example/, examples/, workflow/ AND workflows/ folder as a template, so API forms or copies there would show up in
the template browser as duplicates or as templates that cannot load.

Only the standard library is used (Pillow only for --example-image and thumbnails): this runs without ComfyUI.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # workflows/ is not a package (ComfyUI owns the pack's root); appended: no shadowing
    sys.path.append(str(HERE))

from workflow_builder.examples import EXAMPLE_KEYFRAME, LENGTH, WORKFLOWS  # noqa: E402
from workflow_builder.forms import Workflow, WorkflowError, build  # noqa: E402,F401
from workflow_builder.specs import (SPECS_PATH, WIDGET_TYPES, dumps, load_specs, refresh_specs,  # noqa: E402,F401
                                    trim_object_info)
from workflow_builder.thumbnails import THUMB_SIZE, render_example_keyframe, render_thumbnail  # noqa: E402,F401

REPO = HERE.parent
API_DIR = HERE / "api"
UI_DIR = REPO / "example_workflows"


def build_all(specs: dict | None = None) -> dict[str, dict]:
    """{name: {"ui": ..., "api": ..., "workflow": Workflow}} for every shipped workflow."""
    return build(WORKFLOWS, specs or load_specs())


def paths(name: str) -> tuple[Path, Path]:
    return UI_DIR / f"{name}.json", API_DIR / f"{name}.api.json"


def write_all(built: dict[str, dict]) -> list[Path]:
    written = []
    for name, forms in built.items():
        for path, data in zip(paths(name), (forms["ui"], forms["api"])):
            path.parent.mkdir(parents=True, exist_ok=True)
            text = dumps(data)
            if not path.is_file() or path.read_text() != text:
                path.write_text(text)
                written.append(path)
    return written


def stale_files(built: dict[str, dict]) -> list[Path]:
    return [path for name, forms in built.items() for path, data in zip(paths(name), (forms["ui"], forms["api"]))
            if not path.is_file() or path.read_text() != dumps(data)]


def leftover_files(built: dict[str, dict]) -> list[Path]:
    """API forms of workflows that no longer exist (renamed or removed)."""
    return sorted(p for p in API_DIR.glob("*.api.json") if p.name.removesuffix(".api.json") not in built)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report files that differ from the builder")
    parser.add_argument("--example-image", action="store_true",
                        help=f"(re)draw example_workflows/{EXAMPLE_KEYFRAME}")
    parser.add_argument("--refresh-specs", type=Path, metavar="OBJECT_INFO_JSON",
                        help="rewrite workflows/spec/node_specs.json from a saved GET /object_info answer")
    args = parser.parse_args(argv)
    if args.refresh_specs:
        refresh_specs(args.refresh_specs, {n.type for make in WORKFLOWS for n in make().nodes})
    if args.example_image:
        render_example_keyframe().save(UI_DIR / EXAMPLE_KEYFRAME, optimize=True)
    built = build_all()
    if args.check:
        stale = stale_files(built) + leftover_files(built)
        for path in stale:
            print(f"out of date: {path.relative_to(REPO)}", file=sys.stderr)
        return 1 if stale else 0
    for path in write_all(built):
        print(f"wrote {path.relative_to(REPO)}")
    for path in leftover_files(built):
        print(f"no workflow makes {path.relative_to(REPO)}: remove it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
