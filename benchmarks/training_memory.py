"""GPU memory per rank of ``python -m microcinema_core.train`` for the SD1.5-width MicroCinema module.

    .venv/bin/python benchmarks/training_memory.py                  # 256x256, 16 frames, batch 1 (a few CPU minutes)
    .venv/bin/python benchmarks/training_memory.py --no-calibrate   # the table only (seconds)

What is exact and what is estimated:
* weights, gradients, optimiser state: parameter counts of the SD1.5 UNet exactly as ComfyUI builds it (the config
  ComfyUI's model detection returns for SD1.5 keys, built on the meta device: no memory, no arithmetic) and of the
  module ``build_module`` makes for it, times the bytes the trainer keeps per parameter (frozen parts 2 bytes,
  trained weights, gradients and AdamW's two moments 4 bytes each, 8-bit AdamW's moments 1 byte each);
* activations: COMPUTED, not measured on a GPU. One training forward on the meta device with saved-tensor hooks
  adds up what autograd keeps for the backward pass, under an emulation of CUDA's bf16 autocast (matmuls and
  convolutions in bf16, norms in fp32) with attention counted as torch's fused CUDA kernels keep it (q, k, v,
  output, log-sum-exp). With gradient checkpointing the trainer recomputes each block in the backward pass, so
  what stays is the blocks' inputs plus the saved tensors of one block at a time.
* calibration (unless --no-calibrate): the same count for a narrow config against a real forward + backward on
  this CPU in fp32 (no emulation needed there): the hook count on real tensors, and the growth of the process's
  peak RSS during the step, with and without gradient checkpointing.

Not counted: the CUDA context and library workspaces (a few hundred MB, outside torch's allocator), the caching
allocator's fragmentation, and the VAE's own activations while it encodes the clip (no gradients; none at all when
training from a latent cache).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pack_import import core, sub  # noqa: E402

GIB = 2**30
BNB_MIN_8BIT_SIZE = 4096   # bitsandbytes keeps 32-bit moments for tensors smaller than this
BNB_BLOCK = 2048           # ... and one fp32 absmax per block of this many elements per 8-bit moment


# -- models on the meta device ----------------------------------------------------------------------------------

def comfy_sd15_unet_config() -> dict:
    """The unet_config ComfyUI itself derives from SD1.5 checkpoint keys (model detection + the SD15 class's extra
    config), so the counts are those of the UNet ComfyUI's loader builds, not of a hand-written config."""
    import comfy.model_detection
    import comfy.ops
    import comfy.supported_models
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    reference = sub("configs").reference_unet_config()
    with torch.device("meta"):
        keys = UNetModel(**reference, operations=comfy.ops.disable_weight_init, device="meta").state_dict()
    model_config = comfy.model_detection.model_config_from_unet(keys, "")
    if type(model_config) is not comfy.supported_models.SD15:
        raise RuntimeError(f"ComfyUI detects {type(model_config).__name__} for SD1.5's keys, not SD15")
    return dict(model_config.unet_config)


def build_meta(unet_config: dict, text_sign: int, unet_dtype: torch.dtype):
    """(VideoUNet, UNet, module) on the meta device: the frozen UNet in ``unet_dtype``, the module in fp32 (what
    StableDiffusionSetup trains)."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    module_lib, patching = sub("module"), sub("patching")
    meta = torch.device("meta")
    unet = UNetModel(**unet_config, dtype=unet_dtype, operations=comfy.ops.disable_weight_init, device=meta)
    unet.requires_grad_(False)
    module = module_lib.build_module(unet, module_lib.ModuleConfig(motion_text_sign=text_sign),
                                     patching.MODULE_OPERATIONS, dtype=torch.float32, device=meta, fresh=False)
    return sub("video_unet").VideoUNet(unet, module), unet, module


def numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def frozen_counts() -> dict[str, int]:
    tiny = sub("tiny_models")
    count = lambda shapes: sum(int(torch.Size(s).numel()) for s, _ in shapes.values())  # noqa: E731
    return {"clip": count(tiny.clip_l_shapes()), "vae": count(tiny.vae_shapes())}


def adamw8bit_bytes(module: torch.nn.Module) -> int:
    total = 0
    for p in module.parameters():
        n = p.numel()
        total += 2 * n + 2 * 4 * -(-n // BNB_BLOCK) if n >= BNB_MIN_8BIT_SIZE else 8 * n
    return total


# -- counting what autograd saves ------------------------------------------------------------------------------

class _FlashLikeAttention(torch.autograd.Function):
    """Keeps what torch's fused SDPA kernels keep for the backward pass (q, k, v, output, fp32 log-sum-exp),
    where the math fallback that meta tensors dispatch to would keep the whole attention matrix."""

    @staticmethod
    def forward(ctx, q, k, v):
        out = torch.empty_like(q)
        lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, _, _ = ctx.saved_tensors
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)


class EmulatedAutocast(TorchFunctionMode):
    """CUDA bf16 autocast's casting rules on any device (meta tensors are outside autocast's reach): matmuls and
    convolutions cast floating inputs to ``low`` (None: no casting), norms to fp32. With ``flash`` SDPA runs as
    _FlashLikeAttention (meta tensors only: real tensors keep the real kernel)."""

    LOW = {F.conv1d, F.conv2d, F.conv3d, F.linear, torch.matmul, torch.bmm, torch.baddbmm, torch.addmm, torch.mm,
           torch.Tensor.__matmul__, torch.einsum}
    FP32 = {F.group_norm, F.layer_norm, F.softmax, torch.softmax, torch.Tensor.softmax}

    def __init__(self, low: Optional[torch.dtype], flash: bool):
        super().__init__()
        self.low, self.flash = low, flash

    def _cast(self, value, dtype):
        if dtype is not None and torch.is_tensor(value) and value.is_floating_point() and value.dtype != dtype:
            return value.to(dtype)
        return value

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention and self.flash:
            q, k, v = (self._cast(t, self.low) for t in args[:3])
            extra = dict(kwargs)
            if len(args) > 3 or extra.pop("attn_mask", None) is not None or extra.pop("is_causal", False):
                raise NotImplementedError("only unmasked, non-causal attention is emulated")
            return _FlashLikeAttention.apply(q, k, v)
        dtype = self.low if func in self.LOW else torch.float32 if func in self.FP32 and self.low else None
        if dtype is not None:
            args = tuple(self._cast(a, dtype) if not isinstance(a, (list, tuple)) else type(a)(
                self._cast(x, dtype) for x in a) for a in args)
        return func(*args, **kwargs)


@dataclass
class SavedCount:
    """Bytes autograd saves, each storage once, parameters excluded; attributed to the block being run."""

    skip: set = field(default_factory=set)            # storages of parameters and buffers
    seen: dict = field(default_factory=dict)          # storage -> bytes
    per_block: list = field(default_factory=list)     # [(label, bytes saved inside the block)]
    block_inputs: dict = field(default_factory=dict)  # storage -> bytes of tensors handed to a block
    outside: int = 0
    _inside: set = field(default_factory=set)         # storages first saved inside a block
    _current: Optional[int] = None

    @staticmethod
    def key(t: torch.Tensor) -> int:
        return t.untyped_storage()._cdata

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        key = self.key(t)
        if key not in self.skip and key not in self.seen:
            nbytes = t.untyped_storage().nbytes()
            self.seen[key] = nbytes
            if self._current is None:
                self.outside += nbytes
            else:
                label, total = self.per_block[self._current]
                self.per_block[self._current] = (label, total + nbytes)
        return t

    @property
    def total(self) -> int:
        return sum(self.seen.values())

    def checkpointed(self) -> tuple[int, int]:
        """(kept through the backward pass, largest recomputed block) with gradient checkpointing: saved tensors
        outside blocks plus every block's inputs; one block's saved tensors at a time."""
        kept = dict(self.block_inputs)
        kept.update({k: v for k, v in self.seen.items() if k not in self._inside})
        return sum(kept.values()), max((b for _, b in self.per_block), default=0)

    def wrap_blocks(self, net) -> None:
        run = net._run_block

        def counted(seq, info, *args, **kwargs):
            for value in list(args) + list(kwargs.values()):
                for t in (value.values() if isinstance(value, dict) else [value]):
                    if torch.is_tensor(t) and self.key(t) not in self.skip:
                        self.block_inputs.setdefault(self.key(t), t.untyped_storage().nbytes())
            self.per_block.append((f"{info.part}.{info.index}", 0))
            self._current = len(self.per_block) - 1
            before = set(self.seen)
            try:
                return run(seq, info, *args, **kwargs)
            finally:
                self._inside.update(set(self.seen) - before)
                self._current = None

        net._run_block = counted


@contextlib.contextmanager
def sdpa_attention():
    """ComfyUI's SDPA attention for spatial and temporal layers (its choice on CUDA); on CPU it would pick the
    chunked sub-quadratic kernel and the basic one for short sequences."""
    import comfy.ldm.modules.attention as attention

    temporal = sub("temporal")
    saved = attention.optimized_attention, temporal.optimized_attention_for_device
    attention.optimized_attention = attention.attention_pytorch
    temporal.optimized_attention_for_device = lambda *a, **k: attention.attention_pytorch
    try:
        yield
    finally:
        attention.optimized_attention, temporal.optimized_attention_for_device = saved


def training_inputs(frames: int, latent: int, batch: int, device, context_dim: int = 768) -> tuple:
    """What TrainLoop.loss hands the video UNet for ``batch`` clips (fp32 latents, fp32 context)."""
    n = batch * frames
    x = torch.zeros(n, 4, latent, latent, device=device)
    context = torch.zeros(n, 77, context_dim, device=device)
    hint = torch.zeros(n, 4 + 2, latent, latent, device=device)
    inputs = {"mc_num_frames": frames, "mc_hint": hint, "mc_strength": torch.ones(n, device=device)}
    return x, torch.zeros(n, device=device), context, inputs


def skip_strength_check(net) -> None:
    """VideoUNet skips AppearNet when every strength is 0, a check that reads a value: meta tensors have none.
    Training always runs it at strength 1, so this calls it unconditionally."""

    def appearance(x, timesteps, context, y, num_frames, kwargs, options):
        strength = kwargs["mc_strength"].to(x).reshape(-1, 1, 1, 1)
        return net.run_appearnet(x, timesteps, context, y, kwargs["mc_hint"].to(x), num_frames, options), strength

    net._appearance = appearance


def count_saved(net, frames: int, latent: int, batch: int, low: Optional[torch.dtype], flash: bool,
                backward: Optional[Callable] = None) -> SavedCount:
    device = next(net.parameters()).device
    counter = SavedCount(skip={SavedCount.key(t) for t in list(net.parameters()) + list(net.buffers())})
    counter.wrap_blocks(net)
    skip_strength_check(net)
    x, timesteps, context, inputs = training_inputs(frames, latent, batch, device)
    # the backward pass recomputes checkpointed blocks: it must see the same attention and casting rules
    with sdpa_attention(), EmulatedAutocast(low, flash):
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
            out = net(x, timesteps, context, **inputs)
        if backward is not None:
            backward(out)
    return counter


# -- the CPU calibration (a child process: its peak RSS must be its own) ----------------------------------------

def calibration_config(channels: int) -> dict:
    return sub("configs").sd_unet_config(model_channels=channels)


def peak_rss_reset() -> int:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: the peak (VmHWM) restarts from the current RSS
    return _status_bytes("VmRSS")


def _status_bytes(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field_name}")


def calibration_child(channels: int, frames: int, latent: int, checkpointing: bool) -> dict:
    """A real fp32 forward + backward on this CPU: the hook count and the peak RSS growth of the step."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    module_lib, patching, video_unet = sub("module"), sub("patching"), sub("video_unet")
    torch.manual_seed(0)
    unet = UNetModel(**calibration_config(channels), operations=comfy.ops.disable_weight_init)
    module_lib.initialise_new_weights(unet)
    unet.requires_grad_(False)
    module = module_lib.build_module(unet, module_lib.ModuleConfig(motion_text_sign=2), patching.MODULE_OPERATIONS,
                                     dtype=torch.float32)
    net = video_unet.VideoUNet(unet, module)
    net.gradient_checkpointing = checkpointing
    grads = sum(p.numel() * 4 for p in module.parameters())
    started = time.perf_counter()
    before = peak_rss_reset()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        counter = count_saved(net, frames, latent, 1, low=None, flash=False,
                              backward=lambda out: out.float().square().mean().backward())
    rss = _status_bytes("VmHWM") - before
    return {"saved": counter.total, "peak_tensors": peak_allocated(prof), "peak_rss": rss, "grads": grads,
            "seconds": time.perf_counter() - started}


def peak_allocated(prof) -> int:
    """Peak of the bytes held by tensors allocated inside the profiled region (torch's own allocation events,
    the CPU counterpart of torch.cuda.max_memory_allocated minus what was there before)."""
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    return max((e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]"), default=0)


def calibrate(channels: int, frames: int, latent: int, text_sign: int) -> list[dict]:
    rows = []
    for checkpointing in (False, True):
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps([channels, frames, latent, checkpointing])],
                             capture_output=True, text=True, check=True)
        measured = json.loads(out.stdout.strip().splitlines()[-1])
        net, _, _ = build_meta(calibration_config(channels), text_sign, torch.float32)
        counted = count_saved(net, frames, latent, 1, low=None, flash=True)
        kept, block = counted.checkpointed()
        rows.append({"checkpointing": checkpointing, "counted": kept + block if checkpointing else counted.total,
                     **measured})
    return rows


# -- the table ----------------------------------------------------------------------------------------------------

def gib(nbytes: float) -> str:
    return f"{nbytes / GIB:6.2f}"


def report(args) -> None:
    unet_config = comfy_sd15_unet_config()
    net, unet, module = build_meta(unet_config, args.text_sign, torch.bfloat16)
    frozen = frozen_counts()
    n_unet, n_mod = numel(unet), numel(module)
    app = module.appearnet
    parts = {"temporal layers (main UNet)": numel(module.temporal),
             "injection (SPADE + attention)": numel(module.inject) if module.inject is not None else 0,
             "AppearNet encoder copy": numel(app.time_embed) + numel(app.input_blocks) + numel(app.middle_block),
             "AppearNet temporal layers": numel(app.temporal),
             "AppearNet hint_in + text sign": numel(app.hint_in) + (numel(app.text_sign) if app.text_sign else 0)}
    latent = args.size // 8
    print(f"SD1.5 UNet (ComfyUI's SD15 config): {n_unet / 1e6:.1f} M parameters; CLIP-L text encoder "
          f"{frozen['clip'] / 1e6:.1f} M; VAE {frozen['vae'] / 1e6:.1f} M")
    print(f"MicroCinema module (appearnet, text sign {args.text_sign}): {n_mod / 1e6:.1f} M parameters")
    for name, n in parts.items():
        print(f"    {name:32s} {n / 1e6:8.1f} M")

    started = time.perf_counter()
    full = count_saved(net, args.frames, latent, args.batch_size, low=torch.bfloat16, flash=True)
    kept, block = full.checkpointed()
    autocast_cache = 2 * n_mod  # autocast's bf16 copies of the trained weights (cached for the whole forward)
    print(f"(activations counted on the meta device in {time.perf_counter() - started:.1f} s)")

    weights = 2 * (n_unet + frozen["clip"] + frozen["vae"]) + 4 * n_mod
    grads, adamw, adamw8 = 4 * n_mod, 8 * n_mod, adamw8bit_bytes(module)
    # Forward: no gradients yet (zero_grad(set_to_none)); with checkpointing autocast's cache holds a bf16 copy
    # of every trained weight until the forward ends. Backward: the gradients fill in while activations go.
    act_ckpt = max(kept + autocast_cache, kept + block + grads) - grads
    rows = [
        ("frozen SD1.5 UNet, bf16", 2 * n_unet, "exact"),
        ("CLIP-L + VAE, 2 bytes each", 2 * (frozen["clip"] + frozen["vae"]), "exact"),
        ("module weights, fp32", 4 * n_mod, "exact"),
        ("module gradients, fp32", grads, "exact"),
        ("AdamW moments, 2 x fp32", adamw, "exact"),
        ("  or 8-bit AdamW moments", adamw8, "exact (bitsandbytes' layout)"),
        ("DDP gradient buckets (world > 1)", 0, "none: gradient_as_bucket_view (the gradients are the buckets)"),
        ("EMA copy, fp32 (rank 0 only, with --ema-decay)", 4 * n_mod, "exact"),
        (f"activations, checkpointing on, batch {args.batch_size}", act_ckpt, "COMPUTED estimate"),
        (f"activations, checkpointing off, batch {args.batch_size}", full.total, "COMPUTED estimate"),
    ]
    print(f"\nper GPU, {args.size}x{args.size}, {args.frames} frames, batch {args.batch_size} per rank, bf16 autocast:")
    print(f"| {'what':44s} | {'GiB':>6s} | how |")
    print(f"|{'-' * 46}|{'-' * 8}|-----|")
    for name, nbytes, how in rows:
        print(f"| {name:44s} | {gib(nbytes)} | {how} |")
    base = weights + grads
    print("\ntotals (GiB; + CUDA context and allocator slack):")
    ema = 4 * n_mod
    for label, optimiser, ddp, act in (("1 GPU or any DDP rank, AdamW, checkpointing", adamw, 0, act_ckpt),
                                       ("1 GPU or any DDP rank, 8-bit AdamW, checkpointing", adamw8, 0, act_ckpt),
                                       ("  + EMA (rank 0), AdamW, checkpointing", adamw, ema, act_ckpt),
                                       ("1 GPU, AdamW, no checkpointing", adamw, 0, full.total)):
        print(f"    {label:42s} {gib(base + optimiser + ddp + act)}")
    print(f"\nactivation detail: kept with checkpointing {gib(kept)} GiB (block inputs and tensors outside blocks), "
          f"largest recomputed block {gib(block)} GiB, autocast's bf16 weight copies during the forward "
          f"{gib(autocast_cache)} GiB; {len(full.per_block)} blocks. Activations grow about linearly with "
          f"batch x frames x pixels (attention is counted as fused kernels keep it: linear in tokens).")
    spatial = 16 * n_unet - 2 * n_unet
    print(f"--train-spatial adds the UNet's fp32 weights, gradients and moments: +{gib(spatial).strip()} GiB "
          f"(AdamW) before its extra activations.")

    if args.calibrate:
        print(f"\ncalibration: SD1.5 block structure at {args.calibration_channels} channels, "
              f"{args.calibration_latent}x{args.calibration_latent} latents, {args.calibration_frames} frames, "
              "fp32, real forward + backward on this CPU:")
        for row in calibrate(args.calibration_channels, args.calibration_frames, args.calibration_latent,
                             args.text_sign):
            mode = "checkpointing on " if row["checkpointing"] else "checkpointing off"
            predicted = row["counted"] + row["grads"]
            real = "" if row["checkpointing"] else f"; hooks on the real tensors {gib(row['saved'])}"
            print(f"    {mode}: counted on meta {gib(row['counted'])} activations + {gib(row['grads'])} grads "
                  f"= {gib(predicted)} GiB; measured peak: tensors {gib(row['peak_tensors'])} "
                  f"({row['peak_tensors'] / predicted:.2f}x), process RSS {gib(row['peak_rss'])}{real} "
                  f"({row['seconds']:.0f} s)")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="training resolution (pixels, square)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=1, help="clips per rank per micro-batch")
    parser.add_argument("--text-sign", type=int, default=2, help="the module's text sign k (train.py's default)")
    parser.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=True,
                        help="check the count against a real CPU forward + backward of a narrow config")
    parser.add_argument("--calibration-channels", type=int, default=64)
    parser.add_argument("--calibration-latent", type=int, default=32)
    parser.add_argument("--calibration-frames", type=int, default=8)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    core()
    if args.child:
        channels, frames, latent, checkpointing = json.loads(args.child)
        print(json.dumps(calibration_child(channels, frames, latent, checkpointing)))
        return 0
    report(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
