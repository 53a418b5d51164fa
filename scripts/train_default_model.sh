#!/usr/bin/env bash
# Reproduces the shipped default model from the NIH train64 set, then measures it on the benchmark set.
#   bash scripts/train_default_model.sh ../shared/data [run-folder]
# Needs radsight[train]. Re-running resumes training from the run folder's last checkpoint.
set -euo pipefail
DATA=${1:?usage: train_default_model.sh DATA_DIR [RUN_DIR]}
RUN=${2:-runs/nih64-demo}
NAME=radsight-nih64-demo
MODEL=src/radsight/weights/$NAME
T64=$DATA/nih-cxr14/train64
BENCH=$DATA/nih-cxr14/benchmark

radsight train --manifest "$T64/manifest.csv" --images "$T64/images" --out "$RUN" --architecture densenet-small \
  --input-size 64 --epochs 40 --batch-size 32 --lr 1e-3 --seed 0
radsight export "$RUN/best.pt" --out "$MODEL" --name "$NAME" --version 0.1.0 --license MIT \
  --training-data "NIH ChestX-ray14 (Wang et al. 2017), 834 train-split images of the 970-image 64x64 subset (train64); thresholds from its 136-image val split"
radsight calibrate --model "$MODEL" --manifest "$T64/manifest.csv" --images "$T64/images" --split val
radsight evaluate --model "$MODEL" --manifest "$BENCH/manifest.csv" --images "$BENCH/images" \
  --reference "$DATA/nih-cxr14/reference/reproduce_chexnet_preds.csv" --out "$RUN/benchmark-eval"
