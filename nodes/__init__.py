"""MicroCinema node definitions (ComfyUI V3 API). One extension, one entry point."""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .noise_prior_nodes import MicroCinemaNoisePrior


class MicroCinemaExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [
            MicroCinemaNoisePrior,
        ]


async def comfy_entrypoint() -> MicroCinemaExtension:
    return MicroCinemaExtension()
