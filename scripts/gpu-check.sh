#!/usr/bin/env bash
# GPU smoke check for the training engine (under 5 minutes): times ViT-B-32 training steps with the CUDA and
# WebGPU execution providers where they load, and says where parameters live between steps.
# Without a GPU it says so and exits 0. Exits 1 when a GPU is present but no GPU provider could train.
set -uo pipefail
cd "$(dirname "$0")/.."

ARCH="${ARCH:-ViT-B-32}"
BATCH="${BATCH:-32}"
STEPS="${STEPS:-4}"
K="${K:-4}"
PER_EP_TIMEOUT="${PER_EP_TIMEOUT:-130}"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/gpu: /'
elif [ -e /dev/dri/renderD128 ]; then
  echo "gpu: a DRI render node exists (no NVIDIA driver); trying WebGPU only"
else
  echo "no GPU found (no nvidia-smi device, no /dev/dri render node): nothing to check"
  exit 0
fi

ok=0
run_ep() {
  local ep="$1" k="$2" out
  echo "== --ep $ep: $ARCH batch $BATCH, $STEPS steps, $k step(s) per run"
  out="$(timeout "$PER_EP_TIMEOUT" npm run -s rsclip -- bench-train --arch "$ARCH" --batch-size "$BATCH" --steps "$STEPS" --steps-per-run "$k" --ep "$ep" 2>&1)"
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "$out" | tail -n 3 | sed 's/^/   /'
    [ $rc -eq 124 ] && echo "   $ep: timed out after ${PER_EP_TIMEOUT}s" || echo "   $ep: not usable here (exit $rc)"
    return
  fi
  echo "$out" | tail -n 1 | sed 's/^/   result: /'
  if [ "$ep" = webgpu ]; then
    echo "   parameters and AdamW moments stay in GPU memory between runs (resident state); one step per run (no Loop kernel)"
  else
    echo "   parameters and AdamW state stay on the device for $k steps (ONNX Loop); they cross the host once per run"
  fi
  ok=1
}

run_ep cuda "$K"
# onnxruntime's WebGPU provider has no Loop kernel, so the trainer runs one step per session.run there.
run_ep webgpu 1

if [ $ok -eq 0 ]; then
  echo "a GPU is present but neither CUDA nor WebGPU could run a training step"
  exit 1
fi
