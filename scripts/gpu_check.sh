#!/usr/bin/env bash
# One command on a CUDA machine: does MicroCinema train and sample there, how fast, and in how much memory?
#
#   scripts/gpu_check.sh              # training passes, then the ComfyUI checks below
#   scripts/gpu_check.sh --no-full    # the training smoke only (no SD1.5-width training pass)
#   scripts/gpu_check.sh --no-train   # the ComfyUI checks only
#   scripts/gpu_check.sh --no-comfy   # the training passes only
#   scripts/gpu_check.sh --cpu        # the same path on the CPU, tiny sizes (a dry run of this script)
#
# ComfyUI checks (scripts/gpu_check_comfy.py, a real ComfyUI server with the demo models; docs/benchmarks.md):
#   a. every workflows/api/*.api.json at 512x512x16 in fp16 and in bf16 (--<dtype>-unet --<dtype>-vae): per-step
#      times, peak GPU memory, frame statistics of the videos written; every model unloaded after each workflow;
#   b. benchmarks/bench_video_unet.py at 512x512x16 (latent 64) in fp16 and bf16;
#   c. dynamic VRAM loading: text_to_video fully resident (--highvram), with dynamic VRAM, with dynamic VRAM on a
#      VRAM budget (VRAM_BUDGET_GIB, default 6), and with the classic partial load on that budget; latents compared
#      with the resident run, also after a full unload and reload;
#   then one report (also in $GPU_CHECK_DIR/comfy/report.txt).
#
# Each pass is a 1-rank `torchrun --standalone` run of `python -m microcinema_core.train` (through
# scripts/gpu_check_train.py, which runs it in-process and then reads torch's CUDA peak) with bf16 autocast and
# gradient checkpointing on, over synthetic captioned clips, on a random-weight checkpoint ComfyUI detects as SD1.5:
#   1. "tiny": the pack's small SD1.5-shaped UNet (one 320-channel level; full CLIP-L and VAE)
#   2. "sd15": SD1.5's real UNet config (860 M parameters, a 2 GB file generated once) with the full-size module
#      (1.28 G trained parameters: its checkpoint at the end writes about 15 GB, deleted afterwards)
# Each pass prints one "gpu_check: ..." line: step time (median of the logged windows after the first), clips/s,
# peak CUDA memory allocated/reserved, device name. Without CUDA it stops at once with one line, exit code 1.
#
# Settings (environment):
#   PYTHON          interpreter with a CUDA build of torch (default: .venv/bin/python, else python3)
#   COMFYUI_PATH    ComfyUI checkout (default: the one scripts/bootstrap.sh recorded)
#   GPU_CHECK_DIR   where checkpoints, clips and runs go (default: .cache/gpu_check)
#   STEPS, FULL_STEPS   steps of the two passes (default 40 and 12)
#   VRAM_BUDGET_GIB     usable VRAM in the budget set-ups of check c (default 6)
#   COMFY_STEPS         sampler steps of the ComfyUI checks (default: the workflows' own, 12)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"  # python -m microcinema_core.* resolves the package from here
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"
else PY="python3"; fi
DIR="${GPU_CHECK_DIR:-$ROOT/.cache/gpu_check}"
STEPS="${STEPS:-40}"
FULL_STEPS="${FULL_STEPS:-12}"
CPU=0
FULL=1
TRAIN=1
COMFY=1
for arg in "$@"; do
  case "$arg" in
    --cpu) CPU=1 ;;
    --no-full) FULL=0 ;;
    --no-train) TRAIN=0 ;;
    --no-comfy) COMFY=0 ;;
    -h|--help) sed -n '2,37p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

log() { echo "[gpu_check] $*" >&2; }
HELPER=(scripts/gpu_check_train.py)

if [ "$CPU" = 1 ]; then
  "$PY" "${HELPER[@]}" probe --cpu
  # small enough for a 2-core CPU: the point is the code path, not the figures
  SIZE=64; FRAMES=4; STEPS=4; LOG_EVERY=2; WORKERS=1; DEVICE=cpu; FULL=0
else
  "$PY" "${HELPER[@]}" probe || exit 1
  SIZE=256; FRAMES=16; LOG_EVERY=5; WORKERS=4; DEVICE=auto
fi
mkdir -p "$DIR"

train_checks() {
CLIPS="$DIR/clips-${SIZE}px-${FRAMES}f"
if [ ! -f "$CLIPS/.complete" ]; then
  log "rendering 16 synthetic clips ($SIZE px, $FRAMES frames) into $CLIPS"
  rm -rf "$CLIPS"
  "$PY" -m microcinema_core.training.synthetic --out "$CLIPS" --count 16 --frames "$FRAMES" --size "$SIZE"
  touch "$CLIPS/.complete"
fi

# run_pass LABEL CHECKPOINT RUN_DIR STEPS LOG_EVERY
run_pass() {
  local label="$1" base="$2" run="$3" steps="$4" every="$5"
  rm -rf "$run"  # a leftover run folder would resume and train no step
  log "pass '$label': $steps steps on $base"
  "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 "${HELPER[@]}" train --label "$label" -- \
    --base "$base" --data "$CLIPS" --out "$run" --frames "$FRAMES" --size "$SIZE" --batch-size 1 \
    --steps "$steps" --log-every "$every" --save-every "$steps" --mixed-precision bf16 \
    --gradient-checkpointing yes --workers "$WORKERS" --device "$DEVICE"
}

"$PY" "${HELPER[@]}" checkpoint tiny "$DIR/tiny_sd15.safetensors"
run_pass "tiny UNet, ${SIZE}x${SIZE}x${FRAMES}, batch 1" "$DIR/tiny_sd15.safetensors" "$DIR/run-tiny" \
  "$STEPS" "$LOG_EVERY"

if [ "$FULL" = 1 ]; then
  "$PY" "${HELPER[@]}" checkpoint sd15 "$DIR/sd15_random.safetensors"
  run_pass "SD1.5-width module, ${SIZE}x${SIZE}x${FRAMES}, batch 1" "$DIR/sd15_random.safetensors" \
    "$DIR/run-sd15" "$FULL_STEPS" 3
  rm -f "$DIR"/run-sd15/*.safetensors  # ~15 GB of random-weight module + optimiser state; loss.jsonl stays
fi
}

comfy_checks() {
  local out="$DIR/comfy" status=0
  rm -rf "$out"; mkdir -p "$out"
  local comfy=(scripts/gpu_check_comfy.py) steps=() bench
  [ -n "${COMFY_STEPS:-}" ] && steps=(--steps "$COMFY_STEPS")
  if [ "$CPU" = 1 ]; then
    # one small workflow, one dtype, one step: the servers, the rescaling, the statistics and the report run
    "$PY" "${comfy[@]}" workflows --cpu --out "$out" --size 64 --frames 2 --steps 1 --dtypes bf16 \
      --workflows text_to_video || status=1
    "$PY" benchmarks/bench_video_unet.py --config tiny --latent 8 --frames 4 --runs 1 --no-flops \
      > "$out/bench-fp32.txt" || status=1
    "$PY" "${comfy[@]}" dynamic --cpu --out "$out" --size 64 --frames 2 --steps 1 || status=1
  else
    "$PY" "${comfy[@]}" workflows --out "$out" --size 512 --frames 16 --dtypes fp16,bf16 "${steps[@]}" || status=1
    for bench in fp16 bf16; do
      "$PY" benchmarks/bench_video_unet.py --device cuda --dtype "$bench" --latent 64 --frames 16 --runs 5 \
        > "$out/bench-$bench.txt" || status=1
    done
    "$PY" "${comfy[@]}" dynamic --out "$out" --size 512 --frames 16 --dtype fp16 \
      --budget-gib "${VRAM_BUDGET_GIB:-6}" "${steps[@]}" || status=1
  fi
  {
    "$PY" "${comfy[@]}" report "$out"
    for bench in "$out"/bench-*.txt; do echo "== $(basename "$bench" .txt)"; cat "$bench"; done
  } | tee "$out/report.txt"
  return $status
}

STATUS=0
if [ "$TRAIN" = 1 ]; then train_checks || STATUS=1; fi
if [ "$COMFY" = 1 ]; then comfy_checks || STATUS=1; fi
log "done (results in $DIR)"
exit $STATUS
