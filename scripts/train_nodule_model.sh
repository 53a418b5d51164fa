#!/usr/bin/env bash
# Trains the nodule detector on jsrt-scr's train split (37 films with a real nodule; the 58 without one carry
# simulated nodules), its val split choosing the checkpoint and the operating point; the same run without
# simulated nodules for the ablation; exports the first and measures both on the test split. The export goes to
# src/radsight/weights/radsight-nodule-det, where it is on by default: ship it only with a card that earns that.
#   bash scripts/train_nodule_model.sh ../shared/data [run-folder] [threads] [iterations]
# Needs radsight[train]. Re-running resumes from each run folder's last checkpoint.
set -euo pipefail
DATA=${1:?usage: train_nodule_model.sh DATA_DIR [RUN_DIR] [THREADS] [ITERATIONS]}
RUN=${2:-runs/nodules}
THREADS=${3:-2}
ITERATIONS=${4:-1000}
J=$DATA/jsrt-scr
COMMON=(--manifest "$J/manifest.csv" --images "$J/images" --init-from src/radsight/weights/radsight-anatomy/model.onnx
        --iterations "$ITERATIONS" --checkpoint-every 100 --batch-size 8 --lr 1e-3 --input-size 256
        --threads "$THREADS" --seed 0)

radsight train --task nodules "${COMMON[@]}" --out "$RUN/simulated"
NAME=radsight-nodule-det
MODEL=src/radsight/weights/$NAME
radsight export "$RUN/simulated/best.pt" --out "$MODEL" --name "$NAME" --version 0.1.0 \
  --license "MIT (code); weights: JSRT's research-and-education terms" \
  --training-data "jsrt-scr train split: 37 JSRT films with their nodule (Shiraishi et al. 2000) and 58 without, into which nodules were simulated at every draw; val split (6 nodules, 19 films) chose the checkpoint and the operating point; encoder and decoder started from radsight-anatomy 0.1.0"
radsight evaluate --task nodules --model "$MODEL" --manifest "$J/manifest.csv" --images "$J/images" --split test \
  --pixel-spacing-mm 0.7 --out "$RUN/test"

# the ablation: real nodule films only, the same val films choosing
radsight train --task nodules "${COMMON[@]}" --simulated-share 0 --out "$RUN/real-only"
radsight export "$RUN/real-only/best.pt" --out "$RUN/real-only/model" --name radsight-nodule-det-real-only --version 0.1.0
radsight evaluate --task nodules --model "$RUN/real-only/model" --manifest "$J/manifest.csv" --images "$J/images" \
  --split test --pixel-spacing-mm 0.7 --out "$RUN/test-real-only"
