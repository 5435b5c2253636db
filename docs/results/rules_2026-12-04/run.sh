#!/usr/bin/env bash
# The cpu-tier check of hydra's new default rules (affinity before RoPE, official memory-token positions)
# against the old ones, at the cpu budget's settings but 160 train clips and 600 steps. Resumable.
set -euo pipefail
cd /work/main
R=runs/rules
H=.venv/bin/hybridmem
log() { echo "$(date -u +%FT%TZ) $*" >> $R/invocations.log; }
G="--width 160 --height 96 --horizontal-fov-deg 36.3 --context-frames 33 --target-frames 33 --min-hidden-frames 6 --paths line --seed 0 --workers 2"
for split in train val; do
  n=160; [ $split = val ] && n=16
  cmd="$H world generate --num-clips $n --out $R/data --split $split $G"; log "$cmd"; $cmd
done
VAE=src/hybridmem/assets/checkpoints/vae
for split in train val; do
  cmd="$H encode --data $R/data --vae $VAE --out $R/cache/$split --split $split --device cpu"; log "$cmd"; $cmd
done
W="--memory hydra --memory-window 3 --memory-top-k 4 --preset compact --steps 600 --batch-size 4 --lr 0.0005 --warmup 100 --shift 10.0 --save-every 200 --val-every 0 --seed 0 --device cpu --objective mean"
c1="$H train world --cache $R/cache/train --out $R/world/paper $W --affinity-rope before --token-positions official"
c2="$H train world --cache $R/cache/train --out $R/world/old $W --affinity-rope after --token-positions centre"
log "OMP_NUM_THREADS=1 $c1 (parallel with the next)"; log "OMP_NUM_THREADS=1 $c2"
( OMP_NUM_THREADS=1 $c1 ) > $R/paper.log 2>&1 &
( OMP_NUM_THREADS=1 $c2 ) > $R/old.log 2>&1 &
wait
cmd="$H eval --checkpoint $R/world/paper --checkpoint $R/world/old --vae $VAE --baseline copy-last --baseline erased --baseline frozen --data $R/data --split val --out $R/eval --seed 0 --device cpu"
log "$cmd"; $cmd > $R/eval.log 2>&1
echo done >> $R/invocations.log
