"""Test harness for ComfyUI-MicroCinema: a real ComfyUI in-process (graph tests) or as a server process.

See tests/conftest.py for the pytest fixtures built on these modules.
"""
from .graph import Graph, NodeRef, Output
from .locations import REPO_ROOT, SessionDirs, comfyui_path
from .runner import GraphExecutionError, GraphInterrupted, GraphResult, GraphRunner, GraphValidationError
from .server import ComfyServer, PromptRejected, ServerRun

__all__ = [
    "REPO_ROOT", "ComfyServer", "Graph", "GraphExecutionError", "GraphInterrupted", "GraphResult",
    "GraphRunner", "GraphValidationError", "NodeRef", "Output", "PromptRejected", "ServerRun", "SessionDirs",
    "comfyui_path",
]
