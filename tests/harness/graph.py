"""The graph builder for ComfyUI API-format prompts: the repository's one, shared with the example-workflow
builder (workflows/workflow_builder/graph.py, standard library only). See there for usage.

workflows/ is not a package (ComfyUI owns the pack's root), so its folder is appended to sys.path: appended, so
that nothing there can shadow an installed module.
"""
from __future__ import annotations

import sys

from .locations import REPO_ROOT

_WORKFLOWS = str(REPO_ROOT / "workflows")
if _WORKFLOWS not in sys.path:
    sys.path.append(_WORKFLOWS)

from workflow_builder.graph import Graph, NodeRef, Output, is_link  # noqa: E402

__all__ = ["Graph", "NodeRef", "Output", "is_link"]
