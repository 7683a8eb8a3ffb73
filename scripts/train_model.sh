#!/usr/bin/env bash
# The whole training recipe in one resumable command: data -> cache -> VAE -> denoiser stage 1 ->
# stage 2 -> regression baseline -> model folder -> its scores (the model card's table).
#
#   bash scripts/train_model.sh MODEL_DIR [RUN_DIR]          (RUN_DIR default: runs/<preset>-recipe)
#
# Settings come from the environment; the defaults are the cpu preset's recipe (2 CPU cores, about
# 6 h in all). A GPU run changes flags, not code, e.g.
#   PRESET=small VAE_STEPS=60000 DEN1_STEPS=150000 VAE_BATCH=64 DEN_BATCH=64 bash scripts/train_model.sh models/small
#   NPROC=8 ...   (torchrun, one process per GPU; batches are global)
# Every stage resumes from its last checkpoint, so after an interruption run the same command again.
# models/default/README.md says how its shipped weights were trained (the same stages, run in parts).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    sed -n 2,12p "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
MODEL_DIR=$1
PRESET=${PRESET:-cpu}
RUN_DIR=${2:-runs/$PRESET-recipe}
DATA=${DATA:-data/synth}
TRAIN_PAIRS=${TRAIN_PAIRS:-20000}
TEST_PAIRS=${TEST_PAIRS:-500}
WORKERS=${WORKERS:-2}
VAE_STEPS=${VAE_STEPS:-4000}
VAE_BATCH=${VAE_BATCH:-8}
DEN1_STEPS=${DEN1_STEPS:-40000}
DEN2_STEPS=${DEN2_STEPS:-800}
DEN_BATCH=${DEN_BATCH:-8}       # stage 1: slices per step
DEN2_BATCH=${DEN2_BATCH:-2}     # stage 2: whole volumes (16 slices each) per step
REG_STEPS=${REG_STEPS:-1000}
THREADS=${THREADS:-2}
DEVICE=${DEVICE:-auto}
NPROC=${NPROC:-1}
EVAL_LIMIT=${EVAL_LIMIT:-60}
EVAL_SEEDS=${EVAL_SEEDS:-2}

bash scripts/bootstrap.sh
CLI=(.venv/bin/image-dynamics)
TRAIN=("${CLI[@]}" train)
if [ "$NPROC" -gt 1 ]; then
    TRAIN=(.venv/bin/torchrun --standalone --nproc_per_node="$NPROC" -m image_dynamics.cli train)
fi
say() { echo "== train_model [$(date +%H:%M:%S)] $*"; }
resume_flag() { [ -d "$1/checkpoints" ] && echo --resume || true; }
common() { echo --threads "$THREADS" --device "$DEVICE" --no-progress; }

if [ ! -f "$DATA/manifest.json" ]; then
    say "procedural data: $TRAIN_PAIRS training and $TEST_PAIRS held-out pairs -> $DATA"
    "${CLI[@]}" synth --dataset --train "$TRAIN_PAIRS" --test "$TEST_PAIRS" --workers "$WORKERS" --out "$DATA"
fi
CACHE=$RUN_DIR/cache
if [ ! -f "$CACHE/cache.json" ]; then
    say "training cache at the $PRESET preset's resolution -> $CACHE"
    "${CLI[@]}" train cache --data "$DATA" --out "$CACHE" --preset "$PRESET" --workers "$WORKERS" --no-progress
fi

say "VAE: $VAE_STEPS steps"
"${TRAIN[@]}" vae --cache "$CACHE" --out "$RUN_DIR/vae" --preset "$PRESET" --steps "$VAE_STEPS" \
    --batch-size "$VAE_BATCH" $(common) $(resume_flag "$RUN_DIR/vae")
say "denoiser stage 1 (image encoder + spatial U-Net): $DEN1_STEPS steps"
"${TRAIN[@]}" denoiser --stage 1 --cache "$CACHE" --vae "$RUN_DIR/vae" --out "$RUN_DIR/den1" \
    --steps "$DEN1_STEPS" --batch-size "$DEN_BATCH" --lr 2e-4 --lr-decay cosine --min-lr-ratio 0.1 --warmup 200 \
    --eval-every 3000 --ckpt-every 1000 $(common) $(resume_flag "$RUN_DIR/den1")
say "denoiser stage 2 (frequency attention): $DEN2_STEPS steps"
"${TRAIN[@]}" denoiser --stage 2 --cache "$CACHE" --init "$RUN_DIR/den1" --out "$RUN_DIR/den2" \
    --steps "$DEN2_STEPS" --batch-size "$DEN2_BATCH" --lr 1e-4 --warmup 100 --ckpt-every 200 \
    $(common) $(resume_flag "$RUN_DIR/den2")
say "direct-regression baseline: $REG_STEPS steps"
"${TRAIN[@]}" regression --cache "$CACHE" --out "$RUN_DIR/regression" --preset "$PRESET" --steps "$REG_STEPS" \
    --mse-weight 1 $(common) $(resume_flag "$RUN_DIR/regression")

say "model folder -> $MODEL_DIR"
"${CLI[@]}" train export --denoiser "$RUN_DIR/den2" --vae "$RUN_DIR/vae" --out "$MODEL_DIR"
"${CLI[@]}" train export --regression "$RUN_DIR/regression" --out "$RUN_DIR/regression-model"

say "scores on $EVAL_LIMIT held-out pairs, $EVAL_SEEDS seeds each, with the baselines -> $RUN_DIR/scores.json"
"${CLI[@]}" evaluate --model "$MODEL_DIR" --data "$DATA" --regression "$RUN_DIR/regression-model" \
    --limit "$EVAL_LIMIT" --seeds "$EVAL_SEEDS" --loop-limit 8 --device "${DEVICE%%:*}" --threads "$THREADS" \
    --cache-dir "$RUN_DIR/eval-cache" --json "$RUN_DIR/scores.json"
say "done: $MODEL_DIR (scores: $RUN_DIR/scores.json)"
