#!/usr/bin/env bash
# Reproduces the shipped lung segmentation model from ../shared/data/lung-masks and measures it on the
# four held-out pairs (two Shenzhen, two imlab-demo; never trained on).
#   bash scripts/train_lung_model.sh ../shared/data [run-folder]
# Needs radsight[train]. Re-running resumes training from the run folder's last checkpoint.
set -euo pipefail
DATA=${1:?usage: train_lung_model.sh DATA_DIR [RUN_DIR]}
RUN=${2:-runs/lung-unet}
NAME=radsight-lung-unet
MODEL=src/radsight/weights/$NAME
L=$DATA/lung-masks
HOLDOUT=CHNCXR_0009_0.png,CHNCXR_0010_0.png,imlab_3.png,imlab_4.png  # measured only
VAL=CHNCXR_0008_0.png,imlab_2.png                                       # chooses the checkpoint

radsight train --task lung-segmentation --manifest "$L/manifest.csv" --images "$L/images" --masks "$L/masks" \
  --out "$RUN" --holdout "$HOLDOUT" --val "$VAL" --iterations 800 --seed 0
radsight export "$RUN/best.pt" --out "$MODEL" --name "$NAME" --version 0.1.0 --license MIT \
  --training-data "8 chest radiographs with lung masks (7 NLM Shenzhen, Jaeger et al. 2014, masks CC BY-NC-SA 4.0; 1 imlab-demo); 2 more chose the checkpoint"
radsight evaluate --masks "$L/masks" --manifest "$L/manifest.csv" --images "$L/images" --lung-model "$MODEL" \
  --subset "$HOLDOUT" --out "$RUN/holdout-eval"
