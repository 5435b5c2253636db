#!/usr/bin/env bash
# Training and sampling rates on one GPU at the recipe's budget geometries, from random data (no renderer,
# no dataset): what sizes the gpu budget's wall time. Usage: bash benchmarks/gpu_rates.sh [OUT_DIR]
# Runs from a checkout with PYTHONPATH=src, so a GPU image's own torch is used as is (no install).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/gpu_rates}"
py="${PYTHON:-python3}"
mkdir -p "$out"
export PYTHONPATH=src
nvidia-smi -L
# gpu budget: small VAE (batch 8, 17-frame windows) and small world models (bf16, batch 16, 65+65 frames =
# 17+17 latent frames of 16x16 at 128 px, window 5, top-k 10); sampling with its 50 Euler steps
"$py" benchmarks/train.py --json "$out/gpu_budget.json" --device cuda --precision bf16 \
  --preset small --vae-preset small --batch-size 16 --context-latents 17 --target-latents 17 --latent-size 16 \
  --memory-window 5 --memory-top-k 10 --steps 20 --warmup-steps 5 --sample-steps 50 \
  --vae-training --vae-batch-size 8 --vae-frames 17
# cpu budget on the same GPU, for scale: tiny VAE, compact world models, fp32, batch 4, 9+9 latent frames
"$py" benchmarks/train.py --json "$out/cpu_budget.json" --device cuda --precision fp32 \
  --preset compact --vae-preset tiny --batch-size 4 --context-latents 9 --target-latents 9 --latent-size 16 \
  --memory-window 3 --memory-top-k 4 --steps 30 --warmup-steps 5 --sample-steps 20 \
  --vae-training --vae-batch-size 2 --vae-frames 9
