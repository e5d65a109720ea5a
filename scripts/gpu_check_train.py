"""The Python half of scripts/gpu_check.sh: device probe, checkpoint generation, and the trainer run in-process.

    python scripts/gpu_check_train.py probe [--cpu]
    python scripts/gpu_check_train.py checkpoint {tiny,sd15} OUT.safetensors
    torchrun --standalone --nproc_per_node 1 scripts/gpu_check_train.py train --label NAME -- TRAIN ARGS...

``train`` runs ``microcinema_core.train.main`` in this process (so that the peak of torch's CUDA allocator is the
training run's own), then rank 0 prints one summary line: step time from the run's loss.jsonl (the median of the
logged windows after the first, which holds the warm-up), clips per second, peak CUDA memory and the device. On a
machine without CUDA, ``probe`` and ``train`` exit 1 with a one-line message, unless they are asked for the CPU dry
run (probe ``--cpu``; train arguments with ``--device cpu``), which runs the same code on the CPU.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
GIB = 2**30


def _import_pack(cpu: bool):
    """``microcinema_core`` importable under its own name, ComfyUI first on sys.path.

    The repository root goes at the END of sys.path: its nodes/ folder would shadow ComfyUI's nodes module if it
    came first (ensure_comfy puts ComfyUI at the front). Importing by the real name (not from a file spec) lets
    DataLoader workers started by spawn/forkserver import the dataset classes too."""
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))
    from microcinema_core.comfy_env import ensure_comfy

    ensure_comfy(cpu=cpu)
    import microcinema_core

    return microcinema_core


def _fail(message: str) -> int:
    print(f"gpu_check: {message}", file=sys.stderr)
    return 1


def _cuda_problem() -> Optional[str]:
    import torch

    if torch.cuda.is_available():
        return None
    built = torch.version.cuda or "no CUDA (a CPU build)"
    return (f"no CUDA device here (torch {torch.__version__}, built with {built}); run on a CUDA machine, "
            f"or pass --cpu for the CPU dry run")


def probe(argv: list[str]) -> int:
    import torch

    if "--cpu" in argv:
        print(f"gpu_check: CPU dry run (torch {torch.__version__}, {torch.get_num_threads()} threads)")
        return 0
    problem = _cuda_problem()
    if problem:
        return _fail(problem)
    props = torch.cuda.get_device_properties(0)
    print(f"gpu_check: {props.name}, {props.total_memory / GIB:.0f} GiB, torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}, bf16 {'yes' if torch.cuda.is_bf16_supported() else 'NO'}, "
          f"{torch.cuda.device_count()} device(s)")
    return 0


def make_checkpoint(argv: list[str]) -> int:
    """A random-weight SD1.x checkpoint ComfyUI detects as SD1.5: ``tiny`` (the pack's test/demo UNet, one 320-channel
    level) or ``sd15`` (SD1.5's real UNet config, fp16, about 2 GB), with full-size CLIP-L and VAE."""
    if len(argv) != 2 or argv[0] not in ("tiny", "sd15"):
        return _fail("usage: gpu_check_train.py checkpoint {tiny,sd15} OUT.safetensors")
    kind, out = argv
    if Path(out).is_file():
        print(f"gpu_check: {kind} checkpoint cached at {out}")
        return 0
    _import_pack(cpu=True)  # random numbers on the CPU: the same bytes on every machine
    import torch
    from microcinema_core import checkpoint, configs, tiny_models

    unet_config = configs.reference_unet_config() if kind == "sd15" else tiny_models.TINY_SD15_UNET
    state = tiny_models.sd15_checkpoint_state_dict(unet_config, seed=0, dtype=torch.float16)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_safetensors_atomic(state, out, {"generator": f"ComfyUI-MicroCinema gpu_check ({kind})",
                                                     "unet_config": json.dumps(unet_config)})
    size = sum(t.numel() * t.element_size() for t in state.values())
    print(f"gpu_check: wrote the {kind} checkpoint {out} ({size / GIB:.2f} GiB, random weights)")
    return 0


def _steady_step_time(loss_log: Path) -> tuple[Optional[float], Optional[float], int, Optional[float]]:
    """(median seconds per step, median clips per second, logged windows, last loss) from loss.jsonl; the first
    window is left out when there are others (it holds cuDNN autotuning, allocator growth and worker start-up)."""
    if not loss_log.is_file():
        return None, None, 0, None
    entries = [json.loads(line) for line in loss_log.read_text().splitlines() if line.strip()]
    if not entries:
        return None, None, 0, None
    steady = entries[1:] or entries
    seconds = statistics.median(e["seconds_per_step"] for e in steady)
    clips = [e["clips_per_second"] for e in steady if e.get("clips_per_second")]
    return seconds, statistics.median(clips) if clips else None, len(entries), entries[-1]["loss"]


def train(argv: list[str]) -> int:
    label = "run"
    if argv[:1] == ["--label"]:
        label, argv = argv[1], argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    cpu = "cpu" in [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--device"]
    import torch

    if not cpu:
        problem = _cuda_problem()
        if problem:
            return _fail(problem)
    _import_pack(cpu=cpu)
    from microcinema_core import train as train_cli

    if not cpu:
        torch.cuda.reset_peak_memory_stats()
    code = train_cli.main(argv)  # first: its logging set-up must come before the imports parse_args does
    out = Path(train_cli.parse_args(argv).out)
    if int(os.environ.get("RANK", "0")) != 0:
        return code
    seconds, clips, windows, loss = _steady_step_time(out / "loss.jsonl")
    if seconds is None:
        return _fail(f"{label}: {out / 'loss.jsonl'} has no logged step (did the run train at all?)")
    if cpu:
        where, memory = "CPU", "peak CUDA memory n/a (CPU dry run)"
    else:
        device = torch.cuda.current_device()
        where = torch.cuda.get_device_name(device)
        memory = (f"peak CUDA memory allocated {torch.cuda.max_memory_allocated(device) / GIB:.2f} GiB, "
                  f"reserved {torch.cuda.max_memory_reserved(device) / GIB:.2f} GiB")
    clip_rate = f", {clips:.2f} clips/s" if clips else ""
    print(f"gpu_check: {label} on {where}: {seconds:.3f} s/step (median of {max(1, windows - 1)} logged "
          f"window(s) after the first){clip_rate}; {memory}; loss {loss:.4f} (last window)", flush=True)
    return code


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verbs = {"probe": probe, "checkpoint": make_checkpoint, "train": train}
    if not argv or argv[0] not in verbs:
        return _fail(f"usage: gpu_check_train.py {{{','.join(verbs)}}} ... (see its docstring)")
    return verbs[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
