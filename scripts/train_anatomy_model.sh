#!/usr/bin/env bash
# Trains the multi-structure anatomy model (right/left lung, heart, right/left clavicle) on jsrt-scr's train split
# (every structure) with lung-masks-public's train split (lungs only: partial labels), their val splits choosing the
# checkpoint, starting from the shipped lung U-Net's weights (256 px, version 0.1.0), then fine-tuned at 320 px
# (version 0.2.0, the shipped one).
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

radsight train --task anatomy \
  --manifest "$J/manifest.csv" --images "$J/images" --masks "$J/masks" \
  --manifest "$L/manifest.csv" --images "$L/images" --masks "$L/masks" \
  --init-from "$RUN/best.pt" --out "$RUN-320" --iterations 800 --checkpoint-every 100 --batch-size 8 --lr 3e-4 \
  --threads "$THREADS" --seed 0 --input-size 320

NAME=radsight-anatomy
MODEL=src/radsight/weights/$NAME
radsight export "$RUN-320/best.pt" --out "$MODEL" --name "$NAME" --version 0.2.0 --license "MIT (code); weights: JSRT/SCR research-and-education terms" \
  --training-data "jsrt-scr train split (95 JSRT films with SCR heart, lung and clavicle masks; Shiraishi et al. 2000, van Ginneken et al. 2006) and lung-masks-public train split (4,597 films, lungs only: COVID-QU-Ex, COVID-19 Radiography Database, GBSeg/ieee8023); their val splits chose the checkpoint; fine-tuned at 320 px from radsight-anatomy 0.1.0"
python scripts/fit_landmark_positions.py --model "$MODEL" --manifest "$J/manifest.csv" --images "$J/images" \
  --landmarks "$J/landmarks.csv" --split train --variance 0.8
radsight evaluate --task anatomy --masks "$J/masks" --manifest "$J/manifest.csv" --images "$J/images" --split test \
  --landmarks "$J/landmarks.csv" --pixel-spacing-mm 0.7 --lung-model "$MODEL" --out "$RUN/jsrt-test"
radsight evaluate --task anatomy --masks "$J/masks" --manifest "$J/manifest.csv" --images "$J/images" --split test \
  --landmarks "$J/landmarks.csv" --pixel-spacing-mm 0.7 --lung-model radsight-lung-unet --out "$RUN/jsrt-test-lung-unet"
radsight evaluate --task anatomy --masks "$L/masks" --manifest "$L/manifest.csv" --images "$L/images" --split test \
  --lung-model "$MODEL" --out "$RUN/public-test"
