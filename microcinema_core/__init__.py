"""MicroCinema model math, checkpoints and training. No ComfyUI node classes live here.

Submodules import ComfyUI's ``comfy`` package (openaimodel blocks, ops, attention). Outside a running
ComfyUI (training CLI, benchmarks) call ``microcinema_core.comfy_env.ensure_comfy()`` first.
"""
FORMAT_VERSION = 1
