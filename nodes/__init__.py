"""MicroCinema node definitions (ComfyUI V3 API). One extension, one entry point."""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import model_folders
from .context_nodes import MicroCinemaContextWindows
from .extend_nodes import MicroCinemaExtendVideo, MicroCinemaLastFrame
from .image_to_video_nodes import MicroCinemaImageToVideo
from .loader_nodes import MicroCinemaApplyModule, MicroCinemaCheckpointLoader
from .motion_nodes import MicroCinemaMotionAmount
from .noise_prior_nodes import MicroCinemaNoisePrior
from .prompt_travel_nodes import MicroCinemaPromptTravel
from .sampler_nodes import MicroCinemaSampler
from .video_to_video_nodes import MicroCinemaVideoToVideo

model_folders.register()


class MicroCinemaExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [
            MicroCinemaCheckpointLoader,
            MicroCinemaApplyModule,
            MicroCinemaPromptTravel,
            MicroCinemaImageToVideo,
            MicroCinemaNoisePrior,
            MicroCinemaContextWindows,
            MicroCinemaMotionAmount,
            MicroCinemaSampler,
            MicroCinemaVideoToVideo,
            MicroCinemaLastFrame,
            MicroCinemaExtendVideo,
        ]


async def comfy_entrypoint() -> MicroCinemaExtension:
    return MicroCinemaExtension()
