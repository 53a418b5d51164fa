#!/usr/bin/env bash
# Reproduces the shipped bone suppression model from the BSE-JSRT pairs in ../shared/data/bone-suppression
# (train split; val chooses the checkpoint), then measures it on the test split (BSE-JSRT and dual-energy)
# against the identity baseline.
#   bash scripts/train_bone_model.sh ../shared/data [run-folder]
# Needs radsight[train]. Re-running resumes training from the run folder's last checkpoint.
set -euo pipefail
DATA=${1:?usage: train_bone_model.sh DATA_DIR [RUN_DIR]}
RUN=${2:-runs/bone-gan}
NAME=radsight-bone-gan
MODEL=src/radsight/weights/$NAME
B=$DATA/bone-suppression

radsight train --task bone-suppression --manifest "$B/manifest.csv" --images "$B/images" --kind bse-jsrt \
  --out "$RUN" --stages 128:500,256:800,512:700 --seed 0
radsight export "$RUN/best.pt" --out "$MODEL" --name "$NAME" --version 0.1.0 \
  --license "research and education only (JSRT and BSE-JSRT terms); radsight's code is MIT" \
  --training-data "BSE-JSRT (Juhasz et al. 2010) soft-tissue images of JSRT radiographs (Shiraishi et al. 2000): 96 train-split cases; 19 val-split cases chose the checkpoint"
radsight evaluate --bone-pairs "$B/manifest.csv" --images "$B/images" --split test --bone-model "$MODEL" \
  --out "$RUN/test-eval"
