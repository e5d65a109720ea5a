"""The MicroCinema video UNet forward pass over an SD UNet's own blocks.

``VideoUNet`` takes the place of a BaseModel's ``diffusion_model`` (as a ModelPatcher object patch). It
registers the SD UNet's sub-modules under their own names (the same objects: no copy), so LoRA patches, weight
offloading and key-based tools see ``diffusion_model.input_blocks...`` exactly as before, plus the MicroCinema
module under ``diffusion_model.microcinema``. The forward mirrors ComfyUI's UNetModel._forward (wrappers,
emb/input/output block patches, ControlNet residuals at the same points, transformer_options for spatial
attention patches) and adds, per block: pseudo-3D ResBlocks, a temporal transformer, and AppearNet injection.

Conditioning arrives as keyword arguments (ComfyUI model conds, see ``conditioning.py``):
  mc_num_frames  int, frames per video (T); the batch is [(groups * videos * T), ...]
  mc_hint        [N, latent_channels + 2, h, w] keyframe latent (model space), keyframe-position mask, frame offset
  mc_strength    [N] AppearNet strength per frame (0 switches it off)
"""
from __future__ import annotations

import functools
from typing import Optional

import comfy.model_management
import comfy.patcher_extension
import torch
import torch.utils.checkpoint
from einops import rearrange
from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import (ResBlock, TimestepBlock, apply_control,
                                                            forward_timestep_embed, timestep_embedding)
from torch import nn

from .conditioning import hint_keyframe, hint_mask, hint_offset
from .context_windows import ContextSettings, sampling_step, window_indices, window_weights, with_keyframe
from .layout import BlockInfo
from .module import MicroCinemaModule, block_entry
from .motion_amount import MOTION_KWARG, MOTION_OPTION, SCALE_OPTION, FrameScale, motion_inputs
from .prompt_travel import TEXT_FRAMES, frames_problem
from .sd_layers import SD_CHILDREN, own_layers, unet_blocks, walked_layers
from .temporal import ResBlockTemporal


class MicroCinemaInputError(ValueError):
    """Raised for conditioning the video model cannot use; the message says what to connect."""


CONTEXT_OPTION = "microcinema_context"  # transformer_options key set by the context-window node

# The transformer_options["patches"] kinds the UNet-level forward consults (UNetModel._forward and
# forward_timestep_embed in ComfyUI), each honoured here with upstream's semantics. tests/test_hook_drift.py reads
# the running ComfyUI's forward and fails on any kind it consults that is missing here, so a hook added upstream
# cannot be skipped silently. Attention-level kinds (attn1_patch, attn2_patch, *_output_patch, middle_patch and the
# "patches_replace" attn1/attn2 replacements) are consulted inside BasicTransformerBlock, which runs unchanged.
HONOURED_PATCHES: tuple[str, ...] = (
    "emb_patch",
    "input_block_patch",
    "input_block_patch_after_skip",
    "middle_block_after_patch",  # newer ComfyUI: after the middle block and its ControlNet residual
    "output_block_patch",  # newer ComfyUI: may return hsp=None, meaning "no skip concat"
    "forward_timestep_embed_patch",
)
# transformer_options entries upstream's UNet-level forward writes for the patches to read.
HONOURED_OPTIONS: tuple[str, ...] = ("original_shape", "transformer_index", "block")
# patcher_extension wrapper kinds the diffusion model's own forward runs through.
HONOURED_WRAPPERS: tuple[str, ...] = ("DIFFUSION_MODEL",)

_SPATIAL_ATTRIBUTES = ("model_channels", "in_channels", "out_channels", "num_classes", "dtype",
                       "predict_codebook_ids", "default_num_video_frames", "context_dim", "num_res_blocks")


class VideoUNet(nn.Module):
    def __init__(self, spatial: nn.Module, module: MicroCinemaModule, base: Optional[nn.Module] = None):
        """``base``: the SD-only view of ``spatial`` the module was built from (patching.module_base), when other
        packs may have changed ``spatial``; it tells how many layers each block holds."""
        super().__init__()
        # Only the children openaimodel builds: a module another pack hung on the shared UNet must not become
        # part of this model (loaded, offloaded and saved with it).
        for name, child in spatial.named_children():
            if name in SD_CHILDREN:
                self.add_module(name, child)
        # How many SD layers each block holds: a longer live block has layers inserted since (sd_layers).
        self.slots = {_block_key(part, index): len(own_layers(seq, part == "input_blocks" and index == 0))
                      for part, index, seq in unet_blocks(spatial if base is None else base)}
        for name in _SPATIAL_ATTRIBUTES:
            if hasattr(spatial, name):
                setattr(self, name, getattr(spatial, name))
        self.microcinema = module
        self.layout = module.layout
        # The UNet itself, unregistered (its children are registered above under their SD names).
        self.__dict__["spatial"] = spatial
        self.gradient_checkpointing = False  # training only: recompute each block in the backward pass

    # -- entry point -------------------------------------------------------------------------------------
    def forward(self, x, timesteps=None, context=None, y=None, control=None, transformer_options={}, **kwargs):
        motion = transformer_options.get(MOTION_OPTION)
        if motion is not None:
            # Motion amount: one factor per latent frame of the whole batch (and the text sign's offset cue scaled),
            # computed before context windows slice the frames (per-frame kwargs are sliced with them), so each
            # frame keeps the factor of its true index.
            kwargs.update(motion_inputs(motion, transformer_options, kwargs,
                                        self._frames(x, kwargs, transformer_options), x.shape[0]))
        return comfy.patcher_extension.WrapperExecutor.new_class_executor(
            self._forward, self,
            comfy.patcher_extension.get_all_wrappers(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL,
                                                     transformer_options),
        ).execute(x, timesteps, context, y, control, transformer_options, **kwargs)

    def _forward(self, x, timesteps=None, context=None, y=None, control=None, transformer_options={}, **kwargs):
        num_frames = self._frames(x, kwargs, transformer_options)
        problem = frames_problem(kwargs.get(TEXT_FRAMES), num_frames, transformer_options.get("cond_or_uncond"))
        if problem:  # a prompt-travel context of another length would give frames other frames' prompts
            raise MicroCinemaInputError(problem)
        settings = transformer_options.get(CONTEXT_OPTION)
        if settings is not None and num_frames > settings.length:
            return self._forward_windows(settings, x, timesteps, context, y, control, transformer_options,
                                         num_frames, kwargs)
        return self._forward_clip(x, timesteps, context, y, control, transformer_options, num_frames, kwargs)

    def _forward_windows(self, settings: ContextSettings, x, timesteps, context, y, control, transformer_options,
                         num_frames: int, kwargs: dict):
        """Run the clip forward over context windows of frames and fuse the outputs per frame."""
        groups = x.shape[0] // num_frames
        keyframe = _keyframe_index(kwargs.get("mc_hint"), num_frames) if settings.keep_keyframe else None
        out = torch.zeros_like(x, dtype=torch.float32)
        weight_sum = torch.zeros(num_frames, dtype=torch.float32, device=x.device)
        # the uniform schedules move their windows with the sampling step (ComfyUI puts the sigmas in the options)
        for window in window_indices(num_frames, settings, sampling_step(transformer_options)):
            comfy.model_management.throw_exception_if_processing_interrupted()
            frames = with_keyframe(window, keyframe) if keyframe is not None else window
            index = torch.tensor([g * num_frames + f for g in range(groups) for f in frames], device=x.device)
            take = lambda v: _take_frames(v, index, x.shape[0])  # noqa: E731
            sub_kwargs = {k: take(v) for k, v in kwargs.items()}
            sub_kwargs["mc_num_frames"] = len(frames)
            sub_control = None if control is None else {
                name: [take(c) for c in residuals] for name, residuals in control.items()}
            result = self._forward_clip(x[index], take(timesteps), take(context), take(y), sub_control,
                                        transformer_options, len(frames), sub_kwargs)
            weights = window_weights(window, frames, num_frames, settings.fuse_method, settings.overlap).to(x.device)
            out.index_add_(0, index, result.float() * weights.repeat(groups).reshape(-1, 1, 1, 1))
            weight_sum.index_add_(0, torch.tensor(frames, device=x.device), weights)
        return (out / weight_sum.repeat(groups).reshape(-1, 1, 1, 1)).to(x.dtype)

    def _forward_clip(self, x, timesteps, context, y, control, transformer_options, num_frames: int, kwargs: dict):
        transformer_options["original_shape"] = list(x.shape)
        transformer_options["transformer_index"] = 0
        transformer_options[SCALE_OPTION] = FrameScale.of(kwargs.get(MOTION_KWARG), x.device)  # motion amount
        patches = transformer_options.get("patches", {})

        appearance, strength = self._appearance(x, timesteps, context, y, num_frames, kwargs, transformer_options)

        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels, repeat_only=False).to(x.dtype))
        for p in patches.get("emb_patch", []):
            emb = p(emb, self.model_channels, transformer_options)
        if self.num_classes is not None:
            emb = emb + self.label_emb(y)

        module, layout = self.microcinema, self.layout
        hs = []
        h = x
        for info, seq in zip(layout.input, self.input_blocks):
            transformer_options["block"] = ("input", info.index)
            h = self._call_block(seq, info, h, emb, context, num_frames, transformer_options,
                                block_entry(module.temporal, info), self._injection(info), appearance, strength)
            h = apply_control(h, control, "input")
            for p in patches.get("input_block_patch", []):
                h = p(h, transformer_options)
            hs.append(h)
            for p in patches.get("input_block_patch_after_skip", []):
                h = p(h, transformer_options)

        transformer_options["block"] = ("middle", 0)
        if self.middle_block is not None:
            h = self._call_block(self.middle_block, layout.middle, h, emb, context, num_frames, transformer_options,
                                module.temporal["middle"], self._injection(layout.middle), appearance, strength)
        h = apply_control(h, control, "middle")
        for p in patches.get("middle_block_after_patch", []):
            # newer ComfyUI: one dict in, a dict with the new "h" out
            h = p({"h": h, "x": x, "emb": emb, "context": context, "y": y, "timesteps": timesteps,
                   "transformer_options": transformer_options})["h"]

        for info, seq in zip(layout.output, self.output_blocks):
            transformer_options["block"] = ("output", info.index)
            hsp = apply_control(hs.pop(), control, "output")
            for p in patches.get("output_block_patch", []):
                h, hsp = p(h, hsp, transformer_options)
            if hsp is not None:  # a patch that merged the skip itself returns None for it (newer ComfyUI)
                h = torch.cat([h, hsp], dim=1)
            del hsp
            output_shape = hs[-1].shape if hs else None
            h = self._call_block(seq, info, h, emb, context, num_frames, transformer_options,
                                block_entry(module.temporal, info), self._injection(info), appearance, strength,
                                output_shape)
        h = h.type(x.dtype)
        if getattr(self, "predict_codebook_ids", False):
            return self.id_predictor(h)
        return self.out(h)

    # -- conditioning ------------------------------------------------------------------------------------
    @staticmethod
    def _frames(x: torch.Tensor, kwargs: dict, transformer_options: Optional[dict] = None) -> int:  # noqa: D401
        # ComfyUI batches the CFG halves ("cond_or_uncond": 0 positive, 1 negative) into one call; each half must
        # hold whole videos, or frames of two videos (or of the two halves) would be mixed in time.
        halves = list((transformer_options or {}).get("cond_or_uncond") or [])
        num_frames = kwargs.get("mc_num_frames")
        if num_frames is None:
            which = {0: "positive", 1: "negative"}.get(halves[0]) if halves and len(set(halves)) == 1 else None
            which = f"the {which} conditioning" if which else "this conditioning"
            raise MicroCinemaInputError(
                f"MicroCinema video model: {which} carries no video settings. Route BOTH the positive "
                "and the negative conditioning through 'MicroCinema Image To Video' before the sampler.")
        num_frames = int(num_frames)
        per_half = x.shape[0] // len(halves) if halves and x.shape[0] % len(halves) == 0 else x.shape[0]
        if num_frames < 1 or per_half % num_frames != 0:
            raise MicroCinemaInputError(
                f"MicroCinema video model: a batch of {per_half} latent frames is not a whole number of "
                f"{num_frames}-frame videos; connect the LATENT of 'MicroCinema Image To Video' (or one with "
                "the same length) to the sampler's latent_image.")
        return num_frames

    def _appearance(self, x, timesteps, context, y, num_frames, kwargs, transformer_options):
        appearnet = self.microcinema.appearnet
        hint, strength = kwargs.get("mc_hint"), kwargs.get("mc_strength")
        if appearnet is None or hint is None or strength is None:
            return None, None
        strength = strength.to(device=x.device, dtype=x.dtype).reshape(-1, 1, 1, 1)
        if strength.shape[0] != x.shape[0] or hint.shape[0] != x.shape[0] or hint.shape[-2:] != x.shape[-2:]:
            raise MicroCinemaInputError(
                f"MicroCinema video model: appearance for {hint.shape[0]} frames of {tuple(hint.shape[-2:])} does "
                f"not match the {x.shape[0]} latent frames of {tuple(x.shape[-2:])} being sampled; connect the "
                "LATENT of 'MicroCinema Image To Video' (same size and length) to the sampler's latent_image.")
        if not bool(torch.any(strength != 0)):
            return None, None  # strength 0: AppearNet is off; skip its cost entirely
        return self.run_appearnet(x, timesteps, context, y, hint.to(x), num_frames, transformer_options), strength

    def _hint_inputs(self, hint: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """What hint_in reads: keyframe latent + mask, then (text sign, see AppearNet) offset x keyframe x sign_i
        for each of the k signs read from the frame's prompt."""
        net = self.microcinema.appearnet
        keyframe = hint_keyframe(hint)
        inputs = [keyframe, hint_mask(hint)]
        if net.text_sign is not None:
            # [N, k]: one prompt per frame after batching (no context at all: no sign, as at strength 0 of it)
            signs = net.text_sign(context.to(hint).mean(dim=1)) if context is not None else \
                hint.new_zeros(hint.shape[0], net.text_sign.out_features)
            moved = keyframe * hint_offset(hint)
            inputs += [moved * rearrange(sign, "n -> n 1 1 1") for sign in signs.unbind(dim=1)]
        return torch.cat(inputs, dim=1)

    def run_appearnet(self, x, timesteps, context, y, hint, num_frames, transformer_options) -> dict:
        """AppearNet over z_t + ZeroConv(hint): the video embedding of every encoder block and the middle."""
        net, layout = self.microcinema.appearnet, self.layout
        # Attention patches target the main UNet's blocks; AppearNet gets the options without them.
        options = {k: v for k, v in transformer_options.items() if k not in ("patches", "patches_replace")}
        options["transformer_index"] = 0
        emb = net.time_embed(timestep_embedding(timesteps, self.model_channels, repeat_only=False).to(x.dtype))
        if self.num_classes is not None:
            emb = emb + self.label_emb(y)
        h = x + net.hint_in(self._hint_inputs(hint, context))
        out = {}
        for info, seq in zip(layout.input, net.input_blocks):
            options["block"] = ("input", info.index)
            h = self._call_block(seq, info, h, emb, context, num_frames, options, block_entry(net.temporal, info))
            if info.animated:
                out[info.key] = h
        options["block"] = ("middle", 0)
        out["middle"] = self._call_block(net.middle_block, layout.middle, h, emb, context, num_frames, options,
                                        net.temporal["middle"])
        return out

    def _injection(self, info: BlockInfo):
        return None if self.microcinema.inject is None else block_entry(self.microcinema.inject, info)

    # -- one block ---------------------------------------------------------------------------------------
    def _call_block(self, *args, **kwargs):
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self._run_block, *args, use_reentrant=False, **kwargs)
        return self._run_block(*args, **kwargs)

    def _run_block(self, seq, info: BlockInfo, h, emb, context, num_frames, transformer_options, temporal,
                   injection=None, appearance: Optional[dict] = None, strength=None, output_shape=None):
        a = None
        if appearance is not None and injection is not None:
            a = appearance[self.layout.source_for(info)]
        claimed = tuple(c for c, _ in transformer_options.get("patches", {}).get("forward_timestep_embed_patch", []))
        first = info.part == "input" and info.index == 0
        layers = walked_layers(seq, first, self.slots.get(info.key, len(seq)), claimed)
        motion = getattr(temporal, "motion", None)
        # Motion amount (motion_amount.py): None = as trained; all zero = the temporal layers are skipped.
        scale: Optional[FrameScale] = transformer_options.get(SCALE_OPTION)
        if scale is not None and scale.zero:
            temporal, motion = None, None
        motion_at = _motion_position(layers) if motion is not None else -1
        res_index = 0
        for i, layer in enumerate(layers):
            if claimed and isinstance(layer, (ResBlock, SpatialTransformer)) and isinstance(layer, claimed) \
                    and _claims_come_first():
                # This ComfyUI lets a forward_timestep_embed_patch take over a ResBlock or transformer too: the
                # handler runs the layer as upstream would (without this slot's temporal layers or injection, which
                # the handler cannot know of; the motion module still follows).
                h = _layer_through_comfy(layer, h, emb, context, transformer_options, output_shape)
                res_index += isinstance(layer, ResBlock)  # later ResBlocks keep their own temporal layers
            elif isinstance(layer, ResBlock):
                res_temporal = temporal.res[res_index] if temporal is not None and temporal.res is not None else None
                modulation = None
                if a is not None and res_temporal is not None:  # the modulation acts inside temporal conv 2
                    gamma, beta = injection.res[res_index](a)
                    modulation = (strength * gamma, strength * beta)
                h = pseudo3d_resblock(layer, res_temporal, h, emb, num_frames, modulation, scale)
                res_index += 1
            elif isinstance(layer, SpatialTransformer):
                h = layer(h, context, transformer_options)
                if "transformer_index" in transformer_options:
                    transformer_options["transformer_index"] += 1
                if a is not None and injection.attn is not None:
                    h = h + strength * injection.attn(a)
            else:
                # Upsample, Downsample, conv_in, claimed foreign layers: ComfyUI's own per-layer dispatch, so
                # whatever it does with forward_timestep_embed_patch for these kinds we do too.
                h = _layer_through_comfy(layer, h, emb, context, transformer_options, output_shape)
            if i == motion_at:
                h = motion(h, num_frames, scale)
        return h


def _block_key(part: str, index: int) -> str:
    """BlockInfo.key of a UNet block (``part`` the UNet attribute: input_blocks, middle_block, output_blocks)."""
    return "middle" if part == "middle_block" else f"{part[:-len('_blocks')]}.{index}"


def _take_frames(value, index: torch.Tensor, batch: int):
    """value[index] for per-frame tensors (first dimension == batch); anything else unchanged."""
    if torch.is_tensor(value) and value.ndim > 0 and value.shape[0] == batch:
        return value[index.to(value.device)]
    return value


def _keyframe_index(hint: Optional[torch.Tensor], num_frames: int) -> Optional[int]:
    """The frame whose keyframe-position mask is set, in the first video."""
    if hint is None:
        return None
    mask = hint_mask(hint[:num_frames]).flatten(1).amax(1)
    return int(mask.argmax()) if bool(mask.max() > 0) else None


def _motion_position(layers: list) -> int:
    """The motion module follows the block's (last) spatial attention, or its last ResBlock when it has none,
    and always comes before a resampler (AnimateDiff's placement)."""
    attention = [i for i, layer in enumerate(layers) if isinstance(layer, SpatialTransformer)]
    if attention:
        return attention[-1]
    res = [i for i, layer in enumerate(layers) if isinstance(layer, ResBlock)]
    return res[-1] if res else -1


@functools.lru_cache(maxsize=None)
def _claims_come_first() -> bool:
    """Whether the running ComfyUI's forward_timestep_embed lets a forward_timestep_embed_patch claim a layer of a
    kind it dispatches itself (0.3.75 consults the patches only for other layers). Asked once, of the function
    itself, with a stand-in TimestepBlock, so the answer follows the installed version rather than a guess."""

    class _Probe(TimestepBlock):
        def forward(self, x, emb):
            return x

    seen: list[nn.Module] = []

    def handler(layer, x, *args):
        seen.append(layer)
        return x

    forward_timestep_embed((_Probe(),), None, None, None,
                           {"patches": {"forward_timestep_embed_patch": [(_Probe, handler)]}})
    return bool(seen)


def _layer_through_comfy(layer: nn.Module, h, emb, context, transformer_options: dict, output_shape):
    """One layer through ComfyUI's forward_timestep_embed (a one-layer sequence): its dispatch and its
    forward_timestep_embed_patch lookup, exactly as the running version does them. The video-only arguments
    (time_context, num_video_frames, image_only_indicator) are None, as UNetModel passes them for SD UNets."""
    return forward_timestep_embed((layer,), h, emb, context, transformer_options, output_shape)


def pseudo3d_resblock(block: ResBlock, temporal: Optional[ResBlockTemporal], x: torch.Tensor, emb: torch.Tensor,
                      num_frames: int, modulation=None, scale: Optional[FrameScale] = None) -> torch.Tensor:
    """ResBlock._forward with the two temporal layers inserted: spatial -> temporal -> spatial -> temporal, one
    outer residual. With temporal=None (or zero temporal convs) it computes exactly ResBlock._forward.
    ``scale``: the motion amount per frame, on both temporal residuals."""
    if block.updown:
        in_rest, in_conv = block.in_layers[:-1], block.in_layers[-1]
        h = in_rest(x)
        h = block.h_upd(h)
        x = block.x_upd(x)
        h = in_conv(h)
    else:
        h = block.in_layers(x)
    if temporal is not None:
        h = temporal.t1(h, num_frames, scale=scale)

    emb_out = None
    if not block.skip_t_emb:
        emb_out = block.emb_layers(emb).type(h.dtype)
        while len(emb_out.shape) < len(h.shape):
            emb_out = emb_out[..., None]
    if block.use_scale_shift_norm:
        out_norm, out_rest = block.out_layers[0], block.out_layers[1:]
        h = out_norm(h)
        if emb_out is not None:
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = h * (1 + scale) + shift
        h = out_rest(h)
    else:
        if emb_out is not None:
            if block.exchange_temb_dims:
                emb_out = emb_out.movedim(1, 2)
            h = h + emb_out
        h = block.out_layers(h)
    if temporal is not None:
        gamma, beta = modulation if modulation is not None else (None, None)
        h = temporal.t2(h, num_frames, gamma, beta, scale)
    return block.skip_connection(x) + h
