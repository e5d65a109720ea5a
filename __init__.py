"""ComfyUI-MicroCinema: image&text-to-video (MicroCinema, CVPR 2024) as native ComfyUI nodes.

Wiring only: ComfyUI imports this package from its custom_nodes folder and calls ``comfy_entrypoint``.
The model math lives in ``microcinema_core``; the node definitions in ``nodes``.
"""
from .nodes import comfy_entrypoint

__all__ = ["comfy_entrypoint"]
