#!/usr/bin/env bash
# Reproduces the shipped view classifier (frontal vs lateral) and measures it on images it did not train on.
#   bash scripts/train_view_model.sh ../shared/data [run-folder]
# Needs radsight[train]. Laterals: the multiview pairs less three held-out patients; frontals: the train splits
# of nih-cxr14/train64 and lung-masks-public. Held out: those patients' pairs and both sets' val splits.
set -euo pipefail
DATA=${1:?usage: train_view_model.sh DATA_DIR [RUN_DIR]}
RUN=${2:-runs/view-cnn}
NAME=radsight-view-cnn
MODEL=src/radsight/weights/$NAME
HOLDOUT=20,33,77
T64=$DATA/nih-cxr14/train64
LMP=$DATA/lung-masks-public
mkdir -p "$RUN"
radsight data import covid-chestxray "$DATA/multiview" --out "$RUN/multiview.csv"
radsight train --task view --out "$RUN" --holdout "$HOLDOUT" \
  --manifest "$RUN/multiview.csv" --images "$DATA/multiview" \
  --manifest "$T64/manifest.csv" --images "$T64/images" \
  --manifest "$LMP/manifest.csv" --images "$LMP/images"
radsight export "$RUN/final.pt" --out "$MODEL" --name "$NAME" --version 0.1.0 --license MIT \
  --training-data "8 lateral and 5,434 frontal radiographs: multiview pairs (Cohen et al. 2020) of 6 patients, the train splits of NIH ChestX-ray14 train64 and lung-masks-public"
radsight evaluate --model "$MODEL" --manifest "$RUN/multiview.csv" --images "$DATA/multiview" --subset "$HOLDOUT" \
  --out "$RUN/eval-multiview-heldout"
radsight evaluate --model "$MODEL" --manifest "$T64/manifest.csv" --images "$T64/images" --split val --out "$RUN/eval-nih-val"
radsight evaluate --model "$MODEL" --manifest "$LMP/manifest.csv" --images "$LMP/images" --split val --out "$RUN/eval-lmp-val"
