#!/usr/bin/env bash
# Experiment 2 in the paper's own regime on a GPU, end to end: fit the MNIST nfn-recipe SIRENs on the
# GPU (60,000 nets), then train one model of configs/classify_inr_paper.yaml (the official code's
# MNIST settings: paper widths, Adam 1e-4, 10k warm-up, 200k steps) and write its curves and results.
#
#   MNFN_DATA=~/data bash examples/paper_regime_gpu.sh                  # hybrid-inr, seed 0, 142 epochs
#   MODEL=canon-np EPOCHS=20 SEED=1 bash examples/paper_regime_gpu.sh   # shorter, another model
#   bash examples/paper_regime_gpu.sh --set lr=3.0e-4                   # extra args go to the experiment
#
# MNFN_DATA must hold mnist/ (the four IDX files). Everything goes under $OUT (default runs/paper-gpu):
# the INR set, the run (resumable: rerun the same command with the same $OUT and it continues from its
# last epoch), curves.png/json and the results table. PYTHON picks the interpreter (its torch must
# see CUDA). Timings on CPU cores: docs/results.md; a CPU works too, but one run takes days.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
out=${OUT:-runs/paper-gpu}
model=${MODEL:-hybrid-inr}
epochs=${EPOCHS:-142}
seed=${SEED:-0}
device=${DEVICE:-cuda}
num_train=${NUM_TRAIN:-50000}   # training images fitted (45,000 train + 5,000 validate); the tests shrink it
num_test=${NUM_TEST:-10000}
: "${MNFN_DATA:?set MNFN_DATA to a folder with mnist/}"
mkdir -p "$out"
mnfn() { "$py" -m mnfn.cli "$@"; }
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee "$out/machine.txt"
t0=$(date +%s)
# Fitting: one process, 4,096 nets at a time (all of them are independent: same init seeds as on a CPU).
mnfn inr make --dataset mnist --recipe nfn --split test --num "$num_test" --device "$device" --batch 4096 --no-progress \
    --out "$out/inr-mnist-nfn-test"
mnfn inr make --dataset mnist --recipe nfn --split train --num "$num_train" --device "$device" --batch 4096 --no-progress \
    --out "$out/inr-mnist-nfn-train"
mnfn inr merge "$out/inr-mnist-nfn-train" "$out/inr-mnist-nfn-test" --out "$out/inr-mnist-nfn"
echo "fitted in $(( $(date +%s) - t0 )) s" | tee -a "$out/machine.txt"
mnfn inr info "$out/inr-mnist-nfn" --json "$out/inr-stats.json"
mnfn experiment classify-inr --inrs "$out/inr-mnist-nfn" --config configs/classify_inr_paper.yaml \
    --models "$model" --seeds "$seed" --epochs "$epochs" --device "$device" --no-progress \
    --out "$out/classify-$model-s$seed" "$@"
mnfn curves "$out/classify-$model-s$seed" --png "$out/curves-$model-s$seed.png" --json "$out/curves-$model-s$seed.json"
echo "total $(( $(date +%s) - t0 )) s" | tee -a "$out/machine.txt"
