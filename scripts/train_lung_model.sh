#!/usr/bin/env bash
# Reproduces the shipped lung segmentation model from ../shared/data/lung-masks-public (its train split trains,
# its val split chooses the checkpoint) and measures it on that set's test split and on the 14 older pairs of
# ../shared/data/lung-masks (never trained on).
#   bash scripts/train_lung_model.sh ../shared/data [run-folder]
# Needs radsight[train]. Re-running resumes training from the run folder's last checkpoint.
set -euo pipefail
DATA=${1:?usage: train_lung_model.sh DATA_DIR [RUN_DIR]}
RUN=${2:-runs/lung-public}
NAME=radsight-lung-unet
MODEL=src/radsight/weights/$NAME
L=$DATA/lung-masks-public
O=$DATA/lung-masks

radsight train --task anatomy --manifest "$L/manifest.csv" --images "$L/images" --masks "$L/masks" \
  --out "$RUN" --iterations 3600 --checkpoint-every 300 --threads 2 --seed 0
radsight export "$RUN/best.pt" --out "$MODEL" --name "$NAME" --version 0.2.0 --license MIT \
  --training-data "lung-masks-public train split: 4,597 chest radiographs with lung masks (COVID-QU-Ex, Tahir et al. 2021; COVID-19 Radiography Database, Chowdhury et al. 2020 / Rahman et al. 2021; ieee8023 covid-chestxray-dataset images with GBSeg masks, CC BY 4.0); its 586-image val split chose the checkpoint"
radsight evaluate --masks "$L/masks" --manifest "$L/manifest.csv" --images "$L/images" --split test \
  --lung-model "$MODEL" --out "$RUN/test-eval"
radsight evaluate --masks "$O/masks" --manifest "$O/manifest.csv" --images "$O/images" \
  --lung-model "$MODEL" --out "$RUN/older-eval"
