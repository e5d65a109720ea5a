"""Which layers of a live SD UNet are the UNet's own, and which other packs put there.

ComfyUI shares one UNet object between every ModelPatcher clone of a checkpoint and leaves the last sampled
clone's changes live on it: AnimateDiff-Evolved's motion modules inserted into the blocks (ModelPatcher
injections), object patches, LoRA weights. MicroCinema reads the UNet's structure (layout, AppearNet's
encoder copy, the blocks it walks), so it must tell the layers openaimodel builds from the ones added later.

Identified by structure, not by asking the other packs: openaimodel fills a block (TimestepEmbedSequential)
only with ResBlock, SpatialTransformer, Downsample and Upsample, plus conv_in alone in input block 0, and gives
the UNet only the top-level children below. An inserted layer of any other class is foreign. This works
whoever inserted it and however (ModelPatcher injection or not), needs no access to the other pack's patcher,
and never touches the shared UNet, so the other pack's own eject still finds what it inserted.
"""
from __future__ import annotations

import logging
from typing import Iterable

from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, ResBlock, Upsample
from torch import nn

log = logging.getLogger(__name__)

# Children UNetModel.__init__ registers (label_emb: class-conditioned models; id_predictor: codebook models).
SD_CHILDREN = ("time_embed", "label_emb", "input_blocks", "middle_block", "output_blocks", "out", "id_predictor")
BLOCK_PARTS = ("input_blocks", "middle_block", "output_blocks")
_BLOCK_LAYERS = (ResBlock, SpatialTransformer, Downsample, Upsample)

_reported: set[type] = set()  # foreign classes already named in the log (the walk runs every step)


def is_block_layer(layer: nn.Module, first_block: bool, position: int) -> bool:
    """A layer openaimodel puts into a block: subclasses count (wrappers that keep the layer's interface), and
    input block 0 holds conv_in, the only conv that is a block layer by itself."""
    if isinstance(layer, _BLOCK_LAYERS):
        return True
    return first_block and position == 0 and isinstance(layer, nn.modules.conv._ConvNd)


def own_layers(seq: nn.Module, first_block: bool) -> list[nn.Module]:
    """The SD layers of a live block, in order; foreign layers inserted between them are left out."""
    own: list[nn.Module] = []
    for layer in seq:
        if is_block_layer(layer, first_block, len(own)):
            own.append(layer)
    return own


def foreign_layers(seq: nn.Module, first_block: bool) -> list[nn.Module]:
    own = {id(layer) for layer in own_layers(seq, first_block)}
    return [layer for layer in seq if id(layer) not in own]


def unet_blocks(unet: nn.Module) -> Iterable[tuple[str, int, nn.Module]]:
    """(part, index, block) for every block, ``part`` the UNet attribute; the middle block has index 0."""
    for part in BLOCK_PARTS:
        container = getattr(unet, part, None)
        if container is None:
            continue
        blocks = [container] if part == "middle_block" else list(container)
        for index, seq in enumerate(blocks):
            yield part, index, seq


def foreign_summary(unet: nn.Module) -> list[str]:
    """What other packs have put into this UNet's structure, e.g. ['input_blocks.1: ForeignMotion']."""
    found = [f"{name}: {type(child).__name__}" for name, child in unet.named_children() if name not in SD_CHILDREN]
    for part, index, seq in unet_blocks(unet):
        first = part == "input_blocks" and index == 0
        where = part if part == "middle_block" else f"{part}.{index}"
        found += [f"{where}: {type(layer).__name__}" for layer in foreign_layers(seq, first)]
    return found


def walked_layers(seq: nn.Module, first_block: bool, slots: int, claimed: tuple[type, ...]) -> list[nn.Module]:
    """The layers the video forward runs for a live block that held ``slots`` SD layers when it was wrapped.

    Same length: nothing was inserted, so every layer runs as in ComfyUI's own forward (a layer replaced by an
    object patch of the model being sampled sits in its SD slot and runs, whatever its class). Longer: something
    was inserted; it runs only when the model being sampled claims its class with a forward_timestep_embed_patch
    (how a pack asks a UNet to run its layer, e.g. AnimateDiff on its own model). Anything else was left behind
    by another model on the same checkpoint and belongs to that model's run, not to this one."""
    layers = list(seq)
    if len(layers) <= slots:
        return layers
    own = {id(layer) for layer in own_layers(seq, first_block)}
    walked = []
    for layer in layers:
        if id(layer) in own or (claimed and isinstance(layer, claimed)):
            walked.append(layer)
        elif type(layer) not in _reported:
            _reported.add(type(layer))
            log.warning("MicroCinema: skipping a %s that another model left in the shared SD UNet "
                        "(it is not part of this model)", type(layer).__name__)
    return walked
