#!/usr/bin/env bash
# Trains the multi-structure anatomy model (right/left lung, heart, right/left clavicle) on jsrt-scr's train split
# (every structure) with lung-masks-public's train split (lungs only: partial labels), their val splits choosing the
# checkpoint, starting from the shipped lung U-Net's weights.
#   bash scripts/train_anatomy_model.sh ../shared/data [run-folder] [threads]
# Needs radsight[train]. Re-running resumes from the run folder's last checkpoint.
set -euo pipefail
DATA=${1:?usage: train_anatomy_model.sh DATA_DIR [RUN_DIR] [THREADS]}
RUN=${2:-runs/anatomy}
THREADS=${3:-2}
J=$DATA/jsrt-scr
L=$DATA/lung-masks-public

radsight train --task anatomy \
  --manifest "$J/manifest.csv" --images "$J/images" --masks "$J/masks" \
  --manifest "$L/manifest.csv" --images "$L/images" --masks "$L/masks" \
  --init-from src/radsight/weights/radsight-lung-unet/model.onnx \
  --out "$RUN" --iterations 2000 --checkpoint-every 100 --batch-size 8 --lr 1e-3 --threads "$THREADS" --seed 0
